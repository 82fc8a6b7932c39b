"""Benchmark: the latency predictor's error, ``python -m scaling.bench latency [--models ...]
[--samples 50] [--calibrate 24] [--fit scale] [--res 28 224] [--batch 1 32] [--threads 1]
[--seed 0] [--out DIR]``.

Per (resolution, batch), in one process: the zoo models, ``--samples`` random samples of the search
space (seed ``--seed``, fitted to ``--budget`` x (res/28)^2 MACs) and ``--calibrate`` further
samples drawn the same way (seed ``--seed + 1``) are profiled part by part and timed whole and
deployed in the same interleaved rounds, each round in a new random order
(:func:`scaling.latency.profile.measure_parts_and_models`: a drift or a burst of machine load hits
entries and models alike) (median of ``--rounds`` at 224x224 batch 1, ``--heavy-rounds`` above it
and ``--light-rounds`` below it, in pixels x batch: :func:`rounds_for`); the
predictor's constants (``--fit``) are fitted on the calibration samples only
(:func:`scaling.latency.predict.fit_constants`), and the error is reported on the zoo and the
``--samples`` ones, which the fit never saw. Reported: median and 90th percentile of the absolute %
error, and Spearman's rank correlation (pandas' ``rank``, then Pearson: scipy is not a dependency),
for all and for the zoo alone. One JSON line per case; ``--out DIR`` (default ``results/latency``)
also writes ``latency.jsonl`` with its provenance, every model's figures (``predictions.csv``) and
the calibrated tables (``table_r{res}_b{batch}.json``). ``--clock cpu`` times the calling thread's
CPU time instead of the wall clock (one thread only: the honest clock on a shared machine). A
benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from scaling.cli import MAX_THREADS, Parser, check_option, check_writable, command
from scaling.latency.predict import FIT_TERMS

PROG = "python -m scaling.bench latency"
#: zoo models valid at 28x28 and 224x224 and cheap at 224 (<= 1.8G MACs)
MODELS = ("mobilenet_v2", "efficientnet_b0", "resnet18", "mobilenet_v3_small", "regnet_x_400mf",
          "mobilenet_v3_large", "shufflenet_v2_x1_0", "mnasnet1_0", "regnet_y_400mf",
          "mobilenet_v1_x0_5")
CLOCKS = ("wall", "cpu")  # scaling.latency.profile.CLOCKS (torch-free here)


def configure(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark."""
    p.add_argument("--models", nargs="*", default=list(MODELS), help="zoo names")
    p.add_argument("--samples", type=int, default=50, help="random samples of the search space "
                   "the error is reported on")
    p.add_argument("--calibrate", type=int, default=24, metavar="K",
                   help="further samples (seed + 1) the predictor's constants are fitted on")
    p.add_argument("--fit", default="scale", choices=FIT_TERMS,
                   help="the constants fitted: the scale alone, or scale, per part and per model")
    p.add_argument("--seed", type=int, default=0, help="seed of the samples")
    p.add_argument("--budget", default="4M", help="samples' MAC budget at 28x28 (x (res/28)^2 "
                   "at res: 4M is 256M at 224, MobileNetV2's range)")
    p.add_argument("--res", nargs="+", type=int, default=[28, 224], help="resolutions")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32], help="batch sizes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16, float16")
    p.add_argument("--rounds", type=int, default=21, help="interleaved rounds (median): with 7, "
                   "a whole model's time over its parts' sum spread 0.16-0.20 across models at "
                   "28x28 batch 1 and 0.10-0.13 at 224x224 batch 1; with 21, 0.05-0.10 at 28x28")
    p.add_argument("--heavy-rounds", type=int, default=5, help="rounds where res^2 x batch is "
                   "above 224^2 (224x224 batch 32: one call of a model lasts about a second)")
    p.add_argument("--light-rounds", type=int, default=63, help="rounds where res^2 x batch is "
                   "below 224^2 (28x28): a whole model's sample is one or two calls, and with "
                   "21 rounds the same 60 models at 28x28 batch 32 ranked with Spearman "
                   "0.93-0.95 between two runs of the benchmark (parts' sums 0.99); with 63, "
                   "0.96-0.97")
    p.add_argument("--warmup", type=int, default=0,
                   help="untimed calls per module besides the one that sizes its samples")
    p.add_argument("--min-ms", type=float, default=10.0, help="least duration of one sample: "
                   "enough back-to-back calls that a part's input is as warm as in the model")
    p.add_argument("--clock", default="wall", choices=CLOCKS,
                   help="wall: time.perf_counter; cpu: the thread's CPU time (1 thread only)")
    p.add_argument("--out", default="results/latency",
                   help="folder for latency.jsonl, predictions.csv, the tables and provenance "
                   "('' : print only)")


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


def check_args(args: argparse.Namespace) -> None:
    """One line (exit 2) naming the first option that is not allowed, before any timing."""
    from scaling.latency.profile import check_clock, check_options
    from scaling.search.objectives import parse_budget
    from scaling.zoo import get_spec

    check_option("samples", args.samples, 0)
    check_option("calibrate", args.calibrate, 3)
    check_option("threads", args.threads, 1, MAX_THREADS)
    check_option("rounds", args.rounds, 1)
    check_option("heavy-rounds", args.heavy_rounds, 1)
    check_option("light-rounds", args.light_rounds, 1)
    check_option("warmup", args.warmup, 0)
    check_option("min-ms", args.min_ms, 0)
    for res in args.res:
        check_option("res", res, 8)
    for batch in args.batch:
        check_options(args.device, args.threads, batch, args.dtype)
    check_clock(args.clock, args.device, args.threads)
    parse_budget(args.budget)
    for name in args.models:
        get_spec(name)  # an unknown name: one line naming it
    if args.out:
        check_writable("out", args.out, folder=True)


def _zoo(names: list[str], res: int) -> list[Any]:
    from scaling.zoo import get_spec

    zoo = []
    for name in names:
        try:
            zoo.append(get_spec(name).replace(resolution=res))
        except ValueError:  # too many stride-2 steps for this resolution
            print(f"# {name} is not valid at {res}x{res}; left out", flush=True)
    return zoo


def rounds_for(res: int, batch: int, args: argparse.Namespace) -> int:
    """The rounds of one case: ``--light-rounds`` below 224x224 batch 1 in pixels x batch,
    ``--heavy-rounds`` above it, ``--rounds`` at it."""
    load = res * res * batch
    if load == 224 * 224:
        return args.rounds
    return args.heavy_rounds if load > 224 * 224 else args.light_rounds


def case(res: int, batch: int, zoo: list[Any], samples: list[Any], calib: list[Any],
         args: argparse.Namespace) -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
    """One (resolution, batch): the record, the calibrated table, and one row per model."""
    from dataclasses import replace

    from scaling.latency import parts, predict
    from scaling.latency.predict import fit_constants
    from scaling.latency.profile import environment, measure_parts_and_models
    from scaling.latency.table import LatencyTable

    env = (args.device, args.threads, batch, args.dtype)
    rounds = rounds_for(res, batch, args)
    timing = {"rounds": rounds, "warmup": args.warmup, "min_ms": args.min_ms,
              "clock": args.clock}
    start = time.perf_counter()
    specs = zoo + samples + calib
    harness: list[float] = []
    entries, measured = measure_parts_and_models([p for s in specs for p in parts(s)], specs,
                                                 *env, harness=harness, **timing)
    bare = LatencyTable(environment(*env), entries, harness_ms=harness[0])
    table = bare
    sums = [predict(s, bare) for s in specs]
    counts = [len(parts(s)) for s in specs]
    k = len(zoo) + len(samples)
    scale, per_part, overhead = fit_constants(sums[k:], counts[k:], measured[k:], args.fit)
    table = replace(table, scale=scale, per_part_ms=per_part, overhead_ms=overhead)
    predicted = [predict(s, table) for s in specs]
    raw = errors(sums[:k], measured[:k])
    rec = {"res": res, "batch": batch, "models": len(zoo), "samples": len(samples),
           "calibration": len(calib), "fit": args.fit, "entries": len(table),
           "clock": args.clock,
           "rounds": rounds,
           "scale": round(scale, 4), "per_part_ms": round(per_part, 5),
           "overhead_ms": round(overhead, 4), "harness_ms": round(table.harness_ms or 0.0, 5),
           "environment": table.describe(), **errors(predicted[:k], measured[:k]),
           "zoo": errors(predicted[:len(zoo)], measured[:len(zoo)]) if zoo else None,
           "uncalibrated": raw, "seconds": round(time.perf_counter() - start, 1)}
    kinds = ["zoo"] * len(zoo) + ["sample"] * len(samples) + ["calibration"] * len(calib)
    rows = [{"res": res, "batch": batch, "kind": kd, "name": s.name or f"{kd}-{i}",
             "parts": n, "sum_ms": x, "measured_ms": m, "predicted_ms": p,
             "error_pct": (p - m) / m * 100}
            for i, (kd, s, n, x, m, p) in enumerate(zip(kinds, specs, counts, sums, measured,
                                                        predicted))]
    return rec, table, rows


def run(args: argparse.Namespace) -> int:
    from scaling.latency.cli import space_samples
    from scaling.search.objectives import parse_budget

    check_args(args)
    provenance = None
    if args.out:
        from scaling.study.provenance import Provenance

        provenance = Provenance(seeds=[args.seed, args.seed + 1], device=args.device)
    records, rows, tables = [], [], {}
    for res in args.res:
        zoo = _zoo(args.models, res)
        budget = parse_budget(args.budget) * (res / 28) ** 2
        channels = 3 if res > 32 else 1
        samples = space_samples(args.samples, res, budget, seed=args.seed,
                                in_channels=channels) if args.samples else []
        calib = space_samples(args.calibrate, res, budget, seed=args.seed + 1,
                              in_channels=channels)
        for batch in args.batch:
            rec, table, more = case(res, batch, zoo, samples, calib, args)
            records.append(rec)
            rows.extend(more)
            tables[f"table_r{res}_b{batch}.json"] = table
            print(json.dumps(rec), flush=True)
    if args.out:
        _write(args.out, records, rows, tables, provenance)
    return 0


def _write(out: str, records: list[dict[str, Any]], rows: list[dict[str, Any]],
           tables: dict[str, Any], provenance: Any) -> None:
    from pathlib import Path

    import pandas as pd

    from scaling.files import atomic_write_text

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.save(folder / name)
    atomic_write_text(folder / "predictions.csv",
                      pd.DataFrame(rows).to_csv(index=False, float_format="%.5g"))
    path = folder / "latency.jsonl"
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    provenance.write(path, records=len(records), tables=sorted(tables))
    print(f"wrote {path}, predictions.csv and {len(tables)} table(s) in {folder}")
