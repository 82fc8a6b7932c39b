"""Tables and figures for scaling studies: accuracy vs MACs, Pareto fronts, scaling curves,
search progress, and zero-cost proxies vs accuracy.

Tables are pandas DataFrames with these columns (extra columns are kept):

- runs (one row per trained model and seed): ``family``, ``macs``, an accuracy column
  (``test_acc`` or ``val_acc``, in [0, 1]), optionally ``seed``, ``phi``, ``params``, ``model``.
- trials (Optuna's ``study.trials_dataframe()``): ``number``, ``state``, ``value`` or
  ``values_0``..., and user attributes ``user_attrs_<name>`` (``macs``, ``val_acc``, proxies).

``python -m scaling.analysis RESULTS_DIR --out results/figures/`` draws every figure whose table
it finds under RESULTS_DIR: ``**/*runs*.csv`` / ``**/compare*.csv`` (accuracy vs MACs),
``**/scale*.csv`` (scaling curves), ``**/*trials*.csv`` (search progress, proxy correlations).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from scaling.cli import Parser, command, fail

ACCURACY_COLUMNS = ("test_acc", "val_acc", "accuracy")


def accuracy_column(df: pd.DataFrame) -> str:
    for col in ACCURACY_COLUMNS:
        if col in df.columns:
            return col
    raise ValueError(f"table has no accuracy column; expected one of {ACCURACY_COLUMNS}, "
                     f"got columns {list(df.columns)}")


def load_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (or JSON lines) results table; a missing file is a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"results table {str(path)!r} does not exist")
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    return pd.read_csv(path)


def summarize_runs(runs: pd.DataFrame, by: Sequence[str] = ("family", "model")) -> pd.DataFrame:
    """Mean and standard deviation of accuracy (and mean MACs/params) over seeds."""
    acc = accuracy_column(runs)
    keys = [k for k in by if k in runs.columns]
    if not keys:
        raise ValueError(f"cannot group runs: none of the columns {list(by)} is present")
    named = {"acc_mean": (acc, "mean"), "acc_std": (acc, "std"), "n_seeds": (acc, "count"),
             "macs": ("macs", "mean")}
    if "params" in runs.columns:
        named["params"] = ("params", "mean")
    out = runs.groupby(keys, sort=False, dropna=False).agg(**named)
    out["acc_std"] = out["acc_std"].fillna(0.0)
    return out.reset_index().sort_values("macs")


def pareto_front(df: pd.DataFrame, cost: str = "macs", score: str | None = None) -> pd.DataFrame:
    """Rows not dominated by another row with lower-or-equal ``cost`` and higher ``score``.

    Sorted by cost; a row is on the front iff its score beats every cheaper row's score.
    """
    score = score or accuracy_column(df)
    for col in (cost, score):
        if col not in df.columns:
            raise ValueError(f"pareto_front: column {col!r} is missing; got {list(df.columns)}")
    ordered = df.dropna(subset=[cost, score]).sort_values([cost, score], ascending=[True, False])
    best_before = ordered[score].cummax().shift(fill_value=float("-inf"))
    return ordered[ordered[score] > best_before]


def rank_correlations(df: pd.DataFrame, proxies: Sequence[str], target: str) -> pd.DataFrame:
    """Spearman rho and Kendall tau between each proxy column and ``target``."""
    rows = []
    for proxy in proxies:
        pair = df[[proxy, target]].apply(pd.to_numeric, errors="coerce").dropna()
        if len(pair) < 3:
            continue
        rows.append({
            "proxy": proxy,
            "n": len(pair),
            "spearman": pair.corr(method="spearman").iloc[0, 1],
            "kendall": pair.corr(method="kendall").iloc[0, 1],
        })
    return pd.DataFrame(rows, columns=["proxy", "n", "spearman", "kendall"])


# -- figures: scaling.study.figures, reachable here as before (analysis.plot_accuracy_vs_macs) -----
def __getattr__(name: str):
    from scaling.study import figures

    if name in figures.__all__:
        return getattr(figures, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- CLI -----------------------------------------------------------------------------------------
def _proxy_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c.startswith("user_attrs_proxy_")]


def analyse(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw every figure whose table exists under ``results_dir``; returns the files written."""
    from scaling.study.figures import (
        describe_run,
        plot_accuracy_vs_macs,
        plot_proxy_vs_accuracy,
        plot_scaling_curves,
        plot_search_progress,
    )

    written: list[Path] = []
    for csv in sorted(results_dir.rglob("*.csv")):
        name = csv.stem
        table = load_table(csv)
        run = describe_run(csv)  # protocol / objective from the records beside the table
        if (name.startswith("compare") or "runs" in name) and "family" in table.columns:
            written.append(plot_accuracy_vs_macs(table, out_dir / f"{name}_acc_vs_macs.png",
                                                 protocol=run["protocol"]))
        elif name.startswith("scale") and "phi" in table.columns:
            written.append(plot_scaling_curves(table, out_dir / f"{name}_curves.png",
                                               protocol=run["protocol"]))
        elif (("trials" in name or csv.parent.name == "search") and "number" in table.columns
              and "state" in table.columns):
            written.append(plot_search_progress(table, out_dir / f"{name}_progress.png",
                                                objective=run["objective"]))
            target = "user_attrs_val_acc"
            if target in table.columns:
                for proxy in _proxy_columns(table):
                    short = proxy.removeprefix("user_attrs_proxy_")
                    written.append(plot_proxy_vs_accuracy(
                        table, proxy, target, out_dir / f"{name}_{short}_vs_acc.png"))
    return written


@command("python -m scaling.analysis", errors=(ValueError,))
def main(argv: list[str]) -> int:
    """Draw every figure whose table exists under RESULTS_DIR; print the files written."""
    parser = Parser("python -m scaling.analysis", description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", type=Path,
                        help="folder searched recursively for result tables (CSV)")
    parser.add_argument("--out", type=Path, default=Path("results/figures"),
                        help="folder of the figures (created)")
    args = parser.parse_args(argv)
    if not args.results_dir.is_dir():
        fail(f"results_dir {str(args.results_dir)!r} is not a folder")
    written = analyse(args.results_dir, args.out)
    for path in written:
        print(path)
    if not written:
        print(f"no known result tables under {args.results_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
