"""State-dict converters between IR models (:mod:`scaling.nn.build`) and torchvision / timm models.

The key map is derived from the IR model's structure (its blocks, their geometry and the layout of
the source library), never by zipping two key lists. Layouts: torchvision's ``resnet`` (ResNet,
ResNeXt, Wide ResNet), ``regnet``, ``shufflenet_v2``, ``mobilenet_v2``, ``mobilenet_v3``,
``efficientnet`` (B0-B7 and V2), ``mnasnet``; timm's ``timm_efficientnet``,
``timm_mobilenetv3``, ``timm_regnet`` and ``timm_resnet`` (torchvision's names; a deep stem as
``conv1.{0,3,6}``; a timm stage: a run of blocks of equal output channels; MobileNetV3's head
conv: timm's last block, its hidden linear timm's 1x1 ``conv_head``). The layout comes from
``spec.family`` when that names one, else from the blocks; ``layout=`` chooses. Conversion is
strict: a model key without a counterpart, a missing or unexpected source key, or a shape
mismatch is a ValueError naming it. Files load with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from scaling.ir import NetworkSpec
from scaling.nn.build import ScalingNet
from scaling.zoo.state_files import load_file, save_file

__all__ = ["LAYOUTS", "export_timm", "export_torchvision", "key_map", "load_file", "load_timm",
           "load_torchvision", "save_file"]

Pairs = list[tuple[str, str]]  # (IR module name, external module name)


def _leaves(module: nn.Module, prefix: str) -> Iterator[str]:
    """Relative names of the submodules of ``module`` that own parameters or buffers."""
    for name, sub in module.named_modules():
        if any(True for _ in sub.named_parameters(recurse=False)) or \
                any(True for _ in sub.named_buffers(recurse=False)):
            yield f"{prefix}.{name}" if name else prefix


def _flat_blocks(model: ScalingNet) -> list[tuple[int, int, nn.Module]]:
    return [(s, b, blk) for s, stage in enumerate(model.stages) for b, blk in enumerate(stage)]


def _single_stem(model: ScalingNet, conv: str, norm: str, layout: str) -> Pairs:
    if len(model.spec.stem.channels) != 1:
        raise ValueError(f"layout {layout!r} has a single stem conv; the model's stem has "
                         f"{len(model.spec.stem.channels)} (stem.channels="
                         f"{model.spec.stem.channels})")
    return [("stem.0.0", conv), ("stem.0.1", norm)]


def _head(model: ScalingNet, conv: str | None, hidden: str | None, fc: str) -> Pairs:
    head = model.head
    if head is None:
        return []
    pairs: Pairs = []
    if head.conv is not None and conv is not None:
        pairs += [("head.conv.0", f"{conv}.0"), ("head.conv.1", f"{conv}.1")]
    if head.hidden is not None and hidden is not None:
        pairs.append(("head.hidden", hidden))
    if head.fc is not None:
        pairs.append(("head.fc", fc))
    return pairs


# -- torchvision layouts --------------------------------------------------------------------------
def _resnet_blocks(model: ScalingNet) -> Pairs:
    """Block b of stage s is ``layer{s+1}.{b}``, with the IR's names inside (both libraries)."""
    return [(n, f"layer{s + 1}.{b}" + n[len(f"stages.{s}.{b}"):])
            for s, b, blk in _flat_blocks(model) for n in _leaves(blk, f"stages.{s}.{b}")]


def _tv_resnet(model: ScalingNet) -> Pairs:
    pairs = _single_stem(model, "conv1", "bn1", "resnet")
    return pairs + _resnet_blocks(model) + _head(model, None, None, "fc")


_REGNET = {"conv1": "f.a.0", "bn1": "f.a.1", "conv2": "f.b.0", "bn2": "f.b.1",
           "se.fc1": "f.se.fc1", "se.fc2": "f.se.fc2", "conv3": "f.c.0", "bn3": "f.c.1",
           "downsample.0": "proj.0", "downsample.1": "proj.1"}


def _regnet_pairs(model: ScalingNet, stem: tuple[str, str], layout: str, names: Mapping[str, str],
                  head: str, block: Callable[[int, int], str]) -> Pairs:
    """A RegNet layout (torchvision's and timm's differ only in these names)."""
    pairs, what = _single_stem(model, *stem, layout), layout.replace("_", " ")
    for s, b, blk in _flat_blocks(model):
        base = f"stages.{s}.{b}"
        for n in _leaves(blk, base):
            rel = n[len(base) + 1:]
            pairs.append((n, block(s, b) + names.get(rel, f"<no {what} name for {rel}>")))
    return pairs + _head(model, None, None, head)


def _tv_regnet(model: ScalingNet) -> Pairs:
    return _regnet_pairs(model, ("stem.0", "stem.1"), "regnet", _REGNET, "fc",
                         lambda s, b: f"trunk_output.block{s + 1}.block{s + 1}-{b}.")


def _tv_shufflenet_v2(model: ScalingNet) -> Pairs:
    pairs = _single_stem(model, "conv1.0", "conv1.1", "shufflenet_v2")
    for s, b, blk in _flat_blocks(model):
        base = f"stages.{s}.{b}"
        pairs += [(n, f"stage{s + 2}.{b}" + n[len(base):]) for n in _leaves(blk, base)]
    return pairs + _head(model, "conv5", None, "fc")


def _tv_mobilenet_v2(model: ScalingNet) -> Pairs:
    pairs = _single_stem(model, "features.0.0", "features.0.1", "mobilenet_v2")
    blocks = _flat_blocks(model)
    for f, (s, b, blk) in enumerate(blocks):
        n_layers = len(blk.block)
        for i in range(n_layers):
            for j in (0, 1):
                tv = f"conv.{i}.{j}" if i < n_layers - 1 else f"conv.{i + j}"
                pairs.append((f"stages.{s}.{b}.block.{i}.{j}", f"features.{f + 1}.{tv}"))
    return pairs + _head(model, f"features.{len(blocks) + 1}", None, "classifier.1")


def _tv_mobilenet_v3(model: ScalingNet) -> Pairs:
    pairs = _single_stem(model, "features.0.0", "features.0.1", "mobilenet_v3")
    blocks = _flat_blocks(model)
    for f, (s, b, blk) in enumerate(blocks):
        base = f"stages.{s}.{b}"
        pairs += [(n, f"features.{f + 1}" + n[len(base):]) for n in _leaves(blk, base)]
    return pairs + _head(model, f"features.{len(blocks) + 1}", "classifier.0", "classifier.3")


def _tv_efficientnet(model: ScalingNet) -> Pairs:
    pairs = _single_stem(model, "features.0.0", "features.0.1", "efficientnet")
    for s, b, blk in _flat_blocks(model):
        base = f"stages.{s}.{b}"
        pairs += [(n, f"features.{s + 1}.{b}" + n[len(base):]) for n in _leaves(blk, base)]
    return pairs + _head(model, f"features.{len(model.stages) + 1}", None, "classifier.1")


def _tv_mnasnet(model: ScalingNet) -> Pairs:
    pairs = _single_stem(model, "layers.0", "layers.1", "mnasnet")
    for s, b, blk in _flat_blocks(model):
        for i in range(len(blk.block)):
            for j in (0, 1):
                if s == 0:  # the stem's separable conv: layers.3/4 (dw), layers.6/7 (pw)
                    tv = f"layers.{3 + 3 * i + j}" if b == 0 else f"<no mnasnet block {b}>"
                else:
                    tv = f"layers.{7 + s}.{b}.layers.{3 * i + j}"
                pairs.append((f"stages.{s}.{b}.block.{i}.{j}", tv))
    n = 7 + len(model.stages)
    pairs += _head(model, None, None, "classifier.1")
    if model.head is not None and model.head.conv is not None:
        pairs += [("head.conv.0", f"layers.{n}"), ("head.conv.1", f"layers.{n + 1}")]
    return pairs


# -- timm layouts ---------------------------------------------------------------------------------
def _timm_names(blk: nn.Module) -> list[tuple[str, str] | None]:
    """timm's (conv, norm) names of each entry of a block's ``block`` Sequential (None: SE).

    timm numbers its norms by conv (bn1, bn2, ...) and calls the last 1x1 ``conv_pw`` in a block
    without an expansion (its DepthwiseSeparableConv), ``conv_pwl`` otherwise.
    """
    roles = getattr(blk, "roles", ())
    if not roles or not set(roles) <= {"pw", "exp", "conv", "dw", "se", "pwl"}:
        raise ValueError(f"timm layouts hold ds/mbconv/fused_mbconv blocks; stage "
                         f"{blk.geometry.stage} is {blk.geometry.block!r}")
    expand = "pw" in roles or "exp" in roles
    names: list[tuple[str, str] | None] = []
    for role in roles:
        if role == "se":
            names.append(None)
            continue
        conv = "conv_pw" if role == "pwl" and not expand else _TIMM_CONV[role]
        names.append((conv, f"bn{sum(n is not None for n in names) + 1}"))
    return names


# timm conv names by role (see scaling.nn.blocks._SequentialBlock.roles)
_TIMM_CONV = {"pw": "conv_pw", "exp": "conv_exp", "conv": "conv", "dw": "conv_dw",
              "pwl": "conv_pwl"}


def _timm_stages(model: ScalingNet) -> list[tuple[int, int, int, int, nn.Module]]:
    """(timm stage, index, IR stage, IR index, block); a timm stage: a run of blocks of equal out
    channels, only its first strided (MobileNetV3's per-block stages regroup into timm's)."""
    out, t, i, last = [], -1, 0, None
    for s, b, blk in _flat_blocks(model):
        c = blk.geometry.out_channels
        if c != last or blk.geometry.stride > 1:
            t, i, last = t + 1, 0, c
        out.append((t, i, s, b, blk))
        i += 1
    return out


def _timm_blocks(model: ScalingNet) -> tuple[Pairs, int]:
    pairs = _single_stem(model, "conv_stem", "bn1", "timm")
    blocks = _timm_stages(model)
    for t, i, s, b, blk in blocks:
        for k, names in enumerate(_timm_names(blk)):
            ir, tm = f"stages.{s}.{b}.block.{k}", f"blocks.{t}.{i}"
            if names is None:
                pairs += [(f"{ir}.fc1", f"{tm}.se.conv_reduce"),
                          (f"{ir}.fc2", f"{tm}.se.conv_expand")]
            else:
                pairs += [(f"{ir}.0", f"{tm}.{names[0]}"), (f"{ir}.1", f"{tm}.{names[1]}")]
    return pairs, (blocks[-1][0] + 1 if blocks else 0)


def _timm_efficientnet(model: ScalingNet) -> Pairs:
    pairs, _ = _timm_blocks(model)
    head = model.head
    if head is not None and head.conv is not None:
        pairs += [("head.conv.0", "conv_head"), ("head.conv.1", "bn2")]
    return pairs + _head(model, None, None, "classifier")


def _timm_mobilenetv3(model: ScalingNet) -> Pairs:
    pairs, n = _timm_blocks(model)
    head = model.head
    if head is not None and head.conv is not None:
        pairs += [("head.conv.0", f"blocks.{n}.0.conv"), ("head.conv.1", f"blocks.{n}.0.bn1")]
    return pairs + _head(model, None, "conv_head", "classifier")


def _timm_resnet(model: ScalingNet) -> Pairs:
    """timm's ResNet: torchvision's names; a deep stem (ResNet-C/D) as ``conv1.{0,3,6}`` with
    norms ``conv1.{1,4}`` and ``bn1``; an avg-pool shortcut (ResNet-D) keeps its pool slot,
    ``downsample.{1,2}``, also where the stride is 1 and the pool is an identity."""
    n = len(model.spec.stem.channels)
    pairs = []
    for i in range(n):
        pairs.append((f"stem.{i}.0", f"conv1.{3 * i}" if n > 1 else "conv1"))
        pairs.append((f"stem.{i}.1", f"conv1.{3 * i + 1}" if i < n - 1 else "bn1"))
    for ir, ext in _resnet_blocks(model):
        stage = model.spec.stages[int(ir.split(".")[1])]
        if stage.shortcut == "avgpool_conv" and ext.endswith(("downsample.0", "downsample.1")) \
                and not isinstance(model.get_submodule(ir.rsplit(".", 1)[0])[0], nn.AvgPool2d):
            ext = ext[:-1] + str(int(ext[-1]) + 1)
        pairs.append((ir, ext))
    return pairs + _head(model, None, None, "fc")


_TIMM_REGNET = {**{f"{c}{i}": f"conv{i}.{c}" for i in (1, 2, 3) for c in ("conv", "bn")},
                "se.fc1": "se.fc1", "se.fc2": "se.fc2", "downsample.0": "downsample.conv",
                "downsample.1": "downsample.bn"}


def _timm_regnet(model: ScalingNet) -> Pairs:
    """timm's RegNet: ``stem.conv/bn``, blocks ``s{s+1}.b{b+1}.convN.conv/bn``, ``head.fc``."""
    return _regnet_pairs(model, ("stem.conv", "stem.bn"), "timm_regnet", _TIMM_REGNET, "head.fc",
                         lambda s, b: f"s{s + 1}.b{b + 1}.")


LAYOUTS: dict[str, Callable[[ScalingNet], Pairs]] = {
    "resnet": _tv_resnet, "regnet": _tv_regnet, "shufflenet_v2": _tv_shufflenet_v2,
    "mobilenet_v2": _tv_mobilenet_v2, "mobilenet_v3": _tv_mobilenet_v3,
    "efficientnet": _tv_efficientnet, "mnasnet": _tv_mnasnet,
    "timm_efficientnet": _timm_efficientnet, "timm_mobilenetv3": _timm_mobilenetv3,
    "timm_resnet": _timm_resnet, "timm_regnet": _timm_regnet,
}
_FAMILY_LAYOUT = {"resnet": "resnet", "regnet": "regnet", "shufflenet_v2": "shufflenet_v2",
                  "mobilenet_v2": "mobilenet_v2", "mobilenet_v3": "mobilenet_v3",
                  "efficientnet": "efficientnet", "efficientnet_v2": "efficientnet",
                  "mnasnet": "mnasnet"}
#: torchvision layouts by the block types they hold: (blocks, layout, variant, when the variant)
_TV_BY_BLOCKS: tuple[tuple[frozenset[str], str, str, Callable[[NetworkSpec], bool]], ...] = (
    (frozenset({"basic", "bottleneck"}), "resnet", "regnet",
     lambda spec: any(s.group_width for s in spec.stages)),
    (frozenset({"shuffle_v2"}), "shufflenet_v2", "", lambda spec: False),
    (frozenset({"mbconv", "fused_mbconv"}), "efficientnet", "mobilenet_v3",
     lambda spec: spec.head.hidden is not None),
)
#: IR modules whose tensors are reshaped: (IR module, layout) -> timm 1x1 conv from a Linear
_LINEAR_AS_CONV = {("head.hidden", "timm_mobilenetv3")}


def _layout(model: ScalingNet, layout: str | None, timm: bool) -> str:
    if not isinstance(model, ScalingNet):
        raise TypeError(f"model must be a ScalingNet (scaling.build_model), got "
                        f"{type(model).__name__}")
    if layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is not allowed; expected one of {list(LAYOUTS)}")
        return layout
    spec = model.spec
    if timm:
        if {s.block for s in spec.stages} <= {"basic", "bottleneck"}:
            return "timm_regnet" if any(s.group_width for s in spec.stages) else "timm_resnet"
        return "timm_mobilenetv3" if spec.head.hidden is not None else "timm_efficientnet"
    if spec.family in _FAMILY_LAYOUT:
        return _FAMILY_LAYOUT[spec.family]
    blocks = {s.block for s in spec.stages}
    for holds, layout, variant, applies in _TV_BY_BLOCKS:
        if blocks <= holds:
            return variant if variant and applies(spec) else layout
    raise ValueError(f"no torchvision layout holds blocks {sorted(blocks)}; pass layout= one of "
                     f"{list(LAYOUTS)}")


def key_map(model: ScalingNet, layout: str) -> dict[str, str]:
    """``{IR state-dict key: external key}`` for every key of ``model.state_dict()``."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not allowed; expected one of {list(LAYOUTS)}")
    modules = dict(model.named_modules())
    mapping: dict[str, str] = {}
    for ir, ext in LAYOUTS[layout](model):
        if ir not in modules:
            raise ValueError(f"model module {ir!r} does not exist (layout {layout!r})")
        for name in modules[ir].state_dict():
            if "." not in name:
                mapping[f"{ir}.{name}"] = f"{ext}.{name}"
    uncovered = [k for k in model.state_dict() if k not in mapping]
    if uncovered:
        raise ValueError(f"model key(s) {_few(uncovered)} have no counterpart in layout "
                         f"{layout!r}")
    return mapping


def _few(keys: list[str], n: int = 8) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return f"{keys[:n]}{more}"


def _reshaped(ir_key: str, layout: str) -> bool:
    return (ir_key.rsplit(".", 1)[0], layout) in _LINEAR_AS_CONV


def _load(model: ScalingNet, state_dict: Mapping[str, torch.Tensor], layout: str,
          source: str) -> ScalingNet:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    mapping = key_map(model, layout)
    expected = {ext: ir for ir, ext in mapping.items()}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing key(s) {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected key(s) {_few(unexpected)}")
        raise ValueError(f"{source} state dict does not fit layout {layout!r}: "
                         + "; ".join(parts))
    own = model.state_dict()
    converted = {}
    for ir, ext in mapping.items():
        t = state_dict[ext]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{source} key {ext!r} holds a {type(t).__name__}, not a tensor")
        want = own[ir].shape
        if _reshaped(ir, layout) and t.dim() == 4 and t.shape[2:] == (1, 1):
            t = t.flatten(1)
        if t.shape != want:
            raise ValueError(f"{source} key {ext!r} has shape {tuple(t.shape)}; model key "
                             f"{ir!r} expects {tuple(want)}")
        converted[ir] = t
    model.load_state_dict(converted, strict=True)
    return model


def _export(model: ScalingNet, layout: str) -> dict[str, torch.Tensor]:
    mapping = key_map(model, layout)
    out = {}
    for ir, t in model.state_dict().items():
        out[mapping[ir]] = t[:, :, None, None] if _reshaped(ir, layout) and t.dim() == 2 else t
    return out


def load_torchvision(model: ScalingNet, state_dict: Mapping[str, torch.Tensor],
                     layout: str | None = None) -> ScalingNet:
    """Load a torchvision state dict into the IR ``model`` (in place; returned)."""
    return _load(model, state_dict, _layout(model, layout, timm=False), "torchvision")


def export_torchvision(model: ScalingNet, layout: str | None = None) -> dict[str, torch.Tensor]:
    """The IR ``model``'s weights as a torchvision state dict."""
    return _export(model, _layout(model, layout, timm=False))


def load_timm(model: ScalingNet, state_dict: Mapping[str, torch.Tensor],
              layout: str | None = None, eps: float = 1e-5) -> ScalingNet:
    """Load a timm EfficientNet / MobileNetV3 / MNASNet / ResNet state dict into the IR ``model``.

    ``eps``: the BatchNorm eps timm's model was trained with (1e-5; its TF ports ``tf_*`` 1e-3).
    A model whose BN eps differs would compute another function (MobileNetV3: logits off by
    ~3e-4), so it is refused: build it with that eps, e.g. the timm alias
    ``create_model('mobilenetv3_large_100')`` or ``norm={'type': 'BN', 'eps': 1e-5}``.
    """
    bad = sorted({m.eps for m in model.modules()
                  if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.eps != eps})
    if bad:
        raise ValueError(f"load_timm: the model's BatchNorm eps {bad} differs from timm's eps={eps}"
                         f" (spec.norm={model.spec.norm}); build the model with "
                         f"norm={{'type': 'BN', 'eps': {eps}}} (the timm alias of a zoo model "
                         "does) or pass the eps the weights were trained with")
    return _load(model, state_dict, _layout(model, layout, timm=True), "timm")


def export_timm(model: ScalingNet, layout: str | None = None) -> dict[str, torch.Tensor]:
    """The IR ``model``'s weights as a timm EfficientNet / MobileNetV3 state dict."""
    return _export(model, _layout(model, layout, timm=True))
