"""``python -m scaling.latency``: profile a latency table, merge tables, predict a spec's latency.

- ``profile --out FILE (--space default|FILE --samples N --budget MACS | --models NAME...)``:
  every distinct part (stem, block, head) of the specs, deployed and timed once, interleaved
  (:mod:`scaling.latency.profile`); ``--calibrate K`` then fits the predictor's constants
  (``--fit scale``, the default, or ``all``: scale, per part, per model;
  :func:`scaling.latency.predict.fit_constants`) on the first K specs timed whole;
  ``--into TABLE`` extends an existing table of the same environment;
  ``--dry-run`` only counts the distinct parts.
- ``merge A B ... --out FILE``: the union of tables of one environment.
- ``predict --table FILE MODEL...``: predicted ms per zoo model or spec file.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from scaling.cli import MAX_THREADS, Parser, check_option, check_writable, command, resolve_spec
from scaling.latency.predict import FIT_TERMS

PROG = "python -m scaling.latency"
DTYPES = ("float32", "bfloat16", "float16")  # scaling.latency.profile.DTYPES (torch-free here)


def space_samples(n: int, resolution: int, budget: float, space: str | None = None,
                  seed: int = 0, in_channels: int = 1, num_classes: int = 10) -> list[Any]:
    """``n`` random specs of a search space (default: the built-in one) at ``resolution``, each
    fitted to its sampled fraction of ``budget`` MACs, as a search samples them (Optuna's
    RandomSampler, seeded)."""
    import optuna

    from scaling.search.space import load_space, sample_spec

    check_option("samples", n, 1)
    resolved = load_space(None if space in (None, "default") else space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    specs = []
    for _ in range(n):
        trial = study.ask()
        specs.append(sample_spec(trial, resolved, resolution, in_channels, num_classes, budget))
        study.tell(trial, 0.0)
    return specs


def _specs(args: argparse.Namespace) -> list[Any]:
    if args.models:
        over = {"resolution": args.resolution} if args.resolution else {}
        return [resolve_spec(name, "models", **over) for name in args.models]
    from scaling.search.objectives import parse_budget

    return space_samples(args.samples, args.resolution or 28, parse_budget(args.budget),
                         args.space, args.seed, args.in_channels, args.classes)


def _add_profile(sub: Any) -> None:
    p = sub.add_parser("profile", help="measure a table", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--space", help="search space: default or a YAML/JSON file")
    what.add_argument("--models", nargs="+", help="zoo names or spec files")
    p.add_argument("--samples", type=int, default=50, help="specs sampled from --space")
    p.add_argument("--budget", default="10M", help="MAC budget the samples are fitted to")
    p.add_argument("--seed", type=int, default=0, help="seed of the space's samples")
    p.add_argument("--in-channels", type=int, default=1, help="input channels of --space samples")
    p.add_argument("--classes", type=int, default=10, help="classes of --space samples")
    p.add_argument("--resolution", type=int, default=None,
                   help="input resolution (default: 28 for --space, each model's own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--batch", type=int, default=1, help="batch size")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="weights and inputs")
    p.add_argument("--rounds", type=int, default=21, help="interleaved rounds (median); 21 as "
                   "in python -m scaling.bench latency, whose errors were measured with them")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per entry")
    p.add_argument("--min-ms", type=float, default=10.0, help="least duration of one sample: "
                   "enough back-to-back calls that a part's input is as warm as in the model")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                   help="wall: time.perf_counter; cpu: the thread's CPU time (1 thread only)")
    p.add_argument("--calibrate", type=int, default=8, metavar="K",
                   help="fit the predictor's constants on the first K specs (0: none; below 3: "
                   "fewer constants)")
    p.add_argument("--fit", default="scale", choices=FIT_TERMS,
                   help="the constants --calibrate fits: the scale alone, or scale, per part "
                   "and per model")
    p.add_argument("--into", default=None, metavar="TABLE", help="extend this table")
    p.add_argument("--dry-run", action="store_true", help="count the distinct parts only")
    p.add_argument("--out", default=None, help="the table file to write (JSON)")


def _profile(args: argparse.Namespace) -> int:
    from scaling.latency.parts import parts
    from scaling.latency.profile import check_clock
    from scaling.latency.table import load_table

    check_option("threads", args.threads, 1, MAX_THREADS)
    for name in ("batch", "rounds"):
        check_option(name, getattr(args, name), 1)
    check_option("warmup", args.warmup, 0)
    check_option("calibrate", args.calibrate, 0)
    check_clock(args.clock, args.device, args.threads)
    if not args.dry_run:
        if args.out is None:
            raise ValueError("profile: --out FILE is required (or --dry-run)")
        check_writable("out", args.out)
    base = load_table(args.into) if args.into else None
    specs = _specs(args)
    keys = {p.key for s in specs for p in parts(s)}
    todo = keys - set(base.entries if base else {})
    print(f"{len(specs)} specs, {len(keys)} distinct parts, {len(todo)} to measure")
    if args.dry_run:
        return 0
    from scaling.latency.predict import calibrate
    from scaling.latency.profile import profile

    timing = {"rounds": args.rounds, "warmup": args.warmup, "min_ms": args.min_ms,
              "clock": args.clock}
    start = time.perf_counter()
    table = profile(specs, args.device, args.threads, args.batch, args.dtype, base, **timing)
    print(f"measured {len(todo)} parts in {time.perf_counter() - start:.1f} s "
          f"({table.describe()})")
    if args.calibrate:
        table = calibrate(table, specs[:args.calibrate], args.fit, **timing)
        print(f"fitted on {len(specs[:args.calibrate])} whole models: {table.scale:.3f} x sum + "
              f"{table.per_part_ms:.4f} ms per part + {table.overhead_ms:.3f} ms per model")
    table.save(args.out)
    print(f"wrote {args.out}: {len(table)} entries")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from scaling.latency.table import load_table

    check_writable("out", args.out)
    tables = [load_table(path) for path in args.tables]
    merged = tables[0]
    for t in tables[1:]:
        merged = merged.merge(t)
    merged.save(args.out)
    print(f"wrote {args.out}: {len(merged)} entries ({merged.describe()})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from scaling.latency.predict import predict
    from scaling.latency.table import load_table

    table = load_table(args.table)
    over = {"resolution": args.resolution} if args.resolution else {}
    for name in args.models:
        spec = resolve_spec(name, "models", **over)
        print(f"{name}: {predict(spec, table, measure=args.measure):.3f} ms")
    return 0


def build_parser() -> Parser:
    p = Parser(PROG, description=__doc__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_profile(sub)
    m = sub.add_parser("merge", help="merge tables of one environment")
    m.add_argument("tables", nargs="+", help="table files")
    m.add_argument("--out", required=True, help="the merged table file")
    q = sub.add_parser("predict", help="predicted latency of models")
    q.add_argument("models", nargs="+", help="zoo names or spec files")
    q.add_argument("--table", required=True, help="table file")
    q.add_argument("--resolution", type=int, default=None, help="input resolution")
    q.add_argument("--measure", action="store_true",
                   help="measure missing entries here (else: an error naming one)")
    return p


@command(PROG, errors=(ValueError, TypeError, KeyError))
def main(argv: list[str]) -> int:
    """Profile, merge or predict."""
    args = build_parser().parse_args(argv)
    return {"profile": _profile, "merge": _merge, "predict": _predict}[args.command](args)
