"""Torch-free geometry of one block and of one stage: the shapes that builder and cost both read.

:class:`BlockGeometry` is filled by the block's record
(:meth:`scaling.ir.blocks.BlockType.geometry`) and the network walk
(:func:`scaling.ir.spec.iter_blocks`), so a channel rule (mid channels, SE
squeeze, groups) lives in exactly one place. This module imports nothing of the package.
"""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class StageShape:
    """Input and output (C, H, W) of stage ``stage``."""

    stage: int
    input: tuple[int, int, int]
    output: tuple[int, int, int]
