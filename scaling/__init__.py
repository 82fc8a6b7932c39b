"""scaling: one IR for CNN families; exact builders, analytic complexity, scaling, search.

``import scaling`` imports no torch: the spec types, :func:`complexity`, :func:`scale` and the
:mod:`scaling.compound` module (callable as ``scaling.compound(spec, phi)``) are torch-free; the
model API (``list_models``, ``get_spec``, ``create_model``, ``build_model``, ``deploy``) loads on
first use.
"""

from scaling import compound
from scaling.compound import scale
from scaling.cost import complexity
from scaling.ir import HeadSpec, NetworkSpec, NormSpec, SESpec, StageSpec, StemSpec, load_spec

__all__ = ["HeadSpec", "NetworkSpec", "NormSpec", "SESpec", "StageSpec", "StemSpec", "load_spec",
           "complexity", "compound", "scale", "list_models", "get_spec", "create_model",
           "build_model", "deploy"]
__version__ = "0.1.0"

_LAZY = {
    "list_models": "scaling.zoo",
    "get_spec": "scaling.zoo",
    "create_model": "scaling.zoo",
    "build_model": "scaling.nn",
    "deploy": "scaling.nn",
}


def __getattr__(name: str):
    """Lazy access to the torch-dependent API, so that ``import scaling`` stays torch-free."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scaling' has no attribute {name!r}")
