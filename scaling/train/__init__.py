"""The proxy trainer (:func:`train`), its config and result, evaluation, precise BN, the Optuna
pruning callback, and the CLI ``python -m scaling.train``.

:class:`TrainConfig` is torch-free; the rest loads on first use, so that ``--help`` is fast.
"""

from scaling.train.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "evaluate", "pruning_callback", "resolve_device", "train"]

_LAZY = {"TrainResult": "common", "evaluate": "common", "pruning_callback": "common",
         "resolve_device": "common", "train": "trainer"}


def __getattr__(name: str):
    """Load the torch-dependent parts on first access."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"scaling.train.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'scaling.train' has no attribute {name!r}")
