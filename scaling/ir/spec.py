"""The intermediate representation: a CNN as a stem, a sequence of stages of blocks, and a head.

Every spec is a frozen dataclass, validated at construction; scaling, search and the family tables
derive new specs with :meth:`replace`. Nothing here imports torch: the geometry of every block
(:func:`scaling.ir.geometry.iter_blocks`) is derived from the spec alone, and both the builder and the
analytic complexity count read it, so they cannot disagree on a channel count.

Block semantics (``StageSpec.block``), N = norm, A = the stage's activation:

- ``basic`` (He et al. 2016): kxk/s N A, kxk N, + shortcut, A.
- ``bottleneck``: 1x1 N A, kxk/s (groups) N A, [SE], 1x1 N, + shortcut, A. ``style='caffe'`` puts
  the stride on the first 1x1. Mid channels derive from the *output* channels (``out*expansion``).
  With ``group_width`` and SE this is also RegNet's X/Y block (Radosavovic et al. 2020).
- ``ds`` (MobileNetV1): depthwise kxk/s N A, pointwise 1x1 N A.
- ``mbconv`` (MobileNetV2/V3, EfficientNet): [1x1 N A], depthwise kxk/s N A, [SE], 1x1 N, + skip.
- ``fused_mbconv`` (EfficientNetV2): kxk/s N A, [SE], 1x1 N (or a single kxk/s N A at e=1), + skip.
- ``shuffle_v1`` (Zhang et al. 2018): grouped 1x1 N A, shuffle, depthwise kxk/s N, grouped 1x1 N;
  added to the input (s=1) or concatenated with a 3x3/2 average pool of it (s=2); A.
- ``shuffle_v2`` (Ma et al. 2018): channel split (s=1) or two branches (s=2), shuffle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from scaling.ir.base import (
    _NESTED,
    _TUPLES,
    _check_activation,
    _check_int,
    _check_kernel,
    _check_number,
    _check_stride,
    _Spec,
)
from scaling.ir.geometry import iter_blocks, stage_shapes, validate_network
from scaling.ir.registry import BLOCK, NORM, NORM_2D, check_choice
from scaling.ir.rounding import make_divisible

SE_BASES = ("in", "mid")
ROUNDINGS = ("floor", "round")
SHORTCUTS = ("conv", "avgpool_conv")
STYLES = ("pytorch", "caffe")
PADDINGS = ("symmetric", "same")
STEM_POOLS = (None, "max")
HEAD_SCALINGS = ("none", "width", "width_up")
SE_BLOCKS = ("bottleneck", "mbconv", "fused_mbconv")  # blocks with an [SE] step


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
        _check_number("norm.eps", self.eps)
        if self.eps <= 0:
            raise ValueError(f"norm.eps={self.eps!r} is not allowed; expected > 0")
        _check_number("norm.momentum", self.momentum)
        if self.type == "GN":
            if self.num_groups is None:
                raise ValueError("norm.num_groups is required for norm.type='GN'")
            _check_int("norm.num_groups", self.num_groups, 1)
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
        _check_number("se.ratio", self.ratio)
        if not 0 < self.ratio <= 1:
            raise ValueError(f"se.ratio={self.ratio!r} is not allowed; expected 0 < ratio <= 1")
        check_choice("se.base", self.base, SE_BASES)
        _check_int("se.divisor", self.divisor, 1)
        check_choice("se.rounding", self.rounding, ROUNDINGS)
        _check_activation("se.activation", self.activation)
        _check_activation("se.gate", self.gate)

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
                raise TypeError(f"stem.{name} must be a non-empty tuple, got {value!r}")
        if not len(self.channels) == len(self.kernels) == len(self.strides):
            raise ValueError(f"stem.channels/kernels/strides must have equal lengths, got "
                             f"{len(self.channels)}/{len(self.kernels)}/{len(self.strides)}")
        for i, (c, k, s) in enumerate(zip(self.channels, self.kernels, self.strides, strict=True)):
            _check_int(f"stem.channels[{i}]", c, 1)
            _check_kernel(f"stem.kernels[{i}]", k)
            _check_stride(f"stem.strides[{i}]", s)
        check_choice("stem.pool", self.pool, STEM_POOLS)
        _check_activation("stem.activation", self.activation)

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

    def __post_init__(self) -> None:
        check_choice("stage.block", self.block, BLOCK.names)
        _check_int("stage.repeats", self.repeats, 1)
        _check_int("stage.out_channels", self.out_channels, 1)
        _check_kernel("stage.kernel", self.kernel)
        _check_stride("stage.stride", self.stride)
        _check_number("stage.expansion", self.expansion)
        if self.expansion <= 0:
            raise ValueError(f"stage.expansion={self.expansion!r} is not allowed; expected > 0")
        if self.mid_channels is not None:
            _check_int("stage.mid_channels", self.mid_channels, 1)
        _check_int("stage.mid_divisor", self.mid_divisor, 1)
        if self.se is not None and not isinstance(self.se, SESpec):
            raise TypeError(f"stage.se must be an SESpec or None, got {type(self.se).__name__}")
        _check_activation("stage.activation", self.activation)
        _check_int("stage.groups", self.groups, 1)
        if self.group_width is not None:
            _check_int("stage.group_width", self.group_width, 1)
        if self.first_groups is not None:
            _check_int("stage.first_groups", self.first_groups, 1)
        _check_int("stage.dilation", self.dilation, 1)
        if not isinstance(self.skip, bool):
            raise TypeError(f"stage.skip must be a bool, got {self.skip!r}")
        check_choice("stage.shortcut", self.shortcut, SHORTCUTS)
        check_choice("stage.style", self.style, STYLES)
        if self.block == "basic" and (self.groups != 1 or self.group_width is not None):
            raise ValueError(f"stage.groups={self.groups!r} is not allowed for block 'basic'; "
                             "expected 1 (use 'bottleneck' for grouped convs)")
        if self.se is not None and self.block not in SE_BLOCKS:
            raise ValueError(f"stage.se is not allowed for block {self.block!r}; expected None "
                             f"(SE exists in blocks {SE_BLOCKS})")
        if self.block == "shuffle_v2" and self.out_channels % 2:
            raise ValueError(f"stage.out_channels={self.out_channels} is not allowed for "
                             "'shuffle_v2'; expected an even number (two branches)")


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
            _check_int("head.channels", self.channels, 1)
        _check_activation("head.activation", self.activation)
        if self.hidden is not None:
            _check_int("head.hidden", self.hidden, 1)
        _check_activation("head.hidden_activation", self.hidden_activation)
        _check_number("head.dropout", self.dropout)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"head.dropout={self.dropout!r} is not allowed; expected 0 <= p < 1")
        check_choice("head.scale", self.scale, HEAD_SCALINGS)
        if self.channels_ratio is not None:
            _check_number("head.channels_ratio", self.channels_ratio)
            if self.channels_ratio <= 0 or self.channels is None:
                raise ValueError(f"head.channels_ratio={self.channels_ratio!r} is not allowed; "
                                 "expected a number > 0, with head.channels set")


@dataclass(frozen=True)
class NetworkSpec(_Spec):
    """A whole network. ``drop_path_rate`` p gives block i of N a drop-path rate p*i/N."""

    stages: tuple[StageSpec, ...]
    stem: StemSpec = field(default_factory=StemSpec)
    head: HeadSpec = field(default_factory=HeadSpec)
    norm: NormSpec = field(default_factory=NormSpec)
    in_channels: int = 3
    resolution: int = 224
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    padding: str = "symmetric"
    name: str = ""
    family: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.stages, tuple) or not self.stages:
            raise ValueError(f"stages={self.stages!r} is not allowed; expected a non-empty tuple")
        for i, s in enumerate(self.stages):
            if not isinstance(s, StageSpec):
                raise TypeError(f"stages[{i}] must be a StageSpec, got {type(s).__name__}")
        for name, cls in (("stem", StemSpec), ("head", HeadSpec), ("norm", NormSpec)):
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"{name} must be a {cls.__name__}, "
                                f"got {type(getattr(self, name)).__name__}")
        _check_int("in_channels", self.in_channels, 1)
        _check_int("resolution", self.resolution, 1)
        _check_int("num_classes", self.num_classes, 0)
        _check_number("drop_path_rate", self.drop_path_rate)
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate={self.drop_path_rate!r} is not allowed; "
                             "expected 0 <= p < 1")
        check_choice("padding", self.padding, PADDINGS)
        ratio, last = self.head.channels_ratio, self.stages[-1].out_channels
        if ratio is not None and self.head.channels != int(round(ratio * last)):
            raise ValueError(f"head.channels={self.head.channels} is not allowed with "
                             f"head.channels_ratio={ratio}: expected round({ratio} * {last})")
        validate_network(self)

    # -- serialisation -------------------------------------------------------------------------
    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str) -> NetworkSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"spec JSON does not parse: {exc}") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> NetworkSpec:
        import yaml

        return cls.from_dict(yaml.safe_load(text))

    # -- geometry --------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return sum(s.repeats for s in self.stages)

    def walk(self, resolution: int | None = None):
        """Per-stage input and output (C, H, W), computed without torch."""
        return stage_shapes(self, resolution)

    def blocks(self, resolution: int | None = None):
        """The geometry of every block, in order (see :class:`scaling.ir.geometry.BlockGeometry`)."""
        return list(iter_blocks(self, resolution))


_TUPLES.update({("StemSpec", "channels"), ("StemSpec", "kernels"), ("StemSpec", "strides")})
_NESTED.update({
    ("NetworkSpec", "stages"): StageSpec,
    ("NetworkSpec", "stem"): StemSpec,
    ("NetworkSpec", "head"): HeadSpec,
    ("NetworkSpec", "norm"): NormSpec,
    ("StageSpec", "se"): SESpec,
})


def load_spec(path: str) -> NetworkSpec:
    """Read a spec from a .json, .yaml or .yml file."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith((".yaml", ".yml")):
        return NetworkSpec.from_yaml(text)
    return NetworkSpec.from_json(text)
