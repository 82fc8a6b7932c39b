"""Issue 17: does searching the training recipe with the architecture beat a fixed recipe?

For each data budget (training images) and seed, two searches run side by side for the same
``--seconds`` (``SearchConfig.timeout``) on one CPU thread each: ``fixed`` (the built-in space and
the fixed recipe) and ``recipe`` (plus :data:`scaling.search.space.RECIPE_SPACE`), both on
validation accuracy under the MAC budget (MnasNet reward, w = 0), median pruner, no proxies.
Each best trial is retrained once with its recipe and seed and tested once (``--test-size``).

    nice python experiments/recipe_vs_fixed.py --seconds 200 --subsets 4000 16000 --jobs 2
    nice python experiments/recipe_vs_fixed.py --preset long --jobs 2   # about 70 minutes
    nice python experiments/recipe_vs_fixed.py --preset long-full --jobs 2   # about 35 minutes
    python experiments/recipe_vs_fixed.py --combine long long-full --name long-all
    python experiments/recipe_vs_fixed.py --tiny     # seconds (the test)

Writes ``results/recipe_vs_fixed/<name>.csv`` (a row per search, as each ends), ``<name>.md``
(mean +- std per arm and budget, the paired difference against seed noise) and provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"seconds": 200.0, "subsets": [4000, 16000], "epochs": [4.0, 2.0], "seeds": [0, 1, 2],
            "val_size": 2000, "test_size": None, "budget": "4M", "name": "cpu"},
    # three times the search time at half the MAC budget: past TPE's 10 random start-up trials
    "long": {"seconds": 600.0, "subsets": [4000, 16000], "epochs": [4.0, 2.0], "seeds": [0, 1, 2],
             "val_size": 2000, "test_size": None, "budget": "2M", "name": "long"},
    # the full training set (60,000 - 2,000 validation images), one epoch per trial
    "long-full": {"seconds": 600.0, "subsets": [58000], "epochs": [1.0], "seeds": [0, 1, 2],
                  "val_size": 2000, "test_size": None, "budget": "2M", "name": "long-full"},
    "tiny": {"seconds": 2.0, "subsets": [256], "epochs": [1.0], "seeds": [0],
             "val_size": 128, "test_size": 256, "budget": "4M", "name": "tiny"},
}
ARMS = ("fixed", "recipe")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--tiny", action="store_true", help="same as --preset tiny")
    p.add_argument("--seconds", type=float, help="wall time of each search")
    p.add_argument("--subsets", type=int, nargs="+", help="training images per data budget")
    p.add_argument("--epochs", type=float, nargs="+", help="trial epochs, one per subset")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--val-size", type=int)
    p.add_argument("--test-size", type=int, help="test images (default: all 10,000)")
    p.add_argument("--budget", help="MAC budget of the searches")
    p.add_argument("--jobs", type=int, default=2, help="searches run at once (1 thread each)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", help="result file name (default: the preset)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "recipe_vs_fixed")
    p.add_argument("--combine", nargs="+", metavar="NAME", help="run nothing: summarise the "
                   "rows of these earlier runs (OUT/NAME.csv, e.g. more seeds) as --name")
    args = p.parse_args(argv)
    preset = PRESETS["tiny" if args.tiny else args.preset]
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if len(args.epochs) != len(args.subsets):
        p.error(f"--epochs has {len(args.epochs)} values; expected one per subset "
                f"({len(args.subsets)})")
    return args


def run_one(arm: str, subset: int, epochs: float, seed: int, args: dict[str, Any],
            db_dir: str) -> dict[str, Any]:
    """One search of ``arm`` and the test accuracy of its best trial (retrained once)."""
    import optuna
    import torch

    torch.set_num_threads(1)
    from scaling.ir import NetworkSpec
    from scaling.search.evaluators import SearchContext, train_spec
    from scaling.search.objectives import parse_budget
    from scaling.search.space import RECIPE_SPACE, default_space
    from scaling.search.study import SearchConfig, run_search
    from scaling.train import evaluate

    space = default_space()
    if arm == "recipe":
        space["recipe"] = RECIPE_SPACE
    name = f"{arm}-n{subset}-s{seed}"
    cfg = SearchConfig(study=name, storage=f"sqlite:///{db_dir}/{name}.db",
                       budget=parse_budget(args["budget"]), reward_w=0.0, trials=10_000,
                       timeout=args["seconds"], seed=seed, device=args["device"], epochs=epochs,
                       subset=subset, val_size=args["val_size"], threads=1, proxies=(),
                       space=space, quiet=True, reevaluate=0)  # equal wall time per arm
    info = run_search(cfg)
    done = [t for t in info.study.get_trials(deepcopy=False,
                                             states=(optuna.trial.TrialState.COMPLETE,))
            if t.user_attrs.get("val_acc") is not None]
    counts: dict[str, int] = {}
    for t in info.study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    row: dict[str, Any] = {"subset": subset, "epochs": epochs, "seed": seed, "arm": arm,
                           "seconds": args["seconds"], "search_wall_s": round(info.wall_time, 1),
                           "complete": counts.get("complete", 0),
                           "pruned": counts.get("pruned", 0)}
    if not done:
        return {**row, "best_trial": None, "val_acc": None, "test_acc": None}
    best = max(done, key=lambda t: t.user_attrs["val_acc"])
    recipe = best.user_attrs.get("recipe") or {}
    ctx = SearchContext(cfg)
    spec = NetworkSpec.from_json(best.user_attrs["spec"])
    result = train_spec(ctx, spec, recipe=recipe)
    data = ctx.data()
    if args["test_size"]:
        import dataclasses

        from scaling.data import TensorSplit

        n = args["test_size"]
        data = dataclasses.replace(data, test=TensorSplit(data.test.x[:n], data.test.y[:n]))
    test = evaluate(result.model, data, split="test") if result.model is not None else None
    return {**row, "best_trial": best.number, "macs": best.user_attrs["macs"],
            "val_acc": best.user_attrs["val_acc"], "retrain_val_acc": result.final_val_top1,
            "test_acc": test, "recipe": json.dumps(recipe, sort_keys=True)}


def summarise(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Per data budget: mean +- std of test accuracy per arm, and the paired (same seed)
    difference recipe - fixed with its std (the seed noise of the difference)."""
    import pandas as pd

    from scaling.cli import format_table

    table = pd.DataFrame(rows)
    out, lines = [], []
    for subset, group in table.groupby("subset"):
        by = {arm: group[group.arm == arm].set_index("seed").test_acc.astype(float)
              for arm in ARMS}
        diff = (by["recipe"] - by["fixed"]).dropna()
        rec = {"subset": int(subset), "seeds": int(len(diff)),
               **{f"{arm}_mean": by[arm].mean() for arm in ARMS},
               **{f"{arm}_std": by[arm].std(ddof=1) for arm in ARMS},
               "diff_mean": diff.mean(), "diff_std": diff.std(ddof=1),
               "t": diff.mean() / (diff.std(ddof=1) / len(diff) ** 0.5) if len(diff) > 1
               else float("nan"),
               "recipe_wins": int((diff > 0).sum())}
        out.append(rec)

    def pm(m: float, s: float) -> str:
        return f"{100 * m:.2f} +- {100 * s:.2f}" if s == s else f"{100 * m:.2f}"

    lines = format_table(["train images", "seeds", "fixed test %", "recipe test %",
                          "recipe - fixed (pts)", "t", "recipe wins"],
                         [[r["subset"], r["seeds"], pm(r["fixed_mean"], r["fixed_std"]),
                           pm(r["recipe_mean"], r["recipe_std"]),
                           pm(r["diff_mean"], r["diff_std"]), f"{r['t']:.2f}",
                           f"{r['recipe_wins']}/{r['seeds']}"]
                          for r in out], left=0)
    return out, lines


def combine(args: argparse.Namespace) -> int:
    """``--combine``: the rows of earlier runs summarised together (nothing is trained)."""
    import pandas as pd

    from scaling.study.protocol import write_report
    from scaling.study.provenance import Provenance, atomic_write_text

    paths = [args.out / f"{name}.csv" for name in args.combine]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"--combine: no such result file: {', '.join(missing)}")
    table = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    if table.duplicated(["subset", "seed", "arm"]).any():
        raise SystemExit("--combine: the runs share (subset, seed, arm) rows; combine runs of "
                         "different seeds")
    rows = table.to_dict("records")
    summary, text = summarise(rows)
    seeds = sorted(int(s) for s in table.seed.unique())
    csv_path = args.out / f"{args.name}.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    md = (f"# Recipe in the search vs the fixed recipe ({args.name})\n\n"
          f"The rows of {', '.join(f'`{p.name}`' for p in paths)} (each run's protocol is in "
          f"its own `.md` and provenance), seeds {seeds}. Difference: paired by seed, mean +- "
          "std over seeds (its std is the seed noise); t = mean / (std / sqrt(seeds)).\n\n"
          f"```\n{text}\n```\n\nRows: `{csv_path.name}`.\n")
    write_report(csv_path, md, Provenance(seeds=seeds, device=args.device, preset=args.name),
                 summary, combined=[p.name for p in paths])
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.combine:
        return combine(args)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from scaling.study.protocol import write_report
    from scaling.study.provenance import Provenance, atomic_write_text

    prov = Provenance(seeds=args.seeds, device=args.device, preset=args.name)
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{args.name}.csv"
    shared = {k: getattr(args, k) for k in ("seconds", "val_size", "test_size", "budget",
                                            "device")}
    tasks = [(arm, n, e, s) for n, e in zip(args.subsets, args.epochs) for s in args.seeds
             for arm in ARMS]  # the two arms of a (budget, seed) run side by side
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as db_dir:
        if args.jobs > 1:
            with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
                futures = [pool.submit(run_one, *t, shared, db_dir) for t in tasks]
                for fut in futures:
                    rows.append(fut.result())
                    _progress(rows[-1], csv_path, rows, atomic_write_text)
        else:
            for t in tasks:
                rows.append(run_one(*t, shared, db_dir))
                _progress(rows[-1], csv_path, rows, atomic_write_text)
    summary, text = summarise(rows)
    md = (f"# Recipe in the search vs the fixed recipe ({args.name})\n\n"
          f"Each search: {args.seconds:g} s wall time on 1 CPU thread, {args.jobs} searches at "
          f"once, MAC budget {args.budget}, validation {args.val_size} images, test "
          f"{args.test_size or 10000} images (tested once, best trial by validation, "
          f"retrained with its recipe). Epochs per trial: "
          f"{dict(zip(args.subsets, args.epochs))}. Difference: paired by seed, mean +- std "
          "over seeds (its std is the seed noise).\n\n```\n" + text + "\n```\n\n"
          f"Rows: `{csv_path.name}`.\n")
    md_path = write_report(csv_path, md, prov, summary)
    print(text)
    print(f"wrote {csv_path}, {md_path.name} (+ provenance)")
    return 0


def _progress(row: dict[str, Any], path: Path, rows: list[dict[str, Any]], write: Any) -> None:
    import pandas as pd

    write(path, pd.DataFrame(rows).to_csv(index=False))
    test = row.get("test_acc")
    print(f"{row['arm']:6s} n={row['subset']} seed {row['seed']}: {row['complete']} complete, "
          f"{row['pruned']} pruned, best #{row.get('best_trial')} val {row.get('val_acc')}, "
          f"test {'-' if test is None else f'{test:.4f}'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
