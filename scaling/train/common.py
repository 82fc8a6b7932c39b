"""The pieces of :mod:`scaling.train.trainer` that do not loop: the :class:`TrainResult`,
seeding, device and AMP resolution, parameter groups, the learning-rate
schedule, evaluation and the Optuna pruning callback.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling.data import BatchTransform, ImageData, TensorSplit, make_loader
from scaling.train.config import AMP_MODES, BASE_LR, BASE_WD, OPTIMIZERS, TrainConfig

__all__ = ["BASE_LR", "BASE_WD", "OPTIMIZERS", "TrainConfig", "TrainResult", "amp_dtype",
           "evaluate", "pruning_callback", "resolve_device"]


@dataclass
class TrainResult:
    """What a run did. Accuracies are top-1 fractions in [0, 1]; ``None`` where not evaluated."""

    status: str
    history: list[dict[str, Any]]
    best_val_top1: float | None
    final_val_top1: float | None
    images_per_s: float
    train_time: float
    wall_time: float
    samples: int
    steps: int
    device: str
    amp: str | None
    channels_last: bool
    config: dict[str, Any]
    message: str = ""
    test_top1: float | None = None
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def train_loss(self) -> list[float]:
        return [h["train_loss"] for h in self.history]

    @property
    def val_top1(self) -> list[float | None]:
        return [h["val_top1"] for h in self.history]

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "model"}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not allowed; expected 'auto', 'cpu', 'cuda' "
                         "or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} is not available: torch has no CUDA here")
    return dev


def amp_dtype(amp: Any, dev: torch.device) -> torch.dtype | None:
    """'auto': bf16 (fp16 where bf16 is unsupported) on CUDA, float32 elsewhere; True: also
    bf16 on CPU; 'bf16' / 'fp16' force a type; False/None/'off': float32."""
    if amp is False or amp is None or amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp not in ("auto", True):
        raise ValueError(f"amp={amp!r} is not allowed; expected one of {AMP_MODES}")
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp is True else None


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on conv/linear weights only; none on 1-d params (norm affine, biases)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def lr_at(progress: float, base_lr: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` fraction, then cosine decay to 0."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return base_lr * progress / warmup
    return 0.5 * base_lr * (1 + math.cos(math.pi * (progress - warmup) / max(1e-12, 1 - warmup)))


def evaluate(model: nn.Module, data: ImageData | torch.Tensor, y: torch.Tensor | None = None, *,
             split: str = "test", batch_size: int = 256, progress: bool | None = False,
             one_shape: bool = False) -> float:
    """Top-1 accuracy in eval mode under ``torch.inference_mode``, on the model's device (AMP as
    ``amp='auto'`` on CUDA). ``one_shape``: the last, shorter batch is padded to ``batch_size``
    (its padding dropped), so a net trained at ``batch_size`` meets no new shape (on CUDA each new
    shape costs a cuDNN plan per layer, ``TrainConfig.one_shape``).

    Either ``evaluate(model, data, split='test'|'val')`` with an :class:`ImageData` (normalised
    like training), or ``evaluate(model, x, y)`` with an already-normalised float batch tensor.
    ``progress``: a tqdm bar over the batches (None: only when stderr is a terminal).
    """
    dev = next(model.parameters()).device
    if isinstance(data, ImageData):
        if split not in ("train", "val", "test") or getattr(data, split) is None:
            raise ValueError(f"split={split!r} is not available; expected 'train', 'val' or "
                             "'test' with data present")
        loader = make_loader(getattr(data, split), batch_size)
        tf = data.transform(train=False)
    elif isinstance(data, torch.Tensor) and isinstance(y, torch.Tensor):
        loader = make_loader(TensorSplit(data, y), batch_size)
        tf = None
    else:
        raise TypeError("evaluate expects (model, ImageData) or (model, x tensor, y tensor)")
    bar = progress_bar(progress, len(loader), unit="batch", desc=f"{split} top-1")
    try:
        return evaluate_loader(model, loader, tf, dev, amp_dtype("auto", dev), has_conv(model),
                               bar, pad_to=batch_size if one_shape else None)[0]
    finally:
        if bar is not None:
            bar.close()


def progress_bar(progress: bool | None, total: int | None, **kwargs: Any) -> Any:
    """A tqdm bar, or None when ``progress`` is False (None: only when stderr is a terminal)."""
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, leave=False, dynamic_ncols=True, **kwargs)


def precise_bn(model: nn.Module, loader: Any, n: int, tf: BatchTransform, dev: torch.device,
               amp_dtype: torch.dtype | None, cl: bool, keep_rng: bool = False) -> int:
    """:func:`recalibrate_bn` over the first ``n`` un-augmented batches of ``loader``.
    ``keep_rng``: the global RNG is left as it was found (a look inside an epoch: its forward
    passes run dropout and drop path in train mode, and one look an epoch had no such draws)."""
    def batches():
        for i, (x, _) in enumerate(loader):
            if i == n:
                return
            x = tf(x.to(dev, non_blocking=True))
            yield x.contiguous(memory_format=torch.channels_last) if cl else x

    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, enabled=keep_rng), autocast(dev, amp_dtype):
        return recalibrate_bn(model, batches())


def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Precise BN (Wu & Johnson 2021; Radosavovic et al. 2020): replace the BatchNorm running
    statistics by their plain average over ``batches`` (forward passes in train mode, no grad).

    After a short, high-learning-rate schedule the exponential running averages lag behind the
    weights so far that eval-mode accuracy can sit near chance while train-mode accuracy is 70%
    (MobileNetV2 x0.5, 31 steps on Fashion-MNIST); a few batches fix it. Norms kept in eval mode
    (frozen stages, norm_eval) are left alone. Returns the number of batches used.
    """
    was_training = model.training
    model.train()
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
           and m.training]
    if not bns:
        model.train(was_training)
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    n = 0
    with torch.no_grad():
        for x in batches:
            model(x)
            n += 1
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    model.train(was_training)
    return n


def pad_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """``x`` grown to ``size`` rows by repeating its rows (a short last batch keeps the shape
    the net already ran; in eval mode rows do not interact, so the real rows' outputs are
    unchanged)."""
    n = x.shape[0]
    if n >= size:
        return x
    return x[torch.arange(size, device=x.device) % n]


def evaluate_loader(model: nn.Module, loader, tf: BatchTransform | None, dev: torch.device,
                    amp_dtype: torch.dtype | None, cl: bool, bar: Any = None,
                    pad_to: int | None = None) -> tuple[float, float]:
    """(top-1, mean cross-entropy) over ``loader`` in eval mode; ``bar`` is updated per batch.
    The sums stay on the device (no host synchronisation per batch) and are read once.
    ``pad_to``: a shorter batch is padded to this size (:func:`pad_batch`) and the padding's
    outputs dropped, so every forward pass has one shape."""
    was_training = model.training
    model.eval()
    total = 0
    correct = torch.zeros((), dtype=torch.long, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            x = tf(x) if tf is not None else x.float()
            n = x.shape[0]
            if pad_to is not None:
                x = pad_batch(x, pad_to)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp_dtype):
                out = model(x)[:n]
            loss_sum += F.cross_entropy(out.float(), y, reduction="sum").double()
            correct += (out.argmax(1) == y).sum()
            total += int(y.numel())  # a shape: no device read
            if bar is not None:
                bar.update(1)
    model.train(was_training)
    if not total:
        return float("nan"), 0.0
    return int(correct) / total, float(loss_sum) / total  # the one device read


#: ``benchmark='auto'`` autotunes cuDNN for runs of at least this many steps or seconds (about
#: 10 epochs of 50,000 images at batch 256): the autotuner times every algorithm of every new
#: conv shape (forward, both backward passes), seconds per architecture, repaid only by the
#: milliseconds a tuned step saves over thousands of steps. A search trial (a few hundred
#: steps of a new net) does not repay it; ``python -m scaling.bench gpu`` measures both.
AUTOTUNE_STEPS = 2000
AUTOTUNE_SECONDS = 120.0


def autotune(benchmark: bool | str, total_steps: int | None, seconds: float | None) -> bool:
    """Whether cuDNN autotunes (``torch.backends.cudnn.benchmark``) for a run of
    ``total_steps`` steps and/or ``seconds``: ``benchmark`` True/False, or 'auto' (see
    :data:`AUTOTUNE_STEPS`)."""
    if benchmark != "auto":
        return bool(benchmark)
    return ((total_steps is not None and total_steps >= AUTOTUNE_STEPS)
            or (total_steps is None and seconds is not None and seconds >= AUTOTUNE_SECONDS))


def uses_one_shape(setting: bool | str, dev: torch.device) -> bool:
    """Whether a run meets its net at one batch shape (``TrainConfig.one_shape``): True/False,
    or 'auto' = on CUDA, where every new shape costs a cuDNN plan per layer."""
    return dev.type == "cuda" if setting == "auto" else bool(setting)


def autocast(dev: torch.device, dtype: torch.dtype | None):
    return torch.autocast(dev.type, dtype=dtype) if dtype is not None else nullcontext()


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def is_trial_pruned(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna's TrialPruned; optuna is looked up, never imported (a raised
    TrialPruned means it is already loaded)."""
    optuna = sys.modules.get("optuna")
    return optuna is not None and isinstance(exc, optuna.TrialPruned)


def pruning_callback(trial: Any, metric: str = "val_top1") -> Callable[[int, dict], None]:
    """A callback reporting ``metric`` to an Optuna trial and raising TrialPruned when told."""

    def callback(epoch: int, metrics: dict) -> None:
        if metrics.get(metric) is None:
            return
        trial.report(metrics[metric], epoch)
        if trial.should_prune():
            import optuna

            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {metric}={metrics[metric]:.4f}")

    return callback
