"""Spec -> nn.Module: :func:`build_model` builds a :class:`ScalingNet` from a NetworkSpec.

Module naming (stable; the weight converters map torchvision keys onto it):

- ``stem.{i}``: ConvNormAct per stem conv (``stem.{i}.0`` conv, ``.1`` norm, ``.2`` activation);
  ``stem.{n}``: the MaxPool2d(3, 2, 1) when ``stem.pool == 'max'`` (n = number of stem convs).
- ``stages.{s}.{b}``: block b of stage s (see :mod:`scaling.nn.blocks` for names inside a block):
  basic/bottleneck: ``conv1, bn1, conv2, bn2[, se.fc1, se.fc2][, conv3, bn3]``,
  ``downsample.{0,1}`` (``downsample.{0: AvgPool2d, 1: conv, 2: norm}`` for avgpool_conv at
  stride 2); ``bnN`` is the norm's mmcv name (``gnN`` for GN, ``lnN``, ``inN``).
  ds/mbconv/fused_mbconv: ``block.{i}.0`` conv, ``block.{i}.1`` norm, SE as ``block.{i}.fc1/fc2``
  (torchvision's MBConv/FusedMBConv layout; mbconv has no expand conv when mid == in).
  shuffle_v1: ``conv1_1, conv2, conv1_2`` (each ``.0`` conv, ``.1`` norm); shuffle_v2: ``branch1``
  and ``branch2``, index for index torchvision's InvertedResidual.
- ``head.conv`` (ConvNormAct, when head.channels), ``head.pool``, ``head.hidden`` (Linear, when
  head.hidden) + ``head.hidden_act``, ``head.dropout``, ``head.fc`` (when num_classes > 0).
  No head is built when ``out_indices`` is given: :func:`build_model` then returns a
  :class:`FeatureNet` (a backbone whose forward returns timm's feature levels' maps; it keeps
  ``head.conv`` when that is a level, as in MobileNetV3).

timm's model API: ``forward_features`` (stem, stages, ``head.conv``), ``forward_head(x,
pre_logits)``, ``reset_classifier``, ``get_classifier``, ``num_features``, ``head_hidden_size``,
``feature_info`` (a :class:`~scaling.nn.features.FeatureInfo`: ``channels()``, ``reduction()``,
``module_name()``; ``num_chs``, ``reduction``, ``module`` per level) and ``pretrained_cfg``
(alias ``default_cfg``); ``forward_intermediates``, ``prune_intermediate_layers``,
``set_grad_checkpointing`` and ``group_matcher`` (:mod:`scaling.nn.timm_api`).
``torch.fx.symbolic_trace`` (and torchvision's ``create_feature_extractor``) trace every model;
``torch.jit.script`` is refused with one TypeError line (use trace, export or compile).
Activations are built in place (torchvision's choice); :func:`scaling.nn.deploy.deploy` folds the
norms for inference.

Weight init (torchvision's choice for EfficientNet/MobileNet): conv weights kaiming_normal
(fan_out, relu gain), conv biases zero; norm weights 1, biases 0; Linear weights normal(0, 0.01),
biases 0. SE convs are convs (kaiming, zero bias).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.nn.modules.batchnorm import _NormBase

from scaling.ir import NetworkSpec
from scaling.ir.base import is_int
from scaling.nn.blocks import Block, build_block, inplace
from scaling.nn.features import FeatureInfo, feature_levels
from scaling.nn.head import Head
from scaling.nn.layers import ConvNormAct, norm_cfg
from scaling.nn.timm_api import TimmMethods

__all__ = ["FeatureNet", "ScalingNet", "build_model", "init_weights"]

#: ImageNet normalisation (torchvision and timm defaults)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_NORM_MODULES = (_NormBase, nn.GroupNorm, nn.LayerNorm)


def build_stem(spec: NetworkSpec) -> nn.Sequential:
    """The stem of ``spec``: its convs (ConvNormAct each), then the max pool if it has one
    (also built alone by :mod:`scaling.latency`, which times the stem as one entry)."""
    stem = spec.stem
    layers: list[nn.Module] = []
    cin = spec.in_channels
    for c, k, s in zip(stem.channels, stem.kernels, stem.strides):
        layers.append(ConvNormAct(cin, c, k, s, norm=norm_cfg(spec.norm),
                                  act=stem.activation, padding=spec.padding))
        cin = c
    if stem.pool == "max":
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


class ScalingNet(TimmMethods, nn.Module):
    """A network built from a :class:`NetworkSpec`: ``stem``, ``stages``, ``head``.

    ``forward`` returns logits (the pooled features when ``num_classes == 0``); a backbone that
    returns stage feature maps is a :class:`FeatureNet`. timm's model API is here as well:
    :meth:`forward_features`, :meth:`forward_head`, :meth:`reset_classifier`,
    :meth:`get_classifier`, ``num_features``, ``feature_info`` and ``pretrained_cfg``.
    """

    def __init__(self, spec: NetworkSpec, num_classes: int | None = None,
                 out_indices: Iterable[int] | None = None, frozen_stages: int = -1,
                 norm_eval: bool = False, with_cp: bool = False,
                 zero_init_last: bool = False, global_pool: str = "avg") -> None:
        super().__init__()
        if not isinstance(spec, NetworkSpec):
            raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
        num_classes = spec.num_classes if num_classes is None else num_classes
        if not is_int(num_classes) or num_classes < 0:
            raise ValueError(f"num_classes={num_classes!r} is not allowed; expected an int >= 0")
        n = len(spec.stages)
        levels = feature_levels(spec)
        self.out_indices = _check_out_indices(out_indices, len(levels))
        if not is_int(frozen_stages) or not -1 <= frozen_stages <= n:
            raise ValueError(f"frozen_stages={frozen_stages!r} is not allowed; expected an int "
                             f"in [-1, {n}] (-1: none, 0: stem, k: stem and stages 0..k-1)")
        self.spec = spec
        self.num_classes = num_classes
        self.frozen_stages = frozen_stages
        self.norm_eval = bool(norm_eval)
        self.with_cp = bool(with_cp)
        self.grad_checkpointing = False

        self.stem = build_stem(spec)

        per_stage: list[list[nn.Module]] = [[] for _ in spec.stages]
        for g in spec.blocks():
            per_stage[g.stage].append(build_block(g, spec.stages[g.stage], spec.norm,
                                                  spec.padding, with_cp))
        self.stages = nn.ModuleList(nn.Sequential(*blocks) for blocks in per_stage)
        self.out_channels = tuple(s.out_channels for s in spec.stages)
        self.head: Head | nn.ModuleDict | None = None
        if self.out_indices is None:
            self.head = Head(spec, spec.stages[-1].out_channels, num_classes, global_pool)
        elif levels[max(self.out_indices)]["module"] == "head.conv":
            # a backbone that outputs the head conv (MobileNetV3) keeps it, named as in the model
            conv = Head(spec, spec.stages[-1].out_channels, 0).conv
            self.head = nn.ModuleDict({"conv": conv})
        self.feature_info = FeatureInfo(levels, self.out_indices)
        #: timm's ``pretrained_cfg``: a dict made once, which a user may edit (timm's data
        #: config reads it), as on timm's models
        self.pretrained_cfg: dict[str, Any] = self._pretrained_cfg()
        init_weights(self, zero_init_last)
        inplace(self)
        self._freeze_stages()

    # -- timm's model API ------------------------------------------------------------------------
    @property
    def num_features(self) -> int:
        """Channels of :meth:`forward_features`' output (timm's ``num_features``)."""
        if isinstance(self.head, Head):
            return self.head.in_features
        return self.feature_info.info[-1]["num_chs"]

    @property
    def head_hidden_size(self) -> int:
        """Width of the pre-logits features (``forward_head(x, pre_logits=True)``)."""
        return self.head.num_features if isinstance(self.head, Head) else self.num_features

    def _pretrained_cfg(self) -> dict[str, Any]:
        """timm's ``pretrained_cfg``: input size, ImageNet mean/std, crop_pct, interpolation."""
        r = self.spec.resolution
        bicubic = self.spec.family.startswith("efficientnet")
        return {"input_size": (self.spec.in_channels, r, r), "mean": IMAGENET_MEAN,
                "std": IMAGENET_STD, "crop_pct": 0.875,
                "interpolation": "bicubic" if bicubic else "bilinear",
                "num_classes": self.num_classes, "first_conv": "stem.0.0",
                "classifier": "head.fc", "architecture": self.spec.name}

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name of :attr:`pretrained_cfg` (the same dict), which older code reads."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, value: dict[str, Any]) -> None:
        self.pretrained_cfg = value

    def check_input(self, x: torch.Tensor) -> None:
        """ValueError unless ``x`` is (N, C, H, W) with C = spec.in_channels; skipped while
        torch.fx traces (a Proxy has no shape to check)."""
        if is_fx_symbolic_tracing() or torch.jit.is_tracing():
            return
        if not isinstance(x, torch.Tensor) or x.dim() != 4:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"input must be (N, C, H, W) with C={self.spec.in_channels}, "
                             f"got {got}")
        if x.shape[1] != self.spec.in_channels:
            raise ValueError(f"input has {x.shape[1]} channels; expected C="
                             f"{self.spec.in_channels} (spec.in_channels), shape {tuple(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, stages and the head's 1x1 conv (timm's ``conv_head``): the unpooled features."""
        self.check_input(x)
        x = self.stem(x)
        for stage in self.stages:
            x = self._run(stage, x)
        if isinstance(self.head, Head) and self.head.conv is not None:
            x = self.head.conv(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, [hidden linear], dropout, classifier; ``pre_logits`` stops before dropout."""
        if not isinstance(self.head, Head):
            raise ValueError("this model is a backbone (out_indices given): it has no head")
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer (nn.Identity when there is none)."""
        fc = self.head.fc if isinstance(self.head, Head) else None
        return fc if fc is not None else nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier by a new one for ``num_classes`` (0: pooled features) and,
        when given, the global pool (timm's 'avg', 'max', 'avgmax', 'catavgmax'; '': none,
        feature maps)."""
        if not is_int(num_classes) or num_classes < 0:
            raise ValueError(f"num_classes={num_classes!r} is not allowed; expected an int >= 0")
        if not isinstance(self.head, Head):
            raise ValueError("this model is a backbone (out_indices given): it has no head")
        self.head.reset(num_classes, global_pool)
        self.num_classes = num_classes

    def __prepare_scriptable__(self) -> ScalingNet:
        raise TypeError("torch.jit.script does not support scaling models (gradient checkpointing "
                        "and named norm layers are not scriptable); use torch.jit.trace, "
                        "torch.export.export or torch.compile")

    # -- mmcv backbone semantics -----------------------------------------------------------------
    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen: list[nn.Module] = [self.stem, *self.stages[:self.frozen_stages]]
        for module in frozen:
            module.eval()
            for p in module.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> ScalingNet:
        """As nn.Module.train, but frozen stages stay in eval mode and, with ``norm_eval``, so do
        all norm layers (mmcv backbone semantics)."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _NORM_MODULES):
                    m.eval()
        return self


class FeatureNet(ScalingNet):
    """A backbone: ``forward`` returns the feature maps of the ``out_indices`` levels (a list, in
    that order, contiguous); no head. The levels are timm's (:func:`feature_levels`: the last
    output at each reduction, 5 on the ImageNet families); ``feature_info`` describes them
    (timm's ``features_only``)."""

    def __init__(self, spec: NetworkSpec, out_indices: Iterable[int] | None = None,
                 frozen_stages: int = -1, norm_eval: bool = False, with_cp: bool = False,
                 zero_init_last: bool = False) -> None:
        if out_indices is None:
            out_indices = range(len(feature_levels(spec))) if isinstance(spec, NetworkSpec) \
                else ()
        super().__init__(spec, 0, out_indices, frozen_stages, norm_eval, with_cp,
                         zero_init_last)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        feats = self.forward_intermediates(x, list(self.out_indices), stop_early=True,
                                           intermediates_only=True)
        return [f.contiguous() for f in feats]  # deploy's channels_last maps too: .view() works


def _check_out_indices(out_indices: Iterable[int] | None, n: int) -> tuple[int, ...] | None:
    if out_indices is None:
        return None
    if is_int(out_indices):
        out_indices = (out_indices,)
    try:
        idx = tuple(out_indices)
    except TypeError:
        raise ValueError(f"out_indices={out_indices!r} is not allowed; expected a tuple of "
                         f"feature level indices in [{-n}, {n - 1}]") from None
    bad = [i for i in idx if not is_int(i) or not -n <= i < n]
    if not idx or bad or len({i % n for i in idx}) != len(idx):
        raise ValueError(f"out_indices={out_indices!r} is not allowed; expected distinct feature "
                         f"level indices in [{-n}, {n - 1}] (the spec has {n} levels: "
                         "scaling.nn.features.feature_levels)")
    return tuple(i % n for i in idx)


def init_weights(model: nn.Module, zero_init_last: bool = False) -> None:
    """torchvision's init (EfficientNet/MobileNet): kaiming_normal fan_out convs, zero biases,
    unit norms, normal(0, 0.01) linears.

    zero_init_last: zero the weight of the norm that ends each residual branch
    (:meth:`Block.last_norm`), so every block starts as the identity: Goyal et al. 2017, Sec. 5.1;
    torchvision's ``zero_init_residual``, timm's ``zero_init_last``. Blocks without a shortcut
    add (ShuffleNetV2, strided MBConv) keep unit norms. No random numbers are drawn for it.
    """
    if not isinstance(zero_init_last, bool):
        raise TypeError(f"zero_init_last must be a bool, got {type(zero_init_last).__name__}")
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORM_MODULES):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
    if zero_init_last:
        for m in model.modules():
            norm = m.last_norm() if isinstance(m, Block) else None
            if norm is not None and getattr(norm, "weight", None) is not None:
                nn.init.zeros_(norm.weight)


def build_model(spec: NetworkSpec | dict, num_classes: int | None = None,
                out_indices: Iterable[int] | None = None, frozen_stages: int = -1,
                norm_eval: bool = False, with_cp: bool = False,
                zero_init_last: bool = False, global_pool: str = "avg"
                ) -> ScalingNet | FeatureNet:
    """Build the network of ``spec`` (a NetworkSpec or its dict).

    num_classes: None -> ``spec.num_classes``; 0 -> no classifier, forward returns the pooled
    features. out_indices: a :class:`FeatureNet` whose forward returns those feature levels'
    maps (no head; timm's levels, :func:`~scaling.nn.features.feature_levels`; negative indices
    count from the end). global_pool: timm's 'avg', 'max', 'avgmax', 'catavgmax' or '' (none).
    frozen_stages=k: stem and stages[0..k-1] are frozen (eval mode, no grad), also across
    ``.train()``. norm_eval: norm layers stay in eval mode in ``.train()``. with_cp: gradient
    checkpointing per block.
    Block i of N (over all stages) gets drop-path rate ``spec.drop_path_rate * i / N``.
    zero_init_last: each residual branch's last norm starts at zero (:func:`init_weights`).
    """
    if isinstance(spec, dict):
        spec = NetworkSpec.from_dict(spec)
    if out_indices is not None:
        return FeatureNet(spec, out_indices, frozen_stages, norm_eval, with_cp, zero_init_last)
    return ScalingNet(spec, num_classes, None, frozen_stages, norm_eval, with_cp,
                      zero_init_last, global_pool)
