"""The torch-free core: spec dataclasses, their validation, the shape walk, rounding, block strings.

Nothing in :mod:`scaling.ir` imports torch or any other part of the package.
"""

from scaling.ir.codec import decode_stages, encode_stages
from scaling.ir.geometry import BlockGeometry, iter_blocks, stage_shapes
from scaling.ir.rounding import make_divisible, round_filters, round_repeats, round_resolution
from scaling.ir.spec import HeadSpec, NetworkSpec, NormSpec, SESpec, StageSpec, StemSpec, load_spec

__all__ = ["BlockGeometry", "HeadSpec", "NetworkSpec", "NormSpec", "SESpec", "StageSpec",
           "StemSpec", "decode_stages", "encode_stages", "iter_blocks", "load_spec",
           "make_divisible", "round_filters", "round_repeats", "round_resolution", "stage_shapes"]
