"""The parts of a network spec: norm, squeeze-excitation, stem, stage and head.

Every spec is a frozen dataclass, validated at construction; a stage's block-specific rules (SE,
groups, even widths) come from its block record (:mod:`scaling.ir.blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass

from scaling.ir.base import (
    _Spec,
    check_activation,
    check_bool,
    check_int,
    check_kernel,
    check_number,
    check_stride,
)
from scaling.ir.limits import MAX_BLOCKS, MAX_CHANNELS, MAX_RESOLUTION, SpecTypeError
from scaling.ir.registry import BLOCK_TYPES, NORM, NORM_2D, check_choice
from scaling.ir.rounding import make_divisible

SE_BASES = ("in", "mid")
ROUNDINGS = ("floor", "round")
SHORTCUTS = ("conv", "avgpool_conv")
STYLES = ("pytorch", "caffe")
STEM_POOLS = (None, "max")
HEAD_SCALINGS = ("none", "width", "width_up")


@dataclass(frozen=True)
class NormSpec(_Spec):
    """Norm layer config (mmcv semantics): ``type`` from the norm registry, eps, momentum."""

    type: str = "BN"
    eps: float = 1e-5
    momentum: float = 0.1
    num_groups: int | None = None
    requires_grad: bool = True

    def __post_init__(self) -> None:
        if self.type not in NORM:
            check_choice("norm.type", self.type, NORM.names)
        if self.type not in NORM_2D:
            raise ValueError(f"norm.type={self.type!r} cannot normalise (N, C, H, W) conv features;"
                             f" expected one of {sorted(NORM_2D)}")
        check_number("norm.eps", self.eps)
        if self.eps <= 0:
            raise ValueError(f"norm.eps={self.eps!r} is not allowed; expected > 0")
        check_number("norm.momentum", self.momentum)
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"norm.momentum={self.momentum!r} is not allowed; "
                             "expected 0 <= momentum <= 1")
        check_bool("norm.requires_grad", self.requires_grad)
        if self.type == "GN":
            if self.num_groups is None:
                raise ValueError("norm.num_groups is required for norm.type='GN'")
            check_int("norm.num_groups", self.num_groups, 1, MAX_CHANNELS)
        elif self.num_groups is not None:
            raise ValueError(f"norm.num_groups={self.num_groups!r} is only allowed with type 'GN'")

    @property
    def has_params(self) -> bool:
        """Whether the layer has a weight and a bias per channel (IN is not affine, as in torch)."""
        return self.type not in ("IN", "IN2d")


@dataclass(frozen=True)
class SESpec(_Spec):
    """Squeeze-and-excitation (Hu et al. 2018) on a block's mid features.

    squeeze = rounding(base_channels * ratio), then ``make_divisible(., divisor)`` when divisor > 1,
    at least 1. TF EfficientNet / torchvision: base in, floor; MobileNetV3: base mid, divisor 8;
    RegNetY: base in, round.
    """

    ratio: float = 0.25
    base: str = "in"
    divisor: int = 1
    rounding: str = "floor"
    activation: str = "relu"
    gate: str = "sigmoid"

    def __post_init__(self) -> None:
        check_number("se.ratio", self.ratio)
        if not 0 < self.ratio <= 1:
            raise ValueError(f"se.ratio={self.ratio!r} is not allowed; expected 0 < ratio <= 1")
        check_choice("se.base", self.base, SE_BASES)
        check_int("se.divisor", self.divisor, 1, MAX_CHANNELS)
        check_choice("se.rounding", self.rounding, ROUNDINGS)
        check_activation("se.activation", self.activation)
        check_activation("se.gate", self.gate)

    def channels(self, in_channels: int, mid_channels: int) -> int:
        base = in_channels if self.base == "in" else mid_channels
        raw = base * self.ratio
        n = int(raw) if self.rounding == "floor" else int(round(raw))
        if self.divisor > 1:
            n = make_divisible(n, self.divisor)
        return max(1, n)


@dataclass(frozen=True)
class StemSpec(_Spec):
    """The stem: a chain of conv-norm-act layers, then an optional 3x3/2 max pool."""

    channels: tuple[int, ...] = (32,)
    kernels: tuple[int, ...] = (3,)
    strides: tuple[int, ...] = (2,)
    pool: str | None = None
    activation: str = "relu"
    scale: bool = True

    def __post_init__(self) -> None:
        for name in ("channels", "kernels", "strides"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not value:
                raise SpecTypeError(f"stem.{name} must be a non-empty tuple, got {value!r}")
        if not len(self.channels) == len(self.kernels) == len(self.strides):
            raise ValueError(f"stem.channels/kernels/strides must have equal lengths, got "
                             f"{len(self.channels)}/{len(self.kernels)}/{len(self.strides)}")
        for i, (c, k, s) in enumerate(zip(self.channels, self.kernels, self.strides, strict=True)):
            check_int(f"stem.channels[{i}]", c, 1, MAX_CHANNELS)
            check_kernel(f"stem.kernels[{i}]", k)
            check_stride(f"stem.strides[{i}]", s)
        check_choice("stem.pool", self.pool, STEM_POOLS)
        check_activation("stem.activation", self.activation)
        check_bool("stem.scale", self.scale)

    @property
    def out_channels(self) -> int:
        return self.channels[-1]


@dataclass(frozen=True)
class StageSpec(_Spec):
    """A run of ``repeats`` blocks of one type; only the first block has ``stride``.

    Mid channels: ``mid_channels`` if given, else ``base * expansion`` rounded to a multiple of
    ``mid_divisor`` (make_divisible) or to the nearest int (divisor 1), where base is the block's
    input channels for ds/mbconv/fused_mbconv and its output channels for bottleneck/shuffle_v1.
    Groups of the kxk conv (bottleneck) or of the 1x1 convs (shuffle_v1): ``mid // group_width``
    when ``group_width`` is set, else ``groups``; ``first_groups`` overrides the groups of the first
    1x1 conv of the stage's first block (ShuffleNetV1 keeps the network's first one dense).
    ``expand`` keeps the expansion conv of mbconv / fused_mbconv also where mid == in (timm's
    ``ir`` / ``er`` always build it; torchvision's leave it out at e=1).
    """

    block: str
    repeats: int
    out_channels: int
    kernel: int = 3
    stride: int = 1
    expansion: float = 1.0
    mid_channels: int | None = None
    mid_divisor: int = 1
    se: SESpec | None = None
    activation: str = "relu"
    groups: int = 1
    group_width: int | None = None
    first_groups: int | None = None
    dilation: int = 1
    skip: bool = True
    shortcut: str = "conv"
    style: str = "pytorch"
    expand: bool = False

    def __post_init__(self) -> None:
        check_choice("stage.block", self.block, BLOCK_TYPES.names)
        check_int("stage.repeats", self.repeats, 1, MAX_BLOCKS)
        check_int("stage.out_channels", self.out_channels, 1, MAX_CHANNELS)
        check_kernel("stage.kernel", self.kernel)
        check_stride("stage.stride", self.stride)
        check_number("stage.expansion", self.expansion)
        if not 0 < self.expansion <= MAX_CHANNELS:
            raise ValueError(f"stage.expansion={self.expansion!r} is not allowed; expected > 0 "
                             f"and <= {MAX_CHANNELS:_}")
        if self.mid_channels is not None:
            check_int("stage.mid_channels", self.mid_channels, 1, MAX_CHANNELS)
        check_int("stage.mid_divisor", self.mid_divisor, 1, MAX_CHANNELS)
        if self.se is not None and not isinstance(self.se, SESpec):
            raise SpecTypeError(f"stage.se must be an SESpec or None, got {type(self.se).__name__}")
        check_activation("stage.activation", self.activation)
        # every field is range-checked, also those the block type does not use
        check_int("stage.groups", self.groups, 1, MAX_CHANNELS)
        if self.group_width is not None:
            check_int("stage.group_width", self.group_width, 1, MAX_CHANNELS)
        if self.first_groups is not None:
            check_int("stage.first_groups", self.first_groups, 1, MAX_CHANNELS)
        # a dilated kernel, (kernel - 1) * dilation + 1 pixels, wider than the largest input
        # would see only padding
        check_int("stage.dilation", self.dilation, 1,
                  (MAX_RESOLUTION - 1) // max(1, self.kernel - 1))
        check_bool("stage.skip", self.skip)
        check_choice("stage.shortcut", self.shortcut, SHORTCUTS)
        check_choice("stage.style", self.style, STYLES)
        check_bool("stage.expand", self.expand)
        if self.expand and not BLOCK_TYPES[self.block].expansion_conv:
            allowed = tuple(r.name for r in BLOCK_TYPES if r.expansion_conv)
            raise ValueError(f"stage.expand=True is not allowed for block {self.block!r}; "
                             f"expected it only with {allowed}")
        BLOCK_TYPES[self.block].check_stage(self)


@dataclass(frozen=True)
class HeadSpec(_Spec):
    """The head: [1x1 conv N A] -> global average pool -> [linear A] -> dropout -> classifier.

    ``scale`` says how width scaling treats ``channels``: 'none', 'width' (rounded like the
    stages), or 'width_up' (only scaled up: ``max(1, w)``, as MobileNetV2). ``channels_ratio`` k,
    when set, ties the head conv to the last stage instead: ``channels = round(k * last stage
    out_channels)`` (torchvision's EfficientNet k=4, MobileNetV3 k=6); width scaling keeps the tie.
    """

    channels: int | None = None
    activation: str = "relu"
    hidden: int | None = None
    hidden_activation: str = "hswish"
    dropout: float = 0.0
    scale: str = "width"
    channels_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.channels is not None:
            check_int("head.channels", self.channels, 1, MAX_CHANNELS)
        check_activation("head.activation", self.activation)
        if self.hidden is not None:
            check_int("head.hidden", self.hidden, 1, MAX_CHANNELS)
        check_activation("head.hidden_activation", self.hidden_activation)
        check_number("head.dropout", self.dropout)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"head.dropout={self.dropout!r} is not allowed; expected 0 <= p < 1")
        check_choice("head.scale", self.scale, HEAD_SCALINGS)
        if self.channels_ratio is not None:
            check_number("head.channels_ratio", self.channels_ratio)
            if self.channels_ratio <= 0 or self.channels is None:
                raise ValueError(f"head.channels_ratio={self.channels_ratio!r} is not allowed; "
                                 "expected a number > 0, with head.channels set")
