"""Short-schedule proxy trainer for a spec or a module, on CPU or CUDA: :func:`train`.

Recipe: SGD with Nesterov momentum or AdamW (Loshchilov & Hutter 2019); per-step linear warm-up
then cosine decay to 0 (Loshchilov & Hutter 2017) over the budget; label smoothing 0.1 (Szegedy et
al. 2016); no weight decay on 1-d parameters (norm scales, biases). The default learning rate
follows the linear scaling rule (Goyal et al. 2017): 0.1 (SGD) or 2e-3 (AdamW) per 256 images.
Before every evaluation the BatchNorm statistics are recomputed over a few training batches
("precise BN", Wu & Johnson 2021): after a short high-learning-rate schedule the running averages
lag the weights so far that eval-mode accuracy can sit near chance; ``precise_bn=0`` turns it off.

Budgets: ``epochs`` (may be fractional), ``samples`` (rounded up to whole batches) and/or
``seconds`` of training time (evaluation excluded); the first one reached ends the run. With a
time budget the schedule's progress is the elapsed fraction, so the learning rate still anneals to
zero at the deadline (and the run is, by nature, not reproducible). Same seed, data, budget in
epochs/samples and thread count on the same CPU give identical metrics and weights.

Evaluation points: the callback (and validation, ``eval_every``) run at the end of every epoch,
or ``evals_per_epoch`` times an epoch at evenly spaced steps of the same schedule: partial looks
at the full run, as the rungs of ASHA (Li et al. 2020) and Hyperband (Li et al. 2018) need
(``eval_points``: which of them validate); the weights at a step do not depend on how often
the run was looked at, dropout and drop path included (a look's precise-BN passes leave the
global RNG as they found it).

Status: 'ok'; 'diverged' when the training loss becomes NaN/inf (checked every step on CPU;
on CUDA every 100 steps and at every evaluation point, so that the host never waits for the
device per step; no exception); 'pruned' when ``callback(report, metrics)``, called at every
evaluation point (``report`` counts them from 1: the epoch with one point an epoch), returns
``False``. An exception the callback raises propagates (Optuna expects
``optuna.TrialPruned`` to leave the objective: see :func:`pruning_callback`), carrying the partial
:class:`TrainResult` as ``exc.result`` (status 'pruned' for TrialPruned).

Devices: on CUDA, AMP (bf16 where supported, else fp16 with a GradScaler) and in-memory datasets
moved to the GPU once (uint8; augmentation and normalisation run there). No host synchronisation
per step: the loss sum and the correct count accumulate on the device and are read once per
evaluation point; evaluation and precise BN likewise. cuDNN autotuning (``benchmark``) times
every algorithm for every new conv shape, a per-architecture warm-up that a short run cannot
repay (the first epoch of a new net took 27.5 s against 5 s for each later one on an H100): with
``benchmark='auto'`` it is on only for runs of at least :data:`AUTOTUNE_STEPS` steps (or
:data:`AUTOTUNE_SECONDS` s), so search trials skip it and the study's long runs get it. A net
meets one batch shape (``one_shape``, on CUDA by default): cuDNN builds an execution plan for
every new conv configuration, batch size included, 2-5 ms of host time per layer and direction
(an H100 profile of one search trial, results/bench/profile-h100/), so validation runs at the
training batch size with the short last batch padded, and precise BN and training drop their
short last batch. ``compile=True`` runs the model through ``torch.compile`` (off by default: its
compile time per architecture is repaid only by long runs; ``python -m scaling.bench gpu
--compile`` measures it).

Memory layout: channels_last whenever the model has a Conv2d, on CUDA *and* CPU: on this 2-core
CPU the plain loop trained MobileNetV2 x0.5, ShuffleNetV2 x0.5 and a narrow ResNet-18 at 28x28
1.2-1.7x faster in channels_last than in NCHW (``python -m scaling.bench train`` prints both per
model); ``channels_last=False`` opts out.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from scaling.data import ImageData, TensorSplit, make_loader
from scaling.train.common import (
    BASE_WD,
    TrainConfig,
    TrainResult,
    amp_dtype,
    autocast,
    autotune,
    evaluate,
    evaluate_loader,
    has_conv,
    is_trial_pruned,
    lr_at,
    param_groups,
    precise_bn,
    progress_bar,
    pruning_callback,
    resolve_device,
    seed_everything,
    uses_one_shape,
)

__all__ = ["TrainConfig", "TrainResult", "evaluate", "pruning_callback", "train"]


def _as_model(spec_or_model: Any, data: ImageData, zero_init_last: bool = False) -> nn.Module:
    if isinstance(spec_or_model, nn.Module):
        if zero_init_last:
            raise ValueError("zero_init_last=True applies to a net that train builds from a "
                             "NetworkSpec; for a given nn.Module, call scaling.nn.init_weights("
                             "model, zero_init_last=True) before train")
        return spec_or_model
    from scaling.ir import NetworkSpec

    if not isinstance(spec_or_model, NetworkSpec):
        raise TypeError(f"spec_or_model must be a NetworkSpec or an nn.Module, "
                        f"got {type(spec_or_model).__name__}")
    spec = spec_or_model
    if spec.in_channels != data.in_channels:
        raise ValueError(f"spec.in_channels={spec.in_channels} but {data.name} has "
                         f"{data.in_channels} channel(s); adapt the spec or load the data with "
                         f"in_channels={spec.in_channels}")
    if spec.resolution != data.resolution:
        raise ValueError(f"spec.resolution={spec.resolution} but {data.name} is loaded at "
                         f"{data.resolution}; load it with resolution={spec.resolution}")
    from scaling.nn.build import build_model

    return build_model(spec, num_classes=data.num_classes, zero_init_last=zero_init_last)


def train(spec_or_model: Any, data: ImageData, config: TrainConfig | None = None, *,
          callback: Callable[[int, dict], Any] | None = None, progress: bool | None = None,
          before_train: Callable[[nn.Module], Any] | None = None,
          notice: Callable[[str], Any] | None = None, **options: Any) -> TrainResult:
    """Train ``spec_or_model`` (a NetworkSpec, built after seeding, or an nn.Module) on ``data``.

    Args:
        spec_or_model: a :class:`~scaling.ir.NetworkSpec` or an ``nn.Module``.
        data: an :class:`~scaling.data.ImageData` (:func:`scaling.data.load_dataset`).
        config: a :class:`TrainConfig`; ``options`` are its fields (``epochs=2, lr=0.05``, see
            its help texts for meanings and defaults) and override it.
        callback: ``callback(report, metrics)`` at every evaluation point (``report`` = 1, 2,
            ...: the epoch with ``evals_per_epoch=1``), with ``epoch, train_loss, val_top1,
            val_loss`` (None when not evaluated), ``images_per_s, train_time, samples, lr,
            step, epochs`` (steps / steps per epoch), ``elapsed``; the training figures cover
            the steps since the last point; returning ``False`` stops the run ('pruned').
        progress: a tqdm bar; None: only when stderr is a terminal.
        before_train: ``before_train(model)`` with the freshly built model on its device (e.g.
            the zero-cost proxies of a search trial, on the net it trains); the global RNG state
            is restored after it, so it changes nothing in the run.
        notice: ``notice(line)`` when the budget is spent and the final validation starts
            (it is not part of the budget and takes long on a big validation split; a bar
            shows nothing when stderr is not a terminal).

    Returns a :class:`TrainResult` with status 'ok', 'diverged' (a NaN/inf loss stopped the run)
    or 'pruned'; see the module docstring for exceptions.

    Example:
        >>> result = train(spec, data, epochs=1, device="cpu")  # doctest: +SKIP
    """
    base = dataclasses.asdict(config) if config is not None else {}
    if "device" in options:
        options["device"] = str(options["device"])
    cfg = TrainConfig(**{**base, **options})
    if not isinstance(data, ImageData):
        raise TypeError(f"data must be an ImageData (scaling.data.datasets.load_dataset), "
                        f"got {type(data).__name__}")
    dev = resolve_device(cfg.device)
    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        seed_everything(cfg.seed)
        model = _as_model(spec_or_model, data, cfg.zero_init_last).to(dev)
        if before_train is not None:
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
                before_train(model)
        run = _Run(model, data, cfg, dev)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = autotune(cfg.benchmark, run.total_steps, cfg.seconds)
        return run.run(callback, progress, notice)
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = benchmark


def _resident(split: Any, dev: torch.device) -> Any:
    """An in-memory split on ``dev`` (moved once, still uint8); other datasets as they are."""
    return split.to(dev) if isinstance(split, TensorSplit) else split


class _Run:
    """The state of one training run (see :func:`train`)."""

    def __init__(self, model: nn.Module, data: ImageData, cfg: TrainConfig,
                 dev: torch.device) -> None:
        self.data, self.cfg, self.dev = data, cfg, dev
        self.amp_dtype = amp_dtype(cfg.amp, dev)
        self.cl = has_conv(model) if cfg.channels_last == "auto" else bool(cfg.channels_last)
        self.model = model.to(memory_format=torch.channels_last) if self.cl else model
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        wd = cfg.weight_decay if cfg.weight_decay is not None else BASE_WD[cfg.optimizer]
        groups = param_groups(model, wd)
        self.base_lr = cfg.base_lr
        if cfg.optimizer == "sgd":
            self.opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=self.base_lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
        else:
            self.opt = torch.optim.AdamW(groups, lr=self.base_lr)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        train_split, val_split = _resident(data.train, dev), _resident(data.val, dev)
        self.loader = make_loader(train_split, cfg.batch_size, shuffle=True, drop_last=True,
                                  seed=cfg.seed, num_workers=cfg.num_workers, device=dev)
        self.calib_loader = make_loader(train_split, cfg.batch_size, shuffle=True, drop_last=True,
                                        seed=cfg.seed + 2, num_workers=cfg.num_workers,
                                        device=dev)
        # looks inside an epoch draw their own order: the main one's fall as with K=1
        self.look_loader = make_loader(train_split, cfg.batch_size, shuffle=True, drop_last=True,
                                       seed=cfg.seed + 3, num_workers=cfg.num_workers, device=dev)
        self.calibrated_at = -1
        # one batch shape: training and precise BN already drop the short last batch
        self.one_shape = uses_one_shape(cfg.one_shape, dev)
        eval_batch = cfg.batch_size if self.one_shape else cfg.eval_batch_size
        self.val_loader = (make_loader(val_split, eval_batch,
                                       num_workers=cfg.num_workers, device=dev)
                           if val_split is not None and len(val_split) else None)
        self.val_images = len(val_split) if self.val_loader is not None else 0
        self.steps_per_epoch = steps_per_epoch = len(self.loader)
        if steps_per_epoch == 0:
            raise ValueError(f"{data.name}: the training split is empty")
        budgets = []
        if cfg.epochs is not None:
            budgets.append(math.ceil(cfg.epochs * steps_per_epoch - 1e-9))
        if cfg.samples is not None:
            budgets.append(math.ceil(cfg.samples / cfg.batch_size))
        self.total_steps = min(budgets) if budgets else None
        self.seconds = cfg.seconds
        self.tf_train = data.transform(train=cfg.augment)
        self.tf_eval = data.transform(train=False)
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.history: list[dict[str, Any]] = []
        self.status, self.message = "ok", ""
        self.step = self.seen = self.epoch = self.point = 0
        self.batches: Any = None  # the current epoch's batch iterator
        self.train_time, self.lr = 0.0, 0.0
        self.best: float | None = None
        self.start = time.perf_counter()

    def _out_of_budget(self, epoch_time: float) -> bool:
        return ((self.total_steps is not None and self.step >= self.total_steps)
                or (self.seconds is not None and self.train_time + epoch_time >= self.seconds))

    def _set_lr(self, epoch_time: float) -> None:
        frac = (self.step + 0.5) / self.total_steps if self.total_steps else 0.0
        if self.seconds is not None:
            frac = max(frac, (self.train_time + epoch_time) / self.seconds)
        self.lr = lr_at(frac, self.base_lr, self.cfg.warmup)
        for g in self.opt.param_groups:
            g["lr"] = self.lr

    def _next_point(self) -> int:
        """The step of the next evaluation point: every ``steps_per_epoch / evals_per_epoch``
        steps (rounded up), at most one per step; the lr schedule does not depend on it."""
        while True:
            self.point += 1
            step = math.ceil(self.point * self.steps_per_epoch / self.cfg.evals_per_epoch - 1e-9)
            if step > self.step:
                return step

    def _segment(self, bar, until: int) -> tuple[bool, float, int, torch.Tensor, torch.Tensor]:
        """Train up to step ``until`` (the next evaluation point), through as many epochs as that
        takes; returns (stop, time, images, loss sum, correct count), the sums as device tensors
        (read once a segment). Stops early at the end of the budget or at a non-finite loss."""
        model, dev, num_classes = self.forward, self.dev, self.data.num_classes
        self.model.train()
        t0, seen = time.perf_counter(), 0
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        check_every = 1 if dev.type == "cpu" else 100
        while self.step < until:
            batch = next(self.batches, None) if self.batches is not None else None
            if batch is None:  # a new epoch: a new order
                self._crossed_epoch_end()
                self.batches, self.epoch = iter(self.loader), self.epoch + 1
                continue
            x, y = batch
            self._set_lr(time.perf_counter() - t0)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            x = self.tf_train(x, self.aug_gen)
            if self.cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, self.amp_dtype):
                out = model(x)
            if self.step == 0 and (out.dim() != 2 or out.shape[1] != num_classes):
                raise ValueError(f"the model outputs shape {tuple(out.shape)}; expected "
                                 f"(N, {num_classes}) logits for {self.data.name}")
            loss = F.cross_entropy(out.float(), y, label_smoothing=self.cfg.label_smoothing)
            self.opt.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
            else:
                loss.backward()
                self.opt.step()
            loss_sum += loss.detach() * y.numel()
            correct += (out.detach().argmax(1) == y).sum()
            self.step += 1
            seen += int(y.numel())
            if bar is not None:
                bar.update(1)
            if self.step % check_every == 0 and not bool(torch.isfinite(loss_sum)):
                break
            if self._out_of_budget(time.perf_counter() - t0):
                return True, self._elapsed(t0), seen, loss_sum, correct
        return False, self._elapsed(t0), seen, loss_sum, correct

    def _elapsed(self, t0: float) -> float:
        if self.dev.type == "cuda":  # kernels run asynchronously: wait before reading the clock
            torch.cuda.synchronize(self.dev)
        return time.perf_counter() - t0

    def _looks_at(self, report: int) -> bool:
        """Whether evaluation point ``report`` validates: one of ``eval_points`` where given
        (a pruner's rungs: the points between decide nothing), else every ``eval_every``-th."""
        if self.cfg.eval_points:
            return report in self.cfg.eval_points
        return report % self.cfg.eval_every == 0

    def _crossed_epoch_end(self) -> None:
        """An epoch end that no look calibrated at gets K=1's main calibration there: its draw
        of the main order and its passes' draws of the global RNG (dropout), as K=1 had."""
        if (self.epoch > 0 and (self.cfg.evals_per_epoch != 1 or self.cfg.eval_points)
                and self.val_loader is not None and self.calibrated_at != self.step):
            self._calibrate(main=True)

    def _calibrate(self, main: bool = True) -> None:
        """Precise BN (:func:`precise_bn`, once per step) from the main order at epoch ends and
        the final point, else from the looks' order (these leave the global RNG alone)."""
        if self.cfg.precise_bn == 0 or self.calibrated_at == self.step:
            return
        precise_bn(self.model, self.calib_loader if main else self.look_loader,
                   self.cfg.precise_bn, self.tf_eval, self.dev, self.amp_dtype, self.cl,
                   keep_rng=not main)
        self.calibrated_at = self.step

    def run(self, callback, progress: bool | None, notice=None) -> TrainResult:
        bar = progress_bar(progress, self.total_steps, unit="step")
        report, stop = 0, False
        try:
            while not stop:
                report += 1
                stop, ep_time, seen, loss_sum, correct = self._segment(bar, self._next_point())
                self.train_time += ep_time
                self.seen += seen
                if not bool(torch.isfinite(loss_sum)):
                    self.status, stop = "diverged", True
                    self.message = f"non-finite training loss by step {self.step}"
                metrics: dict[str, Any] = {
                    "epoch": self.epoch, "train_loss": float(loss_sum) / max(1, seen),
                    "train_top1": int(correct) / max(1, seen),
                    "val_top1": None, "val_loss": None,
                    "images_per_s": seen / ep_time if ep_time > 0 else 0.0,
                    "train_time": self.train_time, "samples": self.seen, "lr": self.lr,
                    "step": self.step, "epochs": self.step / self.steps_per_epoch}
                if (self.status == "ok" and self.val_loader is not None
                        and (stop or self._looks_at(report))):
                    if stop and notice is not None:
                        notice(f"budget spent after {self.train_time:.1f} s of training; "
                               f"evaluating on {self.val_images:,} validation "
                               "images")
                    self._calibrate(stop or self.step % self.steps_per_epoch == 0)
                    acc, vloss = evaluate_loader(
                        self.forward, self.val_loader, self.tf_eval, self.dev, self.amp_dtype,
                        self.cl, pad_to=self.cfg.batch_size if self.one_shape else None)
                    metrics.update(val_top1=acc, val_loss=vloss)
                    self.best = acc if self.best is None else max(self.best, acc)
                metrics["elapsed"] = time.perf_counter() - self.start
                self.history.append(metrics)
                if bar is not None:
                    bar.set_postfix(loss=f"{metrics['train_loss']:.3f}",
                                    val=f"{metrics['val_top1'] or 0:.3f}")
                if callback is not None and self.status == "ok":
                    where = (f"epoch {self.epoch}" if self.cfg.evals_per_epoch == 1
                             else f"evaluation point {report} (step {self.step})")
                    try:
                        keep = callback(report, dict(metrics))
                    except Exception as exc:
                        if is_trial_pruned(exc):
                            self.status = "pruned"
                            self.message = f"pruned after {where}: {exc}"
                        exc.result = self.result()  # type: ignore[attr-defined]
                        raise
                    if keep is False and not stop:
                        self.status, stop = "pruned", True
                        self.message = f"the callback stopped the run after {where}"
            if self.status != "diverged":
                self._calibrate()
        finally:
            if bar is not None:
                bar.close()
        return self.result()

    def result(self) -> TrainResult:
        final = self.history[-1]["val_top1"] if self.history and self.status == "ok" else None
        return TrainResult(
            status=self.status, history=list(self.history), best_val_top1=self.best,
            final_val_top1=final,
            images_per_s=self.seen / self.train_time if self.train_time > 0 else 0.0,
            train_time=self.train_time, wall_time=time.perf_counter() - self.start,
            samples=self.seen, steps=self.step, device=str(self.dev),
            amp=str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else None,
            channels_last=self.cl, config=dataclasses.asdict(self.cfg), message=self.message,
            model=self.model)

