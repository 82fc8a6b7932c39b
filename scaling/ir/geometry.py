"""Torch-free geometry of a spec: the channels and sizes of every block, and spec validation.

The builder and the analytic complexity count both read :class:`BlockGeometry`, so a channel rule
(mid channels, SE squeeze, groups) lives in exactly one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scaling.ir.rounding import make_divisible

if TYPE_CHECKING:
    from scaling.ir.spec import NetworkSpec, StageSpec

# Blocks whose mid channels derive from their input (else from their output) channels.
_MID_FROM_INPUT = {"ds", "mbconv", "fused_mbconv"}


def downsample(size: int, stride: int) -> int:
    """Output size of any odd-kernel, 'same'-or-symmetric padded op: ``ceil(size / stride)``.

    For a kxk conv with padding d*(k-1)/2, ``(H + 2p - d(k-1) - 1) // s + 1 == (H - 1) // s + 1``;
    TF 'same' padding gives ``ceil(H / s)``, the same number; so does the 3x3/2 max pool of stems.
    """
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class BlockGeometry:
    """One block, resolved: channels, groups, sizes and skip of block ``index`` of ``stage``."""

    stage: int
    index: int
    position: int
    block: str
    in_channels: int
    mid_channels: int
    out_channels: int
    squeeze: int
    groups: int
    first_groups: int
    kernel: int
    stride: int
    dilation: int
    in_size: int
    out_size: int
    residual: bool
    projection: bool
    drop_path: float


def mid_channels(stage: StageSpec, in_channels: int) -> int:
    """Mid (expanded / bottleneck / branch) channels of a block with ``in_channels`` inputs."""
    if stage.block == "basic":
        return stage.out_channels
    if stage.block == "shuffle_v2":
        return stage.out_channels // 2
    if stage.mid_channels is not None:
        return stage.mid_channels
    base = in_channels if stage.block in _MID_FROM_INPUT else stage.out_channels
    raw = base * stage.expansion
    if stage.mid_divisor > 1:
        return make_divisible(raw, stage.mid_divisor)
    return max(1, int(round(raw)))


def block_geometry(stage: StageSpec, stage_index: int, index: int, in_channels: int,
                   in_size: int, position: int = 0, drop_path: float = 0.0) -> BlockGeometry:
    """Block ``index`` of ``stage`` with ``in_channels`` inputs of size ``in_size``: every rule."""
    stride = stage.stride if index == 0 else 1
    mid = mid_channels(stage, in_channels)
    if stage.group_width is not None:
        groups = max(1, mid // stage.group_width)
    else:
        groups = stage.groups
    first = stage.first_groups if (index == 0 and stage.first_groups is not None) else groups
    squeeze = stage.se.channels(in_channels, mid) if stage.se is not None else 0
    out_size = downsample(in_size, stride)
    if stage.block in ("basic", "bottleneck"):
        residual = stage.skip
        projection = residual and (stride != 1 or in_channels != stage.out_channels)
    elif stage.block in ("mbconv", "fused_mbconv"):
        residual = stage.skip and stride == 1 and in_channels == stage.out_channels
        projection = False
    else:
        residual = stage.block in ("shuffle_v1", "shuffle_v2") and stride == 1
        projection = False
    return BlockGeometry(
        stage=stage_index, index=index, position=position, block=stage.block,
        in_channels=in_channels, mid_channels=mid, out_channels=stage.out_channels,
        squeeze=squeeze, groups=groups, first_groups=first, kernel=stage.kernel,
        stride=stride, dilation=stage.dilation, in_size=in_size, out_size=out_size,
        residual=residual, projection=projection, drop_path=drop_path,
    )


def iter_blocks(spec: NetworkSpec, resolution: int | None = None) -> Iterator[BlockGeometry]:
    """Every block of ``spec`` in order, at ``resolution`` (default: the spec's)."""
    size = stem_out_size(spec, resolution)
    channels = spec.stem.out_channels
    total = spec.num_blocks
    position = 0
    for si, stage in enumerate(spec.stages):
        for bi in range(stage.repeats):
            b = block_geometry(stage, si, bi, channels, size, position,
                               spec.drop_path_rate * position / total)
            yield b
            channels, size = b.out_channels, b.out_size
            position += 1


def stem_out_size(spec: NetworkSpec, resolution: int | None = None) -> int:
    size = spec.resolution if resolution is None else resolution
    for s in spec.stem.strides:
        size = downsample(size, s)
    if spec.stem.pool == "max":
        size = downsample(size, 2)
    return size


@dataclass(frozen=True)
class StageShape:
    stage: int
    input: tuple[int, int, int]
    output: tuple[int, int, int]


def stage_shapes(spec: NetworkSpec, resolution: int | None = None) -> list[StageShape]:
    """Per-stage input and output (C, H, W)."""
    shapes: dict[int, StageShape] = {}
    for b in iter_blocks(spec, resolution):
        first = shapes.get(b.stage)
        start = first.input if first else (b.in_channels, b.in_size, b.in_size)
        shapes[b.stage] = StageShape(b.stage, start, (b.out_channels, b.out_size, b.out_size))
    return [shapes[i] for i in sorted(shapes)]


def _stride_steps(spec: NetworkSpec) -> list[tuple[str, int, int]]:
    """(where, input size, stride) of every strided op, stem first."""
    steps = []
    size = spec.resolution
    for i, s in enumerate(spec.stem.strides):
        steps.append((f"stem conv {i}", size, s))
        size = downsample(size, s)
    if spec.stem.pool == "max":
        steps.append(("stem pool", size, 2))
    for b in iter_blocks(spec):
        if b.stride == 2:
            steps.append((f"stage {b.stage} block {b.index}", b.in_size, 2))
    return steps


def _divides(field: str, groups: int, channels: int, what: str) -> None:
    if channels % groups:
        raise ValueError(f"{field}={groups} does not divide the {channels} {what}; "
                         f"expected a divisor of {channels}")


def validate_network(spec: NetworkSpec) -> None:
    """Network-level checks: downsampling vs resolution, groups vs channels, split widths."""
    steps = [s for s in _stride_steps(spec) if s[2] == 2]
    for where, size, _ in steps:
        if size < 2:
            raise ValueError(
                f"resolution={spec.resolution} allows "
                f"{sum(1 for _, sz, _ in steps if sz >= 2)} stride-2 steps, but the spec has "
                f"{len(steps)} ({where} would downsample a {size}x{size} map)")
    norm_groups = spec.norm.num_groups if spec.norm.type == "GN" else None
    if norm_groups:
        for c in spec.stem.channels:
            _divides("norm.num_groups", norm_groups, c, "stem channels")
        if spec.head.channels:
            _divides("norm.num_groups", norm_groups, spec.head.channels, "head channels")
    for b in iter_blocks(spec):
        stage = spec.stages[b.stage]
        at = f"stages[{b.stage}]"
        if b.block == "bottleneck":
            if stage.group_width is not None:
                _divides(f"{at}.group_width", stage.group_width, b.mid_channels, "mid channels")
            _divides(f"{at}.groups", b.groups, b.mid_channels, "mid channels")
        if b.block == "shuffle_v1":
            branch_out = b.out_channels - (b.in_channels if b.stride == 2 else 0)
            if branch_out < 1:
                raise ValueError(f"{at}.out_channels={b.out_channels} is not allowed: a stride-2 "
                                 f"shuffle_v1 block concatenates its {b.in_channels} input "
                                 "channels, so out_channels must exceed them")
            first = "first_groups" if b.index == 0 and stage.first_groups is not None \
                else "groups"  # the field that set the first 1x1 conv's groups
            _divides(f"{at}.{first}", b.first_groups, b.in_channels, "input channels")
            _divides(f"{at}.{first}", b.first_groups, b.mid_channels, "mid channels")
            _divides(f"{at}.groups", b.groups, b.mid_channels, "mid channels")
            _divides(f"{at}.groups", b.groups, branch_out, "branch output channels")
        if b.block == "ds" and b.mid_channels % b.in_channels:
            key = "mid_channels" if stage.mid_channels is not None else "expansion"
            raise ValueError(f"{at}.{key}={getattr(stage, key)!r} is not allowed for block 'ds': "
                             f"its depthwise conv maps {b.in_channels} to {b.mid_channels} "
                             "channels; expected a multiple of the input channels")
        if b.block in ("shuffle_v1", "shuffle_v2") and b.stride == 1 \
                and b.in_channels != b.out_channels:
            raise ValueError(f"{at}.out_channels={b.out_channels} is not allowed: a stride-1 "
                             f"{b.block} block keeps its {b.in_channels} input channels")
        if b.block == "shuffle_v2" and b.stride == 1 and b.in_channels % 2:
            raise ValueError(f"{at}: shuffle_v2 splits its {b.in_channels} input channels in "
                             "two; expected an even number")
        if norm_groups:
            normed = [b.out_channels, b.mid_channels]
            if b.block == "shuffle_v1" and b.stride == 2:
                normed.append(b.out_channels - b.in_channels)  # the concatenated branch
            for c in normed:
                _divides("norm.num_groups", norm_groups, c, f"{at} channels")
