"""``create_model(name, pretrained=path)``: a state-dict file into a zoo model, whatever its layout.

The file's format is read from its keys, not from the model name: the model's own keys, or the
layout of :mod:`scaling.zoo.weights` (torchvision's or timm's) whose key set the file's equals.
A name can mean two models (``efficientnet_b5`` is torchvision's, BN eps 1e-3, and timm's,
eps 1e-5): a timm file builds timm's model of that name (:func:`scaling.zoo.aliases
.timm_replacements`). A first conv trained on other input channels is adapted to ``in_chans``
as timm adapts it (:func:`adapt_input_conv`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from typing import Any

import torch

from scaling.ir import NetworkSpec
from scaling.nn.build import ScalingNet, build_model
from scaling.zoo.aliases import timm_replacements
from scaling.zoo.weights import LAYOUTS, key_map, load_file, load_timm, load_torchvision

__all__ = ["adapt_input_conv", "detect_layout", "load_pretrained"]

OWN = "own"
#: the IR key of the first conv's weight (the one adapted to the input channels)
FIRST_CONV = "stem.0.0.weight"
#: timm's BatchNorm eps, checked when a timm file is loaded by a name timm does not have
_TIMM_EPS = 1e-5


def _few(keys: list[str], n: int = 5) -> str:
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return f"{sorted(keys)[:n]}{more}"


def detect_layout(model: ScalingNet, state_dict: Mapping[str, Any], source: str = "") -> str:
    """``'own'`` when ``state_dict`` has the keys of ``model.state_dict()``, else the name of the
    first layout in :data:`scaling.zoo.weights.LAYOUTS` whose keys for ``model`` are exactly
    the state dict's. ValueError naming the closest layout's missing and unexpected keys when none
    fits. Only the model's structure is read."""
    keys = set(state_dict)
    if keys == set(model.state_dict()):
        return OWN
    best: tuple[int, str, set[str]] | None = None
    for layout in LAYOUTS:
        try:
            ext = set(key_map(model, layout).values())
        except (ValueError, AttributeError):  # the layout cannot describe this model's blocks
            continue  # (a torchvision layout reads its own block attributes)
        if ext == keys:
            return layout
        score = len(ext & keys)
        if best is None or score > best[0]:
            best = (score, layout, ext)
    what = f"state dict {source!r}" if source else "the state dict"
    name = model.spec.name or "the model"
    if best is None:
        raise ValueError(f"{what} fits no layout of {name}: no layout in {list(LAYOUTS)} "
                         "describes its blocks")
    _, layout, ext = best
    missing, unexpected = sorted(ext - keys), sorted(keys - ext)
    raise ValueError(f"{what} fits no layout of {name} (its own, torchvision's or timm's); the "
                     f"closest, {layout!r}, lacks {_few(missing)} and does not know "
                     f"{_few(unexpected)}")


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """A first-conv weight (out, 3, kh, kw) trained on RGB, for ``in_chans`` input channels.

    The rule is timm's (``adapt_input_conv``): one channel sums the RGB filters (a gray image
    g gives the response the RGB image (g, g, g) gave); other counts repeat the RGB filters
    cyclically up to ``in_chans`` and scale them by 3 / in_chans, so that a constant input keeps
    its response. Computed in float32, returned in the weight's dtype.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(f"first conv weight must be a 4-d tensor (out, in, kh, kw), got "
                         f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else weight!r}")
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans={in_chans!r} is not allowed; expected an int >= 1")
    have = weight.shape[1]
    if in_chans == have:
        return weight
    if have != 3:
        raise ValueError(f"the first conv's weight has {have} input channels; adapting it to "
                         f"in_chans={in_chans} is defined from 3 (RGB) channels only")
    w = weight.float()
    if in_chans == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        w = w.repeat(1, math.ceil(in_chans / 3), 1, 1)[:, :in_chans] * (3 / in_chans)
    return w.to(weight.dtype)


def _load_own(model: ScalingNet, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    for k, t in state.items():
        if t.shape != own[k].shape:
            raise ValueError(f"state dict {source!r}: key {k!r} has shape {tuple(t.shape)}; the "
                             f"model expects {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=True)


def _file_classes(state: Mapping[str, torch.Tensor], default: int) -> int:
    """The number of classes of a state dict's last 2-d weight (its classifier)."""
    mats = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return int(mats[-1].shape[0]) if mats else default


def load_pretrained(spec: NetworkSpec, path: str | os.PathLike, name: str | None = None,
                    num_classes: int | None = None, build: Mapping[str, Any] | None = None,
                    overridden: Collection[str] = ()) -> ScalingNet:
    """A model of ``spec`` with the weights of the file at ``path`` (see the module docstring).

    Args:
        spec: the model's spec (its ``in_channels`` may differ from the file's: adapted).
        path: a state-dict file (:func:`scaling.zoo.weights.load_file`).
        name: the zoo or timm name the spec came from; a timm file then builds timm's model of
            that name, unless ``overridden`` names the field. None: the spec is taken as it is.
        num_classes: classes of the returned model; the classifier is new when they differ from
            the file's.
        build: :func:`scaling.nn.build.build_model` keywords (``out_indices``...).
    """
    build = dict(build or {})
    source = os.fspath(path)
    state = load_file(path)
    file_classes = _file_classes(state, spec.num_classes)
    full = build_model(spec.replace(num_classes=file_classes))  # key sets ignore in_chans
    layout = detect_layout(full, state, source)
    eps = spec.norm.eps
    if layout.startswith("timm_") and name is not None:
        timm = timm_replacements(name)
        if timm is None:
            eps = _TIMM_EPS  # timm has no model of that name: its BN eps is checked
        else:
            spec = spec.replace(**{k: v for k, v in timm.items() if k not in overridden})
            eps = spec.norm.eps
    first = state[FIRST_CONV if layout == OWN else key_map(full, layout)[FIRST_CONV]]
    want = spec.replace(num_classes=file_classes, in_channels=first.shape[1])
    if want != full.spec:
        full = build_model(want)
    if layout == OWN:
        _load_own(full, state, source)
    elif layout.startswith("timm_"):
        load_timm(full, state, layout=layout, eps=eps)
    else:
        load_torchvision(full, state, layout=layout)
    classes = num_classes if num_classes is not None else spec.num_classes
    if not build and full.spec == spec.replace(num_classes=classes):
        return full  # the loaded model is the one asked for
    weights = full.state_dict()
    weights[FIRST_CONV] = adapt_input_conv(weights[FIRST_CONV], spec.in_channels)
    if build.get("out_indices") is not None:
        model = build_model(spec, **build)
        own = model.state_dict()
        model.load_state_dict({k: v for k, v in weights.items() if k in own})
        return model
    model = build_model(spec.replace(num_classes=classes), **build)
    keep = {k: v for k, v in weights.items()
            if not k.startswith("head.fc.") or classes == file_classes}
    model.load_state_dict(keep, strict=False)
    return model
