"""The model families, as data: every module holds tables of stage specs (RegNet: a generator) and
a ``MODELS`` dict ``name -> (factory, kwargs)``; ``factory(**kwargs)`` returns the
:class:`~scaling.ir.spec.NetworkSpec`. Nothing here builds modules (see :mod:`scaling.nn.build`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scaling.ir import NetworkSpec
from scaling.zoo.families import efficientnet, mnasnet, mobilenet, regnet, resnet, shufflenet

Factory = Callable[..., NetworkSpec]

MODULES = (resnet, shufflenet, mobilenet, mnasnet, efficientnet, regnet)


def all_models() -> dict[str, tuple[Factory, dict[str, Any]]]:
    """Every named model of every family: ``name -> (factory, kwargs)``."""
    out: dict[str, tuple[Factory, dict[str, Any]]] = {}
    for module in MODULES:
        for name, entry in module.MODELS.items():
            if name in out:
                raise RuntimeError(f"model name {name!r} is defined twice")
            out[name] = entry
    return out
