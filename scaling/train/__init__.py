"""The proxy trainer (:func:`train`), its config and result, evaluation, precise BN, the Optuna
pruning callback, and the CLI ``python -m scaling.train``."""

from scaling.train.common import (
    TrainConfig,
    TrainResult,
    evaluate,
    pruning_callback,
    resolve_device,
)
from scaling.train.trainer import train

__all__ = ["TrainConfig", "TrainResult", "evaluate", "pruning_callback", "resolve_device", "train"]
