"""One record per block type (``StageSpec.block``), registered once in ``BLOCK_TYPES``.

A :class:`BlockType` holds everything the package knows about a block type: its block-string
code, its torch module class (named, loaded lazily: the IR imports no torch), where its mid
channels come from, whether it takes SE and groups, its residual rule, its network checks, its
analytic cost (the layers it describes to a :class:`Layers` counter) and the channel quanta that
compound scaling keeps. A new block type is one new record here plus its module class.

Layer structure, N = norm, A = the stage's activation (the cost functions below count exactly it):

- ``basic`` (He et al. 2016): kxk/s N A, kxk N, + shortcut, A.
- ``bottleneck``: 1x1 N A, kxk/s (groups) N A, [SE], 1x1 N, + shortcut, A. ``style='caffe'`` puts
  the stride on the first 1x1. With ``group_width`` and SE also RegNet's X/Y block (Radosavovic et
  al. 2020).
- ``ds`` (MobileNetV1): depthwise kxk/s N A, pointwise 1x1 N A.
- ``mbconv`` (MobileNetV2/V3, EfficientNet): [1x1 N A], depthwise kxk/s N A, [SE], 1x1 N, + skip.
- ``fused_mbconv`` (EfficientNetV2): kxk/s N A, [SE], 1x1 N (or a single kxk/s N A at e=1), + skip.
- ``shuffle_v1`` (Zhang et al. 2018): grouped 1x1 N A, shuffle, depthwise kxk/s N, grouped 1x1 N;
  added to the input (s=1) or concatenated with a 3x3/2 average pool of it (s=2); A.
- ``shuffle_v2`` (Ma et al. 2018): channel split (s=1) or two branches (s=2), shuffle.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from scaling.ir.geometry import BlockGeometry, downsample
from scaling.ir.parts import StageSpec
from scaling.ir.registry import BLOCK_TYPES, check_choice
from scaling.ir.rounding import make_divisible

#: where mid channels come from: ``base * expansion`` of the input or output channels, or fixed
MID_FROM = ("in", "out", "out_only", "half_out")
#: residual rules: "projection" (skip, 1x1 shortcut when the shape changes), "identity" (skip
#: only at stride 1 and in == out), "stride1" (always at stride 1, which keeps the width), "none"
RESIDUALS = ("projection", "identity", "stride1", "none")


class Layers(Protocol):
    """What a record's cost function describes its layers to (see scaling.cost.complexity)."""

    def conv(self, cin: int, cout: int, k: int, size: int, groups: int = 1) -> None: ...

    def act(self, name: str, count: int = 1) -> None: ...

    def se(self, channels: int, squeeze: int, stage: StageSpec) -> None: ...


CostFn = Callable[[Layers, BlockGeometry, StageSpec], None]


def divides(field: str, groups: int, channels: int, what: str) -> None:
    """ValueError naming ``field`` unless ``groups`` divides ``channels``."""
    if channels % groups:
        raise ValueError(f"{field}={groups} does not divide the {channels} {what}; "
                         f"expected a divisor of {channels}")


def _no_check(b: BlockGeometry, stage: StageSpec, at: str) -> None:
    return None


def _one(stage: StageSpec) -> int:
    return 1


def _no_quanta(stage: StageSpec) -> tuple[int, int]:
    return 1, 1


@dataclass(frozen=True)
class BlockType:
    """Everything about one block type; see the module docstring."""

    name: str
    code: str  #: block-string code (scaling.ir.codec)
    module: str  #: "package.module:Class" of the torch module (loaded by module_class)
    mid_from: str  #: one of MID_FROM
    residual_rule: str  #: one of RESIDUALS
    cost: CostFn  #: describes the block's layers, shortcut excluded
    se: bool = False  #: SE allowed
    groups: bool = True  #: groups / group_width allowed
    out_multiple: int = 1  #: out_channels must be a multiple of it (a split block: 2)
    concat_input: bool = False  #: at stride 2, the output concatenates the (pooled) input
    expansion_conv: bool = False  #: a 1x1 expansion conv, kept at mid == in by stage.expand
    check: Callable[[BlockGeometry, StageSpec, str], None] = _no_check  #: network checks
    mid_groups: Callable[[StageSpec], int] = _one  #: what must divide the mid channels
    quanta: Callable[[StageSpec], tuple[int, int]] = _no_quanta  #: (in, out) channel quanta

    def __post_init__(self) -> None:
        check_choice(f"block {self.name!r} mid_from", self.mid_from, MID_FROM)
        check_choice(f"block {self.name!r} residual_rule", self.residual_rule, RESIDUALS)
        if ":" not in self.module:
            raise ValueError(f"block {self.name!r} module={self.module!r} is not allowed; "
                             "expected 'package.module:Class'")

    def module_class(self) -> Any:
        """The torch module class (imports its module on first use)."""
        path, _, attr = self.module.partition(":")
        return getattr(importlib.import_module(path), attr)

    # -- stage rules ---------------------------------------------------------------------------
    def check_stage(self, stage: StageSpec) -> None:
        """The stage-level rules of this block type (called by StageSpec)."""
        if not self.groups and (stage.groups != 1 or stage.group_width is not None):
            raise ValueError(f"stage.groups={stage.groups!r} is not allowed for block "
                             f"{self.name!r}; expected 1 (use 'bottleneck' for grouped convs)")
        if stage.se is not None and not self.se:
            allowed = tuple(r.name for r in BLOCK_TYPES if r.se)
            raise ValueError(f"stage.se is not allowed for block {self.name!r}; expected None "
                             f"(SE exists in blocks {allowed})")
        if stage.out_channels % self.out_multiple:
            raise ValueError(f"stage.out_channels={stage.out_channels} is not allowed for "
                             f"{self.name!r}; expected a multiple of {self.out_multiple}")

    def mid_channels(self, stage: StageSpec, in_channels: int) -> int:
        """Mid (expanded / bottleneck / branch) channels of a block with ``in_channels`` inputs."""
        if self.mid_from == "out_only":
            return stage.out_channels
        if self.mid_from == "half_out":
            return stage.out_channels // 2
        if stage.mid_channels is not None:
            return stage.mid_channels
        base = in_channels if self.mid_from == "in" else stage.out_channels
        raw = base * stage.expansion
        if stage.mid_divisor > 1:
            return make_divisible(raw, stage.mid_divisor)
        return max(1, int(round(raw)))

    def residual(self, skip: bool, stride: int, cin: int, cout: int) -> tuple[bool, bool]:
        """(residual add, projection shortcut) of a block."""
        if self.residual_rule == "projection":
            return skip, skip and (stride != 1 or cin != cout)
        if self.residual_rule == "identity":
            return skip and stride == 1 and cin == cout, False
        return self.residual_rule == "stride1" and stride == 1, False

    def ties_width(self, stage: StageSpec) -> bool:
        """Whether the stage's first block needs in == out (compound scaling ties the two)."""
        if stage.stride != 1:
            return False
        return self.residual_rule == "stride1" or (self.residual_rule == "identity" and stage.skip)

    def width_quanta(self, stage: StageSpec) -> tuple[int, int]:
        """(input, output) channel quanta that width scaling must keep."""
        q_in, q_out = self.quanta(stage)
        return q_in, math.lcm(q_out, self.out_multiple)

    # -- geometry ------------------------------------------------------------------------------
    def geometry(self, stage: StageSpec, stage_index: int, index: int, in_channels: int,
                 in_size: int, position: int = 0, drop_path: float = 0.0) -> BlockGeometry:
        """Block ``index`` of ``stage`` with ``in_channels`` inputs of size ``in_size``."""
        stride = stage.stride if index == 0 else 1
        mid = self.mid_channels(stage, in_channels)
        groups = max(1, mid // stage.group_width) if stage.group_width is not None \
            else stage.groups
        first = stage.first_groups if (index == 0 and stage.first_groups is not None) else groups
        squeeze = stage.se.channels(in_channels, mid) if stage.se is not None else 0
        residual, projection = self.residual(stage.skip, stride, in_channels, stage.out_channels)
        return BlockGeometry(
            stage=stage_index, index=index, position=position, block=self.name,
            in_channels=in_channels, mid_channels=mid, out_channels=stage.out_channels,
            squeeze=squeeze, groups=groups, first_groups=first, kernel=stage.kernel,
            stride=stride, dilation=stage.dilation, in_size=in_size,
            out_size=downsample(in_size, stride), residual=residual, projection=projection,
            drop_path=drop_path)

    def branch_out(self, b: BlockGeometry) -> int:
        """Output channels of the block's conv branch (out, less a concatenated input)."""
        return b.out_channels - (b.in_channels if self.concat_input and b.stride == 2 else 0)

    def check_block(self, b: BlockGeometry, stage: StageSpec, at: str,
                    norm_groups: int | None) -> None:
        """Network-level checks of block ``b`` of ``stage`` (``at`` names the stage)."""
        if self.residual_rule == "stride1" and b.stride == 1 and b.in_channels != b.out_channels:
            raise ValueError(f"{at}.out_channels={b.out_channels} is not allowed: a stride-1 "
                             f"{b.block} block keeps its {b.in_channels} input channels")
        self.check(b, stage, at)
        if norm_groups:
            for c in dict.fromkeys((b.out_channels, b.mid_channels, self.branch_out(b))):
                divides("norm.num_groups", norm_groups, c, f"{at} channels")


def check_pair(geometry: BlockGeometry, stage: StageSpec) -> None:
    """ValueError unless ``geometry`` is a block of ``stage``'s type (a builder's arguments)."""
    if geometry.block != stage.block:
        raise ValueError(f"geometry.block={geometry.block!r} does not match "
                         f"stage.block={stage.block!r}")


def block_geometry(stage: StageSpec, stage_index: int, index: int, in_channels: int,
                   in_size: int, position: int = 0, drop_path: float = 0.0) -> BlockGeometry:
    """:meth:`BlockType.geometry` of ``stage``'s block type."""
    return BLOCK_TYPES[stage.block].geometry(stage, stage_index, index, in_channels, in_size,
                                             position, drop_path)



# -- the records -----------------------------------------------------------------------------------
def _basic_cost(acc: Layers, g: BlockGeometry, stage: StageSpec) -> None:
    acc.conv(g.in_channels, g.mid_channels, g.kernel, g.out_size)
    acc.conv(g.mid_channels, g.out_channels, g.kernel, g.out_size)
    acc.act(stage.activation, 2)


def _bottleneck_cost(acc: Layers, g: BlockGeometry, stage: StageSpec) -> None:
    mid = g.mid_channels
    acc.conv(g.in_channels, mid, 1, g.out_size if stage.style == "caffe" else g.in_size)
    acc.conv(mid, mid, g.kernel, g.out_size, g.groups)
    if g.squeeze:
        acc.se(mid, g.squeeze, stage)
    acc.conv(mid, g.out_channels, 1, g.out_size)
    acc.act(stage.activation, 3)


def _bottleneck_check(b: BlockGeometry, stage: StageSpec, at: str) -> None:
    if stage.group_width is not None:
        divides(f"{at}.group_width", stage.group_width, b.mid_channels, "mid channels")
    divides(f"{at}.groups", b.groups, b.mid_channels, "mid channels")


def _ds_cost(acc: Layers, g: BlockGeometry, stage: StageSpec) -> None:
    acc.conv(g.in_channels, g.mid_channels, g.kernel, g.out_size, g.in_channels)
    acc.conv(g.mid_channels, g.out_channels, 1, g.out_size)
    acc.act(stage.activation, 2)


def _ds_quanta(stage: StageSpec) -> tuple[int, int]:
    """The depthwise conv maps ``in`` to ``make_divisible(in * e, mid_divisor)`` channels, a
    multiple of ``in`` only when ``in`` is a multiple of the mid divisor (``e`` an integer); the
    output too, as it is the input of the stage's next block (depth scaling may add one)."""
    if stage.mid_channels is None and stage.mid_divisor > 1:
        return stage.mid_divisor, stage.mid_divisor
    return 1, 1


def _ds_check(b: BlockGeometry, stage: StageSpec, at: str) -> None:
    if b.mid_channels % b.in_channels:
        key = "mid_channels" if stage.mid_channels is not None else "expansion"
        raise ValueError(f"{at}.{key}={getattr(stage, key)!r} is not allowed for block 'ds': "
                         f"its depthwise conv maps {b.in_channels} to {b.mid_channels} "
                         "channels; expected a multiple of the input channels")


def _mbconv_cost(acc: Layers, g: BlockGeometry, stage: StageSpec) -> None:
    mid = g.mid_channels
    if mid != g.in_channels or stage.expand:
        acc.conv(g.in_channels, mid, 1, g.in_size)
        acc.act(stage.activation)
    acc.conv(mid, mid, g.kernel, g.out_size, mid)
    acc.act(stage.activation)
    if g.squeeze:
        acc.se(mid, g.squeeze, stage)
    acc.conv(mid, g.out_channels, 1, g.out_size)


def _fused_mbconv_cost(acc: Layers, g: BlockGeometry, stage: StageSpec) -> None:
    # at mid == in a single kxk conv in -> out, SE on its output (torchvision's FusedMBConv)
    expand = g.mid_channels != g.in_channels or stage.expand
    first_out = g.mid_channels if expand else g.out_channels
    acc.conv(g.in_channels, first_out, g.kernel, g.out_size)
    acc.act(stage.activation)
    if g.squeeze:
        acc.se(first_out, g.squeeze, stage)
    if expand:
        acc.conv(g.mid_channels, g.out_channels, 1, g.out_size)


def _shuffle_v1_cost(acc: Layers, g: BlockGeometry, stage: StageSpec) -> None:
    mid = g.mid_channels
    acc.conv(g.in_channels, mid, 1, g.in_size, g.first_groups)
    acc.conv(mid, mid, g.kernel, g.out_size, mid)
    acc.conv(mid, SHUFFLE_V1.branch_out(g), 1, g.out_size, g.groups)
    acc.act(stage.activation, 2)


def _shuffle_v1_check(b: BlockGeometry, stage: StageSpec, at: str) -> None:
    branch = SHUFFLE_V1.branch_out(b)
    if branch < 1:
        raise ValueError(f"{at}.out_channels={b.out_channels} is not allowed: a stride-2 "
                         f"shuffle_v1 block concatenates its {b.in_channels} input "
                         "channels, so out_channels must exceed them")
    first = "first_groups" if b.index == 0 and stage.first_groups is not None \
        else "groups"  # the field that set the first 1x1 conv's groups
    divides(f"{at}.{first}", b.first_groups, b.in_channels, "input channels")
    divides(f"{at}.{first}", b.first_groups, b.mid_channels, "mid channels")
    divides(f"{at}.groups", b.groups, b.mid_channels, "mid channels")
    divides(f"{at}.groups", b.groups, branch, "branch output channels")


def _shuffle_v1_quanta(stage: StageSpec) -> tuple[int, int]:
    # later blocks group their input (= out); at stride 2 the branch out - in stays grouped
    first = stage.first_groups or stage.groups
    return math.lcm(first, stage.groups if stage.stride == 2 else 1), stage.groups


def _shuffle_v2_cost(acc: Layers, g: BlockGeometry, stage: StageSpec) -> None:
    mid, cin = g.mid_channels, g.in_channels
    if g.stride == 1:
        acc.conv(mid, mid, 1, g.in_size)
    else:
        acc.conv(cin, cin, g.kernel, g.out_size, cin)
        acc.conv(cin, mid, 1, g.out_size)
        acc.act(stage.activation)
        acc.conv(cin, mid, 1, g.in_size)
    acc.conv(mid, mid, g.kernel, g.out_size, mid)
    acc.conv(mid, mid, 1, g.out_size)
    acc.act(stage.activation, 2)


def _shuffle_v2_check(b: BlockGeometry, stage: StageSpec, at: str) -> None:
    if b.stride == 1 and b.in_channels % 2:
        raise ValueError(f"{at}: shuffle_v2 splits its {b.in_channels} input channels in "
                         "two; expected an even number")


_NN = "scaling.nn.blocks:"
BASIC = BLOCK_TYPES.register(BlockType(
    "basic", "bs", _NN + "BasicBlock", "out_only", "projection", _basic_cost, groups=False))
BOTTLENECK = BLOCK_TYPES.register(BlockType(
    "bottleneck", "bt", _NN + "Bottleneck", "out", "projection", _bottleneck_cost, se=True,
    check=_bottleneck_check, mid_groups=lambda s: s.group_width or s.groups))
DS = BLOCK_TYPES.register(BlockType(
    "ds", "ds", _NN + "DepthwiseSeparable", "in", "none", _ds_cost, check=_ds_check,
    quanta=_ds_quanta))
MBCONV = BLOCK_TYPES.register(BlockType(
    "mbconv", "ir", _NN + "MBConv", "in", "identity", _mbconv_cost, se=True,
    expansion_conv=True))
FUSED_MBCONV = BLOCK_TYPES.register(BlockType(
    "fused_mbconv", "er", _NN + "FusedMBConv", "in", "identity", _fused_mbconv_cost, se=True,
    expansion_conv=True))
SHUFFLE_V1 = BLOCK_TYPES.register(BlockType(
    "shuffle_v1", "sv1", _NN + "ShuffleV1Block", "out", "stride1", _shuffle_v1_cost,
    concat_input=True, check=_shuffle_v1_check, quanta=_shuffle_v1_quanta,
    mid_groups=lambda s: math.lcm(s.groups, s.first_groups or s.groups)))
SHUFFLE_V2 = BLOCK_TYPES.register(BlockType(
    "shuffle_v2", "sv2", _NN + "ShuffleV2Block", "half_out", "stride1", _shuffle_v2_cost,
    out_multiple=2, check=_shuffle_v2_check))
