"""The grid search's trained evaluator (``python -m scaling.compound grid --evaluate proxy``):
each (alpha, beta, gamma) candidate scaled to phi is trained briefly and scored by its best
validation top-1. Registered by location in :data:`scaling.compound.grid.EVALUATORS`, so the
torch-free compound layer never imports it."""

from __future__ import annotations

import math
from typing import Any

from scaling.cost import complexity
from scaling.data import load_dataset
from scaling.ir import NetworkSpec
from scaling.train.trainer import train


def evaluate_proxy(base: NetworkSpec, scaled: NetworkSpec, ctx: dict[str, Any]) -> dict[str, Any]:
    """Short proxy training (scaling.train.trainer); score = best validation top-1."""
    cache = ctx.setdefault("_data", {})
    res = scaled.resolution
    if res not in cache:
        cache[res] = load_dataset(ctx["dataset"], subset=ctx["subset"], resolution=res,
                                  val_size=ctx.get("val_size", 5000))
    data = cache[res]
    spec = scaled.replace(in_channels=data.in_channels, num_classes=data.num_classes)
    result = train(spec, data, epochs=ctx["epochs"], seed=ctx["seed"], device=ctx["device"])
    c = complexity(spec)
    return {"params": c.params, "macs": c.macs, "val_top1": result.best_val_top1,
            "train_time": result.train_time, "status": result.status,
            "score": result.best_val_top1 if result.best_val_top1 is not None else -math.inf}
