"""``python -m scaling.search``: architecture search under a MAC budget.

Quick CPU example (the medium study's trial recipe; 6 trials took 166 s with --threads 1 on this
project's 2-core machine at load 6-7, so about 10 minutes for 20; validation top-1 57-77%)::

    python -m scaling.search --budget 2M --trials 20 --subset 4000 --val-size 2000 --epochs 2 \\
        --batch-size 64 --lr 0.05 --zero-init-last --threads 1

With the defaults (--trials 40 --epochs 3 --subset 10000) a trial at --budget 8M took 65-183 s
there: 45 minutes to 2 hours for the search. The README's 'Quick settings' has the measurements.

Prints one line per finished trial with every field named ('trial k of N' trained trials, its
state and status, MACs, the score: val_acc or the zero-cost rank proxy, the objective's value,
the best so far, seconds and an ETA), then the best spec(s) as compact block strings
(:func:`scaling.ir.encode_stages`), a summary table and the paths of the tidy trials CSV
(``<study>.trials.csv``, its columns in :func:`scaling.search.report.tidy_trials` and the
README's 'Search outputs'), Optuna's raw CSV (``<study>.csv``) and the best-spec JSON, under
``--out`` (default ``runs/search``, which git ignores). The best-spec JSON, and the ``--json``
report, go straight into ``python -m scaling.train``, ``scaling.profile``, ``scaling.compound
--base`` and ``scaling.create_model``; of a Pareto front's several records, ``FILE#N`` picks
trial N.
``--json`` prints one JSON report on stdout instead (progress goes to stderr). Bad input -- a
budget that is not a MAC count, an unknown objective/evaluator, an unreachable storage, a
--resume under other settings (each named with its stored and given value) -- gives a one-line
error and exit code 2. The --out folder and a SQLite storage's folder are created.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scaling.cli import (
    Parser,
    UsageError,
    add_config_arguments,
    check_option,
    command,
    config_from_args,
    one_line,
)
from scaling.data.catalog import dataset_name
from scaling.ir.limits import MAX_CHANNELS, MAX_RESOLUTION
from scaling.search.config import ConfigError, SearchConfig, StorageError
from scaling.search.objectives import format_macs
from scaling.search.storage import storage_failure

PROG = "python -m scaling.search"


def build_parser() -> Parser:
    p = Parser(PROG, description=__doc__)
    add_config_arguments(p.add_argument_group("search (SearchConfig)"), SearchConfig)
    o = p.add_argument_group("output")
    o.add_argument("--print-space", action="store_true",
                   help="print the default space as YAML, each key after a comment saying "
                   "what it means (the optional recipe entry commented out), and exit")
    o.add_argument("--top", type=int, default=10, help="rows of the summary table")
    o.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    return p


#: (option, minimum, maximum) of the numeric options; each must also be finite
NUMBERS = (("seed", 0, 2**32 - 1), ("timeout", 1e-9, None), ("epochs", 1e-9, None),
           ("trial_seconds", 1e-9, None), ("lr", 1e-12, None), ("reward_w", None, None),
           ("in_channels", 1, MAX_CHANNELS), ("resolution", 1, MAX_RESOLUTION),
           ("val_size", 0, None), ("max_retry", 0, None), ("startup_trials", 0, None),
           ("hybrid_samples", 1, None), ("top", 0, None), ("reevaluate", 0, None),
           ("reevaluate_seeds", 1, None), ("prune_factor", 2, None))


def config_from(args: argparse.Namespace) -> SearchConfig:
    """The validated :class:`SearchConfig` of parsed arguments (:class:`ConfigError` if bad)."""
    import yaml

    for name, low, high in NUMBERS:
        check_option(f"--{name.replace('_', '-')}", getattr(args, name), low, high)
    try:
        dataset_name(args.data)
        cfg = config_from_args(SearchConfig, args).validate()
    except (KeyError, ValueError) as exc:  # an unknown dataset; ConfigError stays one
        raise ConfigError(one_line(exc)) from None
    except (OSError, RecursionError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"--space {args.space!r}: {one_line(exc)}") from None
    if cfg.device != "auto":
        from scaling.train import resolve_device

        try:
            resolve_device(cfg.device)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return cfg


@command(PROG, errors=(ConfigError, StorageError))
def main(argv: list[str]) -> int:
    """Run (or resume) a search and print its report; bad input: one line, exit code 2."""
    args = build_parser().parse_args(argv)
    if args.print_space:
        from scaling.search.space import RECIPE_SPACE, default_space
        from scaling.search.space_doc import commented_space

        print(commented_space(default_space(), RECIPE_SPACE), end="")
        return 0
    cfg = config_from(args)
    from scaling.data import DatasetNotFoundError
    from scaling.search.study import run_search

    out = sys.stderr if args.json else sys.stdout
    if not cfg.quiet:
        print(f"search {cfg.study}: objective {cfg.objective}, evaluator {cfg.evaluator}, "
              f"budget {format_macs(cfg.budget)} MACs at {cfg.resolution}x{cfg.resolution}, "
              f"{cfg.trials} trials, storage {cfg.storage_url}", file=out, flush=True)
    try:
        return _print_report(run_search(cfg, to_stderr=args.json), args)
    except DatasetNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - only the storage's failures are translated
        failure = storage_failure(exc, cfg.storage_url)
        if failure is None:
            raise
        raise failure from None


def format_counts(counts: dict[str, int], evaluator: str = "train") -> str:
    """{'complete': 4, 'pruned': 1, 'over_budget': 2} -> '4 complete, 1 pruned, 2 over budget';
    a zero-cost search's ``trained`` trials are ``scored`` (nothing was trained)."""
    done = "scored" if evaluator == "zero-cost" else "trained"
    return ", ".join(f"{n} {done if state == 'trained' else state.replace('_', ' ')}"
                     for state, n in counts.items()) or "none"


def _print_report(info: Any, args: argparse.Namespace) -> int:
    from scaling.ir import NetworkSpec, encode_stages
    from scaling.search.report import (
        format_recipe,
        report,
        score_name,
        summary_table,
        write_outputs,
    )

    study, cfg = info.study, info.cfg
    paths = write_outputs(study, cfg.out_dir)
    rep = report(study, cfg, info.wall_time, paths)
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0 if rep["best"] else 1
    print(f"\nbest spec{'s (Pareto front, by MACs)' if len(rep['best']) > 1 else ''}:")
    for rec in rep["best"]:
        score = "-" if rec["score"] is None else f"{rec['score']:.4f}"
        values = ", ".join(f"{name} {v:.4g}" for name, v in  # those not shown already
                           zip(info.study.metric_names or [], rec["values"] or [])
                           if name not in (score_name(cfg), "macs"))
        macs = "-" if rec["macs"] is None else format_macs(rec["macs"])
        print(f"# trial {rec['number']}: {macs} MACs, "
              f"{score_name(cfg)} {score}{', ' + values if values else ''}")
        for line in encode_stages(NetworkSpec.from_dict(rec["spec"])) if rec.get("spec") else ():
            print(f"  {line}")
        if rec.get("recipe"):
            print(f"  recipe: {format_recipe(rec['recipe'])}")
    if not rep["best"]:
        print("(no feasible trial finished)")
    if rep.get("reevaluation"):
        from scaling.search.reevaluate import format_reevaluation

        table = rep["reevaluation"]
        print(f"\nre-evaluation (the best {len(table['rows'])} trials retrained with seeds "
              f"{', '.join(map(str, table['seeds']))}; winner * by mean val_acc"
              f"{', as the reward' if cfg.objective == 'reward' else ''}):")
        print(format_reevaluation(table))
    print("\nsummary (top trials; * = best):")
    print(summary_table(study, args.top, score_name(cfg)) or "(no evaluated trials)")
    print(f"\ntrials: {format_counts(rep['counts'], cfg.evaluator)}; "
          f"wall time {rep['wall_time_s']:.1f} s")
    print(f"trials CSV: {paths['trials_csv']} (columns: see the README's 'Search outputs')\n"
          f"Optuna's raw CSV: {paths['csv']}\nbest spec(s): {paths['best_json']}")
    if rep["best"]:
        front = len(rep["best"]) > 1
        pick = paths["best_json"] + (f"#{rep['best'][0]['number']}" if front else "")
        print(f"use it: python -m scaling.train {pick} (or scaling.profile, scaling.compound "
              f"--base, scaling.create_model){'; #N picks trial N' if front else ''}")
    return 0 if rep["best"] else 1
