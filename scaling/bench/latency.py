"""Benchmark: the latency predictor's error, ``python -m scaling.bench latency [--models ...]
[--samples 50] [--res 28 224] [--batch 1 32] [--threads 1] [--out DIR]``.

Per (resolution, batch): a table is profiled (:func:`scaling.latency.profile.profile`) for the zoo
models and ``--samples`` random samples of the default search space (fitted to ``--budget`` x
(res/28)^2 MACs), calibrated on 3 of them, and every model's predicted latency compared with its
measured one (whole deployed model, interleaved, median of rounds). Reported: median and 90th
percentile of the absolute % error, and the Spearman rank correlation (pandas' ``rank``, then
Pearson: scipy is not a dependency). One JSON line per case; ``--out DIR`` also writes
``DIR/latency.jsonl`` and its provenance. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json

from scaling.cli import Parser, command

PROG = "python -m scaling.bench latency"
MODELS = ("mobilenet_v2", "efficientnet_b0", "resnet18", "mobilenet_v3_small", "regnet_x_400mf")


def configure(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark."""
    p.add_argument("--models", nargs="*", default=list(MODELS), help="zoo names")
    p.add_argument("--samples", type=int, default=50, help="random samples of the search space")
    p.add_argument("--budget", default="10M", help="samples' MAC budget at 28x28")
    p.add_argument("--res", nargs="+", type=int, default=[28, 224], help="resolutions")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32], help="batch sizes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median)")
    p.add_argument("--out", default=None, help="folder for latency.jsonl and its provenance "
                   "(default: none, print only)")


@command(PROG, errors=(ValueError, KeyError))
def main(argv: list[str]) -> int:
    """Predicted vs measured latency."""
    p = Parser(PROG, description=__doc__)
    configure(p)
    return run(p.parse_args(argv))


def errors(predicted: list[float], measured: list[float]) -> dict[str, float]:
    """Median and p90 of |predicted - measured| / measured in %, Spearman's rho."""
    import pandas as pd

    pred, meas = pd.Series(predicted, dtype=float), pd.Series(measured, dtype=float)
    err = ((pred - meas).abs() / meas * 100)
    rho = pred.rank().corr(meas.rank()) if len(pred) > 1 else None  # None: one model, no rank
    return {"median_abs_pct": round(float(err.median()), 2),
            "p90_abs_pct": round(float(err.quantile(0.9)), 2),
            "spearman": None if rho is None or rho != rho else round(float(rho), 4)}


def run(args: argparse.Namespace) -> int:
    from scaling.latency import calibrate, predict
    from scaling.latency.cli import space_samples
    from scaling.latency.profile import measure_models, profile
    from scaling.search.objectives import parse_budget
    from scaling.zoo import get_spec

    records = []
    provenance = None
    if args.out:
        from scaling.study.provenance import Provenance

        provenance = Provenance(device=args.device)
    timing = {"rounds": args.rounds}
    for res in args.res:
        zoo = []
        for name in args.models:
            try:
                zoo.append(get_spec(name).replace(resolution=res))
            except ValueError:  # too many stride-2 steps for this resolution
                continue
        budget = parse_budget(args.budget) * (res / 28) ** 2
        samples = space_samples(args.samples, res, budget, in_channels=3 if res > 32 else 1)
        specs = zoo + samples
        for batch in args.batch:
            env = (args.device, args.threads, batch, args.dtype)
            table = calibrate(profile(specs, *env, **timing), specs[-3:], **timing)
            measured = measure_models(specs, *env, **timing)
            predicted = [predict(s, table) for s in specs]
            rec = {"res": res, "batch": batch, "models": len(zoo), "samples": len(samples),
                   "entries": len(table), "overhead_ms": round(table.overhead_ms, 4),
                   "environment": table.describe(), **errors(predicted, measured),
                   "zoo": errors(predicted[:len(zoo)], measured[:len(zoo)]) if zoo else None}
            records.append(rec)
            print(json.dumps(rec), flush=True)
    if args.out:
        from pathlib import Path

        from scaling.files import atomic_write_text

        path = Path(args.out) / "latency.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
        provenance.write(path, records=len(records))
    return 0
