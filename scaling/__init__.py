"""scaling: one IR for CNN families: exact builders, analytic complexity, compound scaling, search."""

from scaling.ir import HeadSpec, NetworkSpec, NormSpec, SESpec, StageSpec, StemSpec, load_spec

__all__ = ["HeadSpec", "NetworkSpec", "NormSpec", "SESpec", "StageSpec", "StemSpec", "load_spec"]
__version__ = "0.1.0"
