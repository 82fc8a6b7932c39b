"""Stride patterns of a space: ``"stem strides:stage strides"`` strings, one listed per input
resolution or fitted to it (EfficientNet-B0's order of downsampling)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["auto_pattern", "parse_pattern", "patterns_for"]


def parse_pattern(pattern: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``"1:1,2,2"`` -> ((1,), (1, 2, 2)): stem strides, then one stride per stage."""
    try:
        stem, stages = str(pattern).split(":")
        out = (tuple(int(s) for s in stem.split(",")), tuple(int(s) for s in stages.split(",")))
    except ValueError:
        raise ValueError(f"stride pattern {pattern!r} is not allowed; expected "
                         "'stem strides:stage strides', e.g. '1:1,2,2,1'") from None
    if any(s not in (1, 2) for s in out[0] + out[1]):
        raise ValueError(f"stride pattern {pattern!r} is not allowed; strides must be 1 or 2")
    return out


def auto_pattern(resolution: int, num_stages: int, final: int = 7) -> str:
    """A stride pattern for a resolution the space does not list: a stride-2 stem from 64 px,
    then stride-2 stages (EfficientNet-B0's order of preference) while the map is > final."""
    stem = 2 if resolution >= 64 else 1
    size = -(-resolution // stem)
    strides = [1] * num_stages
    order = [i for i in (1, 2, 3, 5, 4, 6, 0) if i < num_stages]
    order += [i for i in range(num_stages) if i not in order]
    for i in order:
        if size <= final:
            break
        strides[i] = 2
        size = -(-size // 2)
    return f"{stem}:" + ",".join(map(str, strides))


def patterns_for(space: Mapping[str, Any], resolution: int) -> list[str]:
    table = {int(k): v for k, v in (space.get("strides") or {}).items()}
    if resolution in table:
        return [str(p) for p in (table[resolution] if isinstance(table[resolution], list)
                                else [table[resolution]])]
    return [auto_pattern(resolution, len(space["stages"]))]
