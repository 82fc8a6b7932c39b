"""What :class:`scaling.nn.layers.Conv2dDepthwise` saves: the training step of every medium study
family at the first and last MAC points, with its depthwise convs as ``nn.Conv2d`` (oneDNN pads)
and as ``Conv2dDepthwise`` (``F.pad`` first where the map is smaller than the kernel), in
alternating rounds, one thread, batch 64, channels_last, 28x28, SGD with momentum.

Why: oneDNN (torch 2.13) computes the weight gradient of a padded depthwise conv whose input is
smaller than its kernel by im2col + GEMM per channel instead of its depthwise kernel
(``ONEDNN_VERBOSE=1`` prints ``gemm:jit`` for those and ``jit:avx2`` for the rest); at 28x28
the last stages of MBConv nets run 5x5 kernels on 4x4 and 2x2 maps.

    python experiments/depthwise_grad.py [--rounds 5] [--steps 10] [--samples 8]
        [--out results/bench/depthwise]

``--samples`` adds random nets of the default search space at the medium base point (seed 0):
the search's trials. Writes ``steps.csv`` (one row per family and point, and per sample:
small-map depthwise convs, median step ms of each arm over the rounds, their ratio, and the
largest relative difference of the weight gradients after one step, which is summation order
only) and its provenance. The ratio is the
figure to read: the machine's speed moves from day to day (results/medium/README.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def small_map_convs(model, convs, x) -> int:
    """How many of ``convs`` (modules of ``model``) see an input map smaller than their kernel
    on ``x``."""
    import torch

    seen: list[bool] = []
    hooks = [m.register_forward_pre_hook(
        lambda m, a: seen.append(min(a[0].shape[-2:]) < max(m.kernel_size))) for m in convs]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return sum(seen)


def arm(convs, plain: bool) -> None:
    """Switch ``convs`` (a model's ``Conv2dDepthwise`` modules) to ``nn.Conv2d`` (``plain``) or
    back: the same parameters, another forward."""
    from torch import nn

    from scaling.nn.layers import Conv2dDepthwise

    for m in convs:
        m.__class__ = nn.Conv2d if plain else Conv2dDepthwise


def step_ms(model, x, y, steps: int) -> float:
    """Mean milliseconds of a training step over ``steps`` after 3 warm-up steps."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for i in range(steps + 3):
        if i == 3:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.perf_counter() - t0) / steps * 1000


def grad_difference(model, convs, x, y) -> float:
    """Largest relative difference between the two arms' weight gradients of one step (the
    same dropout draws in both)."""
    import torch

    grads = []
    for plain in (True, False):
        arm(convs, plain)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    return max(float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
               for a, b in zip(*grads))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds per model")
    p.add_argument("--steps", type=int, default=10, help="timed steps per arm and round")
    p.add_argument("--samples", type=int, default=8, help="random nets of the default search "
                   "space at the medium base point (the search's trials), besides the families")
    p.add_argument("--out", type=Path, default=ROOT / "results/bench/depthwise")
    args = p.parse_args(argv)
    for name in ("rounds", "steps", "samples"):
        if getattr(args, name) < (0 if name == "samples" else 1):
            p.error(f"--{name} {getattr(args, name)} is not allowed; expected >= 1")

    import pandas as pd
    import torch

    from scaling.compound.match import fit_width
    from scaling.latency.cli import space_samples
    from scaling.nn import build_model
    from scaling.nn.layers import Conv2dDepthwise
    from scaling.study.config import resolve
    from scaling.study.plan import root_spec
    from scaling.study.provenance import Provenance, atomic_write_text

    prov = Provenance(seeds=[0], device="cpu", argv=[__file__, *(argv or sys.argv[1:])])
    torch.set_num_threads(1)
    torch.manual_seed(0)
    preset = resolve("medium")
    targets = preset.targets()
    nets = [(family, target, fit_width(root_spec(family, preset), target, tol=None,
                                       diffuse=True).spec)
            for family in preset.families for target in (targets[0], targets[-1])]
    nets += [(f"space sample {i}", preset.base_macs, spec) for i, spec in enumerate(
        space_samples(args.samples, 28, preset.base_macs, seed=0) if args.samples else [])]
    rows = []
    for family, target, spec in nets:
        model = build_model(spec).to(memory_format=torch.channels_last)
        convs = [m for m in model.modules() if isinstance(m, Conv2dDepthwise)]
        x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (64,))
        small = small_map_convs(model, convs, x)
        times: dict[str, list[float]] = {"plain": [], "padded": []}
        for r in range(args.rounds):
            for name in (("plain", "padded") if r % 2 == 0 else ("padded", "plain")):
                arm(convs, name == "plain")
                times[name].append(step_ms(model, x, y, args.steps))
        plain, padded = (statistics.median(times[k]) for k in ("plain", "padded"))
        row = {"family": family, "target_macs": int(target), "depthwise_convs": len(convs),
               "small_map_convs": small, "plain_ms": round(plain, 2),
               "padded_ms": round(padded, 2), "ratio": round(padded / plain, 3),
               "grad_rel_diff": float(f"{grad_difference(model, convs, x, y):.2g}")}
        rows.append(row)
        print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "steps.csv"
    atomic_write_text(path, df.to_csv(index=False))
    samples = df.family.str.startswith("space sample")
    summary = {"median_ratio": float(df.ratio.median()),
               "median_ratio_with_small_maps": float(df[df.small_map_convs > 0].ratio.median()),
               "median_ratio_space_samples": float(df[samples].ratio.median())
               if samples.any() else None}
    prov.write(path, summary=summary, rounds=args.rounds, steps=args.steps, threads=1, batch=64)
    print(f"padded / plain step time, median over models: {summary['median_ratio']:.3f} "
          f"({summary['median_ratio_with_small_maps']:.3f} over those with small-map convs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
