"""Benchmark: training throughput on CPU, ``python -m scaling.bench train [--models ...]``.

For each model (zoo nets adapted to 28x28 grey inputs, 10 classes) and in one process, interleaved
and best of ``--repeats`` to damp the noise of a shared machine:

- ``plain``: a plain PyTorch loop on one fixed, pre-normalised batch: NCHW, SGD with momentum,
  ``zero_grad / forward / cross_entropy / backward / step``; nothing else.
- ``plain_cl``: the same loop in channels_last (shows what the layout alone gives).
- ``trainer``: :func:`scaling.train.trainer.train` on Fashion-MNIST (random images when the
  dataset is absent), with its data loading, batch augmentation, schedule and divergence check;
  the second epoch is timed (the first warms up), evaluation excluded.

Prints images/s and the ratios trainer / plain and trainer / plain_cl (the trainer runs in
channels_last, so plain_cl is its like-for-like loop). Numbers depend on the machine and its
load: on an oversubscribed CPU, torch's multi-threaded kernels stall waiting for each other
(measured 5-10x slower at load 6 on 2 cores) and every column becomes noise; use ``--threads 1``
there.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from scaling.cli import MAX_THREADS, Parser, command

#: bench name -> (zoo name, width multiplier applied with scaling.compound.rule.scale)
BENCH_MODELS = {"mobilenet_v2_x0_5": ("mobilenet_v2_x0_5", 1.0),
                "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", 1.0),
                "resnet18_narrow": ("resnet18", 0.25)}


def get_specs(names: list[str]) -> dict:
    """28x28 grey, 10-class zoo specs (stride-1 stem, no stem pool) for ``names``: bench names
    (:data:`BENCH_MODELS`) or any zoo name."""
    from scaling.compound import scale
    from scaling.train.cli import zoo_spec

    out = {}
    for name in names:
        zoo_name, width = BENCH_MODELS.get(name, (name, 1.0))
        spec = zoo_spec(zoo_name, in_channels=1, resolution=28, num_classes=10)
        out[name] = scale(spec, width=width) if width != 1.0 else spec
    return out


def plain_loop(model: Any, x: Any, y: Any, steps: int, channels_last: bool = False) -> float:
    """Images/s of a bare training loop on one batch (2 warm-up steps, then ``steps`` timed)."""
    import torch
    import torch.nn.functional as F

    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    t0 = 0.0
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return x.shape[0] * steps / (time.perf_counter() - t0)


PROG = "python -m scaling.bench train"


def configure(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark."""
    p.add_argument("--models", nargs="+", default=list(BENCH_MODELS),
                   help="bench names or zoo names")
    p.add_argument("--batch-size", type=int, default=256, help="training batch size")
    p.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    p.add_argument("--repeats", type=int, default=2, help="interleaved repeats (best of)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's)")


@command(PROG, errors=(ValueError, TypeError))
def main(argv: list[str]) -> int:
    """Training images/s on CPU: scaling.train.trainer.train vs a plain loop."""
    p = Parser(PROG, description=main.__doc__)
    configure(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Measure and print one row per model."""
    for name in ("batch_size", "steps", "repeats"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')}={getattr(args, name)} is not "
                             "allowed; expected >= 1")
    if args.threads is not None and not 1 <= args.threads <= MAX_THREADS:
        raise ValueError(f"--threads={args.threads} is not allowed; expected >= 1 and <= "
                         f"{MAX_THREADS}")
    specs = get_specs(args.models)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from scaling.bench.data import bench_data
    from scaling.cost import complexity
    from scaling.nn.build import build_model
    from scaling.train import train

    data, data_source = bench_data("auto", args.batch_size * args.steps, 0)
    print(f"training images/s, CPU, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.steps} timed steps, best of {args.repeats}; zoo models at 28x28 (stride-1 "
          f"stem); trainer data: {data_source}")
    print(f"{'model':<22}{'MACs':>12}{'plain':>9}{'plain_cl':>10}{'trainer':>9}"
          f"{'trainer/plain':>15}{'trainer/plain_cl':>18}")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.batch_size,), generator=g)
    ratios, ratios_cl = [], []
    for name, spec in specs.items():
        best = {"plain": 0.0, "plain_cl": 0.0, "trainer": 0.0}
        for _ in range(args.repeats):
            torch.manual_seed(0)
            best["plain"] = max(best["plain"], plain_loop(build_model(spec), x, y, args.steps))
            torch.manual_seed(0)
            best["plain_cl"] = max(best["plain_cl"],
                                   plain_loop(build_model(spec), x, y, args.steps, True))
            res = train(spec, data, epochs=2, batch_size=args.batch_size, device="cpu",
                        progress=False)
            best["trainer"] = max(best["trainer"], res.history[-1]["images_per_s"])
        ratio = best["trainer"] / best["plain"]
        ratio_cl = best["trainer"] / best["plain_cl"]
        ratios.append(ratio)
        ratios_cl.append(ratio_cl)
        print(f"{name:<22}{complexity(spec).macs / 1e6:>10.1f}M{best['plain']:>9.0f}"
              f"{best['plain_cl']:>10.0f}{best['trainer']:>9.0f}{ratio:>14.2f}x"
              f"{ratio_cl:>17.2f}x", flush=True)
    print(f"trainer/plain: min {min(ratios):.2f}x, max {max(ratios):.2f}x; trainer/plain_cl: "
          f"min {min(ratios_cl):.2f}x, max {max(ratios_cl):.2f}x (MACs at 28x28; "
          "images/s; the machine's load affects every column)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
