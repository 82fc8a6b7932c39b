"""``python -m scaling.search``: architecture search under a MAC budget.

Example (CPU, a few minutes)::

    python -m scaling.search --budget 8M --trials 40 --data fashion-mnist --resolution 28 \\
        --objective reward --evaluator train --epochs 3 --subset 10000

Prints a line per trial (number, state, MACs, score, value, best so far), then the best spec(s)
as JSON, a summary table and the paths of the trials CSV and best-spec JSON. ``--json`` prints
one JSON report on stdout instead (progress goes to stderr). Bad input -- a budget that is not a
MAC count, an unknown objective/evaluator, an unreachable storage -- gives a one-line error and
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scaling.search.objectives import OBJECTIVES, format_macs, parse_budget
from scaling.search.proxies import PROXIES


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from scaling.search.evaluators import EVALUATORS

    p = _Parser(prog="python -m scaling.search", description=__doc__.split("\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--budget", default="10M", help="MAC budget: 10M, 1.5G, 400000000 (default 10M)")
    a("--trials", type=int, default=40, help="target number of finished trials (default 40)")
    a("--data", default="fashion-mnist", help="dataset (scaling.data.datasets; default fashion-mnist)")
    a("--data-root", default=None, help="dataset folder (default: $SCALING_DATA, Debian path)")
    a("--resolution", type=int, default=28, help="input resolution (default 28)")
    a("--in-channels", type=int, default=None, help="input channels (default: the dataset's)")
    a("--objective", default="reward", help=f"one of {', '.join(OBJECTIVES)} (default reward)")
    a("--evaluator", default="train", help=f"one of {', '.join(EVALUATORS)} (default train)")
    a("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/STUDY.db)")
    a("--study", default=None, help="study name (default: data-rRES-BUDGET-objective-evaluator)")
    a("--resume", action="store_true", help="continue an existing study (load_if_exists)")
    a("--timeout", type=float, default=None, help="stop starting trials after S seconds")
    a("--workers", type=int, default=1, help="worker processes sharing the storage (default 1)")
    a("--seed", type=int, default=0, help="seed of sampler, initialisation, training (default 0)")
    a("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    a("--sampler", default=None, help="tpe, nsga2 or random (default tpe)")
    a("--startup-trials", type=int, default=10, help="random trials before TPE (default 10)")
    a("--pruner", default="median", help="median, hyperband or none (train; default median)")
    a("--epochs", type=float, default=3.0, help="training epochs per trial (default 3)")
    a("--trial-seconds", type=float, default=None, help="training-time cap per trial")
    a("--subset", type=int, default=10000, help="training images per trial (0: all)")
    a("--val-size", type=int, default=5000, help="validation images held out of train")
    a("--batch-size", type=int, default=128)
    a("--optimizer", default="sgd", help="sgd or adamw (default sgd)")
    a("--lr", type=float, default=None, help="learning rate (default: linear scaling rule)")
    a("--threads", type=int, default=None, help="torch CPU threads per worker (default: torch's)")
    a("--augment", action="store_true", help="random crop + flip while training (default off)")
    a("--channels-last", default="auto", help="auto (CUDA: trainer's choice; CPU: off), on, off")
    a("--proxies", default=",".join(PROXIES),
      help=f"zero-cost proxies to record, comma-separated, or 'none' (default {','.join(PROXIES)})")
    a("--rank-proxy", default="synflow", help="proxy that scores zero-cost/hybrid samples")
    a("--zc-batch", type=int, default=64, help="minibatch size of the proxies (default 64)")
    a("--hybrid-samples", type=int, default=None, help="hybrid: samples scored (default 5x)")
    a("--space", default=None, help="search space YAML/JSON (default: the built-in space)")
    a("--print-space", action="store_true", help="print the default space as YAML and exit")
    a("--heartbeat", type=int, default=10, help="heartbeat interval in seconds (default 10)")
    a("--grace", type=int, default=30, help="seconds before a silent trial is failed (30)")
    a("--out", default="results/search", help="folder of the db, CSV, best specs")
    a("--top", type=int, default=10, help="rows of the summary table (default 10)")
    a("--quiet", action="store_true", help="no per-trial lines")
    a("--json", action="store_true", help="print one JSON report on stdout")
    return p


def config_from_args(args: argparse.Namespace) -> Any:
    from scaling.search.study import SearchConfig

    budget = parse_budget(args.budget)
    proxies = () if args.proxies.strip().lower() == "none" else tuple(
        s.strip() for s in args.proxies.split(",") if s.strip())
    study = args.study or (f"{args.data}-r{args.resolution}-{format_macs(budget)}-"
                           f"{args.objective}-{args.evaluator}")
    sampler = args.sampler or "tpe"
    return SearchConfig(
        study=study, storage=args.storage, resume=args.resume, budget=budget,
        objective=args.objective, evaluator=args.evaluator, data=args.data,
        data_root=args.data_root, resolution=args.resolution, in_channels=args.in_channels,
        trials=args.trials, timeout=args.timeout, workers=args.workers, seed=args.seed,
        device=args.device, sampler=sampler, pruner=args.pruner,
        startup_trials=args.startup_trials, epochs=args.epochs, trial_seconds=args.trial_seconds,
        subset=args.subset or None, val_size=args.val_size, batch_size=args.batch_size,
        optimizer=args.optimizer, lr=args.lr, channels_last=args.channels_last, proxies=proxies,
        rank_proxy=args.rank_proxy, augment=args.augment, threads=args.threads,
        zc_batch=args.zc_batch, hybrid_samples=args.hybrid_samples, space=args.space,
        heartbeat=args.heartbeat, grace=args.grace, out_dir=args.out, quiet=args.quiet)


def _fail(message: str, code: int = 2) -> int:
    print(f"python -m scaling.search: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, one line printed)
        return int(exc.code or 0)
    if args.print_space:
        import yaml

        from scaling.search.space import default_space

        print(yaml.safe_dump(default_space(), sort_keys=False), end="")
        return 0
    from scaling.data import DatasetNotFoundError
    from scaling.search.study import ConfigError, StorageError, run_search

    try:
        cfg = config_from_args(args)
        cfg.validate()
        if cfg.device != "auto":
            from scaling.train import resolve_device

            resolve_device(cfg.device)
    except (ValueError, TypeError) as exc:
        return _fail(str(exc))
    out = sys.stderr if args.json else sys.stdout
    if not args.quiet:
        print(f"search {cfg.study}: objective {cfg.objective}, evaluator {cfg.evaluator}, "
              f"budget {format_macs(cfg.budget)} MACs at {cfg.resolution}x{cfg.resolution}, "
              f"{cfg.trials} trials, storage {cfg.storage_url}", file=out, flush=True)
    try:
        info = run_search(cfg, to_stderr=args.json)
    except (ConfigError, StorageError, DatasetNotFoundError) as exc:
        return _fail(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except KeyboardInterrupt:
        return _fail("interrupted; rerun with --resume to continue", 130)
    return _print_report(info, args)


def _print_report(info: Any, args: argparse.Namespace) -> int:
    from scaling.search.report import report, summary_table, write_outputs

    study, cfg = info.study, info.cfg
    paths = write_outputs(study, cfg.out_dir)
    rep = report(study, cfg, info.wall_time, paths)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0 if rep["best"] else 1
    print(f"\nbest spec{'s (Pareto front, by MACs)' if len(rep['best']) > 1 else ''}:")
    for rec in rep["best"]:
        print(f"# trial {rec['number']}: {format_macs(rec['macs'])} MACs, score {rec['score']}, "
              f"values {rec['values']}")
        print(json.dumps(rec["spec"]))
    if not rep["best"]:
        print("(no feasible trial finished)")
    table = summary_table(study, args.top)
    print("\nsummary (top trials; * = best):")
    print(table.to_string(index=False) if len(table) else "(no evaluated trials)")
    print(f"\ntrials: {rep['counts']}; wall time {rep['wall_time_s']:.1f}s")
    print(f"trials CSV: {paths['csv']}\nbest spec(s): {paths['best_json']}")
    return 0 if rep["best"] else 1
