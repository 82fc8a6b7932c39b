"""The torch-free core: specs, their validation, block records, the shape walk, rounding, codec.

Nothing in :mod:`scaling.ir` imports torch or any other part of the package.
"""

from scaling.ir.blocks import BlockType
from scaling.ir.codec import decode_stages, encode_stages
from scaling.ir.geometry import BlockGeometry
from scaling.ir.registry import BLOCK_TYPES
from scaling.ir.rounding import make_divisible, round_filters, round_repeats, round_resolution
from scaling.ir.spec import (
    HeadSpec,
    NetworkSpec,
    NormSpec,
    SESpec,
    StageSpec,
    StemSpec,
    iter_blocks,
    stage_shapes,
)
from scaling.ir.spec_file import (
    is_checkpoint_path,
    is_spec_path,
    load_spec,
    parse_spec_path,
    spec_from_document,
)

__all__ = ["BLOCK_TYPES", "BlockGeometry", "BlockType", "HeadSpec", "NetworkSpec", "NormSpec",
           "SESpec", "StageSpec", "StemSpec", "decode_stages", "encode_stages",
           "is_checkpoint_path", "is_spec_path", "iter_blocks", "load_spec", "make_divisible",
           "parse_spec_path", "round_filters", "round_repeats", "round_resolution",
           "spec_from_document", "stage_shapes"]
