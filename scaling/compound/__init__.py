"""Compound scaling (Tan & Le 2019): :func:`scale`, :func:`compound`, the official EfficientNet
coefficients (:data:`EFFICIENTNET`), the grid search of (alpha, beta, gamma) and the CLI
``python -m scaling.compound``. Torch-free.

``scaling.compound`` is this module; calling it, ``scaling.compound(spec, phi)``, is
:func:`compound` (kept so the top-level API reads as before).
"""

import sys
import types

from scaling.compound.rule import (
    ALPHA,
    BETA,
    EFFICIENTNET,
    GAMMA,
    Coefficients,
    coefficients,
    compound,
    ideal_ratio,
    official,
    scale,
)

__all__ = ["ALPHA", "BETA", "EFFICIENTNET", "GAMMA", "Coefficients", "coefficients", "compound",
           "ideal_ratio", "official", "scale"]


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`compound`."""

    def __call__(self, *args, **kwargs):
        return compound(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
