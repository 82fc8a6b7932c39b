"""The intermediate representation: a CNN as a stem, a sequence of stages of blocks, and a head.

Every spec is a frozen dataclass, validated at construction; scaling, search and the family tables
derive new specs with :meth:`replace`. Nothing here imports torch: the geometry of every block
(:func:`iter_blocks`) is derived from the spec alone, and both the builder and the analytic
complexity count read it, so they cannot disagree on a channel count. The parts (stem, stages,
head, norm, SE) are in :mod:`scaling.ir.parts`; each block type's layers and rules in its record,
:mod:`scaling.ir.blocks`.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from scaling.ir.base import _Spec, check_int, check_number, check_str
from scaling.ir.blocks import block_geometry, divides
from scaling.ir.geometry import BlockGeometry, StageShape, downsample
from scaling.ir.limits import (
    MAX_BLOCKS,
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_RESOLUTION,
    SpecTypeError,
)
from scaling.ir.parts import HeadSpec, NormSpec, SESpec, StageSpec, StemSpec
from scaling.ir.registry import BLOCK_TYPES, check_choice

__all__ = ["HeadSpec", "NetworkSpec", "NormSpec", "SESpec", "StageSpec", "StemSpec",
           "iter_blocks", "stage_shapes", "validate_network"]

PADDINGS = ("symmetric", "same")


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
                raise SpecTypeError(f"stages[{i}] must be a StageSpec, got {type(s).__name__}")
        if self.num_blocks > MAX_BLOCKS:
            raise ValueError(f"stages hold {self.num_blocks:_} blocks; expected at most "
                             f"{MAX_BLOCKS:_} (scaling.ir.limits.MAX_BLOCKS)")
        for name, cls in (("stem", StemSpec), ("head", HeadSpec), ("norm", NormSpec)):
            if not isinstance(getattr(self, name), cls):
                raise SpecTypeError(f"{name} must be a {cls.__name__}, "
                                    f"got {type(getattr(self, name)).__name__}")
        check_int("in_channels", self.in_channels, 1, MAX_CHANNELS)
        check_resolution("resolution", self.resolution)
        check_int("num_classes", self.num_classes, 0, MAX_CLASSES)
        check_number("drop_path_rate", self.drop_path_rate)
        if not 0 <= self.drop_path_rate < 1:
            raise ValueError(f"drop_path_rate={self.drop_path_rate!r} is not allowed; "
                             "expected 0 <= p < 1")
        check_choice("padding", self.padding, PADDINGS)
        check_str("name", self.name)
        check_str("family", self.family)
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
        """Read JSON text; a syntax error, a duplicate key or too deep a nesting is a
        ValueError."""
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise ValueError(f"spec JSON does not parse: {exc}") from None
        except RecursionError:
            raise ValueError("spec JSON is nested too deeply") from None
        return cls.from_dict(data)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> NetworkSpec:
        """Read YAML text (safe loader: no python tags); a syntax error, a tag, a duplicate key
        or too deep a nesting is a ValueError."""
        import yaml

        try:
            data = yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            raise ValueError(f"spec YAML does not parse: {exc}") from None
        except RecursionError:
            raise ValueError("spec YAML is nested too deeply") from None
        return cls.from_dict(data)

    # -- geometry --------------------------------------------------------------------------------
    @property
    def num_blocks(self) -> int:
        return sum(s.repeats for s in self.stages)

    def walk(self, resolution: int | None = None) -> list[StageShape]:
        """Per-stage input and output (C, H, W), computed without torch."""
        return stage_shapes(self, resolution)

    def blocks(self, resolution: int | None = None) -> list[BlockGeometry]:
        """The geometry of every block, in order (:class:`~scaling.ir.geometry.BlockGeometry`)."""
        return list(iter_blocks(self, resolution))


def check_resolution(field_name: str, value: object) -> None:
    """An input side in pixels: an int in [1, MAX_RESOLUTION]."""
    check_int(field_name, value, 1, MAX_RESOLUTION)


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A JSON object's pairs as a dict; ValueError on a repeated key."""
    out: dict[Any, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"spec has the key {key!r} twice")
        out[key] = value
    return out


@cache
def _unique_key_loader() -> type:
    """yaml.SafeLoader that refuses a repeated mapping key."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if not isinstance(key, Hashable):
                    continue  # SafeLoader reports an unhashable key itself
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


# -- the network walk ----------------------------------------------------------------------------
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
    if resolution is None:
        size = spec.resolution
    else:
        check_resolution("resolution", resolution)
        size = resolution
    for s in spec.stem.strides:
        size = downsample(size, s)
    if spec.stem.pool == "max":
        size = downsample(size, 2)
    return size


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


def validate_network(spec: NetworkSpec) -> None:
    """Network-level checks: downsampling vs resolution, norm groups, then each block's record."""
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
            divides("norm.num_groups", norm_groups, c, "stem channels")
        if spec.head.channels:
            divides("norm.num_groups", norm_groups, spec.head.channels, "head channels")
    one_pixel = _stem_one_pixel(spec)  # (where, channels) of the norms on a 1x1 map
    for b in iter_blocks(spec):
        at = f"stages[{b.stage}]"
        if b.mid_channels > MAX_CHANNELS:
            raise ValueError(f"{at} has {b.mid_channels:_} mid channels (expansion="
                             f"{spec.stages[b.stage].expansion!r}); expected at most "
                             f"{MAX_CHANNELS:_} (scaling.ir.limits.MAX_CHANNELS)")
        record = BLOCK_TYPES[b.block]
        record.check_block(b, spec.stages[b.stage], at, norm_groups)
        if b.out_size == 1:  # every conv of a block is normalised; so is its output
            convs = _Convs()
            record.cost(convs, b, spec.stages[b.stage])
            one_pixel += [(at, c) for c in (b.out_channels, *convs.on_one_pixel)]
            if spec.head.channels:
                one_pixel.append(("the head", spec.head.channels))
    _check_one_pixel_norm(spec, one_pixel)


class _Convs:
    """A :class:`~scaling.ir.blocks.Layers` that keeps the output channels of the convs on a
    1x1 map."""

    def __init__(self) -> None:
        self.on_one_pixel: list[int] = []

    def conv(self, cin: int, cout: int, k: int, size: int, groups: int = 1) -> None:
        if size == 1:
            self.on_one_pixel.append(cout)

    def act(self, name: str, count: int = 1) -> None:
        return None

    def se(self, channels: int, squeeze: int, stage: StageSpec) -> None:
        return None


def _stem_one_pixel(spec: NetworkSpec) -> list[tuple[str, int]]:
    size, out = spec.resolution, []
    for i, (c, s) in enumerate(zip(spec.stem.channels, spec.stem.strides, strict=True)):
        size = downsample(size, s)
        if size == 1:
            out.append((f"stem conv {i}", c))
    return out


def _check_one_pixel_norm(spec: NetworkSpec, one_pixel: list[tuple[str, int]]) -> None:
    """Refuse norms that cannot normalise a 1x1 map: IN (one value per channel of a sample, at
    any batch size) and GN with one channel per group (one value at batch size 1)."""
    if one_pixel and spec.norm.type in ("IN", "IN2d"):
        raise ValueError(f"norm.type={spec.norm.type!r} is not allowed at resolution="
                         f"{spec.resolution}: {one_pixel[0][0]} normalises a 1x1 map, and "
                         "instance norm needs more than one value per channel; expected a "
                         "higher resolution, fewer stride-2 steps or another norm")
    groups = spec.norm.num_groups if spec.norm.type == "GN" else None
    for where, channels in one_pixel:
        if channels == groups:
            raise ValueError(f"norm.num_groups={groups} is not allowed at resolution="
                             f"{spec.resolution}: {where} normalises {channels} channels on a "
                             "1x1 map, one value per group at batch size 1; expected fewer "
                             "groups, a higher resolution or fewer stride-2 steps")
