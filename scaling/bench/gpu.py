"""Benchmark: training and search throughput on one device, ``python -m scaling.bench gpu``.

On one device (``--device``: CUDA when available, else the CPU), one JSON line per measurement
on stdout, every line with ``name, device, model, batch, images, seconds, img_s`` (the steady
rate: the last epoch, or the whole loop for the search) and its own fields:

- ``plain`` per model: :func:`scaling.bench.loops.plain_loop` (data resident on the device, uint8
  -> float normalise per batch, bf16 autocast on CUDA, channels_last, SGD).
- ``trainer`` per model: :func:`scaling.train.train` on the same images and batch (no
  augmentation, no validation: the same work); ``ratio_to_plain``. On CUDA also
  ``trainer_autotune`` (``benchmark=True``: what cuDNN autotuning costs in the first epoch and
  gains after). Interleaved over ``--repeats``. With ``--compile``, last, the first model's
  ``plain`` again and ``trainer_compile`` (``compile=True``: compile time in ``first_epoch_s``).
- ``search_trials``: ``--trials`` trials of the search's train evaluator in one process
  (:func:`scaling.bench.loops.run_trials`): trials/minute, images/s, per-trial fixed seconds
  (wall - images / the trial's steady images/s: build, proxies, warm-up, evaluation).
  On CUDA also ``search_trials_no_cudnn``: the same loop with ``cudnn.enabled = False`` on the
  next samples (does skipping cuDNN's per-shape planning pay for a short trial?).
- ``search_evaluator``: the search's train evaluator against ``train()`` on the same spec (the
  first model), data and recipe: ``seconds`` and ``train_s_median`` are training seconds,
  ``ratio_to_train`` >= 1: the evaluator trains no slower; the ``wall`` fields include what the
  evaluator does besides (the zero-cost proxies a trial records, evaluation).
- ``zero_cost_trials``: ``--zc-trials`` zero-cost trials at one CPU thread: median wall and CPU
  seconds per trial.
- ``concurrent_workers``: ``--workers`` processes (started with 'spawn': CUDA cannot be forked)
  each running ``--worker-trials`` trials on the same device at once: aggregate images/s and
  ``speedup`` over the one-process ``search_trials``.

``--out DIR`` also writes ``DIR/gpu.jsonl`` and its provenance (``gpu.provenance.json``).
Defaults are sized for one H100 in under 5 minutes; ``--tiny`` runs in seconds on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from scaling.bench.data import DATA_CHOICES, bench_data, synthetic_data
from scaling.bench.loops import make_context, median, plain_loop, run_trials, sync, trial_worker
from scaling.cli import Parser, command

PROG = "python -m scaling.bench gpu"
#: the record fields every JSON line has
FIELDS = ("name", "device", "model", "batch", "images", "seconds", "img_s")
TINY = {"models": ["mobilenet_v2_x0_5"], "batch_size": 32, "subset": 128, "epochs": 2,
        "trials": 2, "trial_subset": 128, "val_size": 64, "trial_batch_size": 32,
        "budget": "6M", "zc_trials": 3, "workers": 2, "worker_trials": 1}


def configure(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark."""
    from scaling.bench.train import BENCH_MODELS

    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda:N")
    p.add_argument("--data", default="auto", choices=DATA_CHOICES,
                   help="Fashion-MNIST, random images, or auto (Fashion-MNIST when on disk)")
    p.add_argument("--models", nargs="+", default=list(BENCH_MODELS),
                   help="bench names or zoo names (28x28)")
    p.add_argument("--batch-size", type=int, default=256, help="batch of plain and trainer")
    p.add_argument("--subset", type=int, default=20000, help="training images, plain/trainer")
    p.add_argument("--epochs", type=int, default=2, help="epochs of plain and trainer")
    p.add_argument("--repeats", type=int, default=1, help="interleaved repeats")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (model 1)")
    p.add_argument("--budget", default="6M", help="MAC budget of the search's samples")
    p.add_argument("--trials", type=int, default=6, help="trials of the search loop")
    p.add_argument("--trial-epochs", type=float, default=1.0, help="epochs per trial")
    p.add_argument("--trial-subset", type=int, default=5000, help="training images per trial")
    p.add_argument("--val-size", type=int, default=1000, help="validation images per trial")
    p.add_argument("--trial-batch-size", type=int, default=256, help="batch of the trials")
    p.add_argument("--zc-trials", type=int, default=10, help="zero-cost trials (0: none)")
    p.add_argument("--workers", type=int, default=4, help="concurrent worker processes (0: none)")
    p.add_argument("--worker-trials", type=int, default=2, help="trials per worker")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: "
                   "torch's)")
    p.add_argument("--seed", type=int, default=0, help="seed of data order, init, sampler")
    p.add_argument("--tiny", action="store_true", help=f"tiny sizes (seconds on a CPU): {TINY}")
    p.add_argument("--out", default=None, help="folder for gpu.jsonl and its provenance "
                   "(default: none, stdout only)")


@command(PROG, errors=(ValueError, TypeError))
def main(argv: list[str]) -> int:
    """Training and search throughput on one device, one JSON line per measurement."""
    p = Parser(PROG, description=__doc__)
    configure(p)
    return run(p.parse_args(argv))


class _Bench:
    """The measurements of one run; :meth:`emit` prints (and keeps) one record."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        from scaling.search.objectives import parse_budget
        from scaling.train.common import resolve_device

        if args.tiny:
            for key, value in TINY.items():
                setattr(args, key, value)
        for name in ("batch_size", "subset", "epochs", "repeats", "trials", "trial_subset",
                     "val_size", "trial_batch_size", "worker_trials"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}={getattr(args, name)} is not "
                                 "allowed; expected >= 1")
        if args.workers < 0 or args.zc_trials < 0:
            raise ValueError("--workers and --zc-trials must be >= 0")
        self.args, self.dev = args, resolve_device(args.device)
        self.budget = parse_budget(args.budget)
        if args.threads:
            torch.set_num_threads(args.threads)
        self.records: list[dict[str, Any]] = []
        self.data, self.source = bench_data(args.data, args.subset, 0)
        self.synthetic = self.data.name != "fashion-mnist"
        from scaling.study.provenance import Provenance

        self.provenance = Provenance(seeds=[args.seed], device=str(self.dev))

    def emit(self, name: str, model: str, batch: int, images: int, seconds: float,
             **extra: Any) -> dict[str, Any]:
        rec = {"name": name, "device": str(self.dev), "model": model, "batch": batch,
               "images": images, "seconds": round(seconds, 4),
               "img_s": round(images / seconds, 1) if seconds > 0 else 0.0,
               **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in extra.items()}}
        self.records.append(rec)
        print(json.dumps(rec), flush=True)
        if self.args.out:  # after every record: a run cut short keeps what it measured
            self.write()
        return rec

    def search_config(self, evaluator: str, threads: int | None) -> dict[str, Any]:
        a = self.args
        return {"budget": self.budget, "evaluator": evaluator, "epochs": a.trial_epochs,
                "subset": a.trial_subset, "val_size": a.val_size,
                "batch_size": a.trial_batch_size, "device": str(self.dev), "seed": a.seed,
                "pruner": "none", "threads": threads, "out_dir": "unused", "quiet": True}

    def models(self, compile_only: bool = False) -> None:
        """plain / trainer (/ trainer_autotune) per model, interleaved; ``compile_only``: the
        first model's plain loop and ``trainer_compile`` (run last: compiling is slow)."""
        import torch

        from scaling.bench.train import get_specs
        from scaling.nn.build import build_model
        from scaling.train import train

        a, dev, data, source = self.args, self.dev, self.data, self.source
        variants = [("trainer", {})]
        if dev.type == "cuda":
            variants.append(("trainer_autotune", {"benchmark": True}))
        specs = get_specs(a.models[:1] if compile_only else a.models)
        if compile_only:
            variants = [("trainer_compile", {"compile": True})]
        for _ in range(1 if compile_only else a.repeats):
            for name, spec in specs.items():
                torch.manual_seed(a.seed)
                epochs = plain_loop(build_model(spec, num_classes=data.num_classes), data, dev,
                                    a.batch_size, a.epochs, a.seed)
                images, seconds = epochs[-1]
                plain = self.emit("plain", name, a.batch_size, images, seconds, data=source,
                                  first_epoch_s=epochs[0][1],
                                  total_s=sum(s for _, s in epochs))
                for label, options in variants:
                    res = train(spec, data, epochs=a.epochs, batch_size=a.batch_size,
                                device=str(dev), augment=False, lr=0.05, seed=a.seed,
                                progress=False, **options)
                    h = [{"train_time": 0.0, "samples": 0}, *res.history]
                    images = h[-1]["samples"] - h[-2]["samples"]
                    seconds = h[-1]["train_time"] - h[-2]["train_time"]
                    ratio = (images / seconds / plain["img_s"]
                             if seconds > 0 and plain["img_s"] > 0 else None)
                    self.emit(label, name, a.batch_size, images, seconds, data=source,
                              status=res.status, ratio_to_plain=ratio,
                              first_epoch_s=res.history[0]["train_time"],
                              total_s=res.train_time, wall_s=res.wall_time, **options)

    def _data_for(self, rank: int) -> Any:
        a = self.args
        return synthetic_data(a.trial_subset, a.val_size, seed=rank) if self.synthetic else None

    def search(self, name: str = "search_trials", cudnn: bool = True) -> dict[str, Any]:
        """The search's trial loop; ``cudnn=False`` (CUDA): the same with cuDNN off (PyTorch's
        own conv kernels plan nothing per shape), on the next ``--trials`` samples (new nets,
        not the ones cuDNN has already planned)."""
        import torch

        a = self.args
        conf = self.search_config("train", a.threads)
        if not cudnn:
            conf["seed"] = a.seed + 1
        ctx = make_context(conf, 0, self._data_for(0))
        enabled = torch.backends.cudnn.enabled
        torch.backends.cudnn.enabled = cudnn
        try:
            res = run_trials(ctx, a.trials)
        finally:
            torch.backends.cudnn.enabled = enabled
        return self.emit(name, "search-space", a.trial_batch_size, res["images"],
                         res["seconds"], trials=res["trials"], over_budget=res["over_budget"],
                         cudnn=cudnn, seed=conf["seed"],
                         trials_per_min=60 * res["trials"] / max(res["seconds"], 1e-9),
                         fixed_s_median=median(res["fixed_s"]),
                         fixed_s_max=max(res["fixed_s"], default=None),
                         trial_s_median=median(res["trial_s"]), budget=self.budget)

    def evaluator(self) -> None:
        """The search's train evaluator (``train_spec`` with a trial's proxies before training)
        against :func:`scaling.train.train` on the same spec, data and recipe: ``--repeats``
        (at least 2) pairs, the order alternating; wall seconds per run, medians."""
        import time

        from scaling.bench.train import get_specs
        from scaling.search.evaluators import compute_trial_proxies, train_spec
        from scaling.train import train

        a = self.args
        ctx = make_context(self.search_config("train", a.threads), 0, self._data_for(0))
        cfg = ctx.cfg
        name, spec = next(iter(get_specs(a.models[:1]).items()))

        def evaluator() -> Any:
            return train_spec(ctx, spec, before_train=lambda model: compute_trial_proxies(
                ctx, spec, model, cfg.batch_size))

        def plain_train() -> Any:
            return train(spec, ctx.data(), epochs=cfg.epochs, batch_size=cfg.batch_size,
                         lr=cfg.lr, seed=cfg.seed, device=cfg.device, threads=cfg.threads,
                         augment=cfg.augment, progress=False)

        walls: dict[str, list[float]] = {"evaluator": [], "train": []}
        training: dict[str, list[float]] = {"evaluator": [], "train": []}
        samples = 0
        for i in range(max(2, a.repeats)):
            order = [("evaluator", evaluator), ("train", plain_train)]
            for label, fn in order if i % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                res = fn()
                sync(self.dev)
                walls[label].append(time.perf_counter() - t0)
                training[label].append(res.train_time)
                samples = res.samples
        ev, tr = median(training["evaluator"]), median(training["train"])
        ev_wall, tr_wall = median(walls["evaluator"]), median(walls["train"])
        self.emit("search_evaluator", name, cfg.batch_size, samples, ev, train_s_median=tr,
                  ratio_to_train=tr / ev if ev > 0 else None, wall_s_median=ev_wall,
                  train_wall_s_median=tr_wall,
                  wall_ratio_to_train=tr_wall / ev_wall if ev_wall > 0 else None,
                  pairs=len(walls["train"]), proxies=list(cfg.proxies))

    def zero_cost(self) -> None:
        import torch

        a = self.args
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            ctx = make_context(self.search_config("zero-cost", 1), 0, self._data_for(0))
            res = run_trials(ctx, a.zc_trials)
        finally:
            torch.set_num_threads(threads)
        n = res["trials"]
        self.emit("zero_cost_trials", "search-space", ctx.cfg.zc_batch, n * ctx.cfg.zc_batch,
                  res["seconds"], trials=n, over_budget=res["over_budget"], threads=1,
                  trial_s_median=median(res["trial_s"]),
                  trial_cpu_s_median=median(res["trial_cpu_s"]), budget=self.budget)

    def workers(self, single: dict[str, Any]) -> None:
        import multiprocessing

        a = self.args
        n = a.workers
        threads = a.threads or max(1, (os.cpu_count() or 1) // n)  # no oversubscription
        mp = multiprocessing.get_context("spawn")  # never fork a process that may hold CUDA
        barrier, queue = mp.Barrier(n), mp.Queue()
        conf = {"search": self.search_config("train", threads), "trials": a.worker_trials,
                "threads": threads, "synthetic": bool(self.synthetic)}
        procs = [mp.Process(target=trial_worker, args=(conf, rank, barrier, queue), daemon=True)
                 for rank in range(n)]
        for proc in procs:
            proc.start()
        try:
            results = [queue.get(timeout=900) for _ in procs]
        finally:
            for proc in procs:
                proc.join(timeout=60)
                if proc.is_alive():
                    proc.terminate()
        errors = [r["error"] for r in results if "error" in r]
        if errors:
            raise RuntimeError(f"a bench worker failed: {errors[0]}")
        images = sum(r["images"] for r in results)
        seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
        speedup = (images / seconds / single["img_s"]
                   if seconds > 0 and single["img_s"] > 0 else None)
        self.emit("concurrent_workers", "search-space", a.trial_batch_size, images, seconds,
                  workers=n, start_method="spawn", threads=threads,
                  trials=sum(r["trials"] for r in results),
                  fixed_s_median=median([f for r in results for f in r["fixed_s"]]),
                  single_img_s=single["img_s"], speedup=speedup, budget=self.budget)

    def write(self) -> None:
        from pathlib import Path

        from scaling.files import atomic_write_text

        out = Path(self.args.out)
        path = out / "gpu.jsonl"
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.records))
        self.provenance.write(path, records=len(self.records), fields=list(FIELDS))


def run(args: argparse.Namespace) -> int:
    """Run every measurement, in order, one JSON line each."""
    bench = _Bench(args)
    bench.models()
    single = bench.search()
    bench.evaluator()
    if bench.dev.type == "cuda":
        bench.search("search_trials_no_cudnn", cudnn=False)
    if args.zc_trials:
        bench.zero_cost()
    if args.workers:
        bench.workers(single)
    if args.compile:
        bench.models(compile_only=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
