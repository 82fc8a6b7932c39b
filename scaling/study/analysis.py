"""Tables and figures for scaling studies: accuracy vs MACs, Pareto fronts, scaling curves,
search progress, and zero-cost proxies vs accuracy.

Tables are pandas DataFrames with these columns (extra columns are kept):

- runs (one row per trained model and seed): ``family``, ``macs``, an accuracy column
  (``test_acc`` or ``val_acc``, in [0, 1]), optionally ``seed``, ``phi``, ``params``, ``model``.
- trials (Optuna's ``study.trials_dataframe()``): ``number``, ``state``, ``value`` or
  ``values_0``... (or named: ``value_reward``, ``values_synflow``), and user attributes
  ``user_attrs_<name>`` (``macs``, ``val_acc``, proxies).

``python -m scaling.analysis RESULTS_DIR --out results/figures/`` draws every figure whose table
it finds under RESULTS_DIR: ``**/*runs*.csv`` / ``**/compare*.csv`` (accuracy vs MACs),
``**/scale*.csv`` (scaling curves), and every search's trials CSV, under any name or ``--out``
folder, found by its columns (search progress, proxy correlations).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from scaling.cli import Parser, check_writable, command, fail, one_line
from scaling.study.tables import (  # noqa: F401  (the tables' API, reachable here as before)
    ACCURACY_COLUMNS,
    accuracy_column,
    load_table,
    pareto_front,
    rank_correlations,
    summarize_runs,
)


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
    """Draw every figure whose table exists under ``results_dir``; returns the files written.
    A table that cannot be drawn is a ValueError naming its file."""
    written: list[Path] = []
    tables = sorted(results_dir.rglob("*.csv"))
    stems = Counter(csv.stem for csv in tables)
    for csv in tables:
        # two tables of one name (full/search/search.csv, medium/search/search.csv) get their
        # folders in the figure's name, so neither overwrites the other
        name = csv.stem if stems[csv.stem] == 1 else \
            "-".join(csv.relative_to(results_dir).with_suffix("").parts)
        try:
            written += _figures_of(csv, out_dir, name)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{csv}: {one_line(exc)}") from None
    return written


def is_trials_table(table: pd.DataFrame) -> bool:
    """Whether ``table`` is a search's trials (Optuna's ``trials_dataframe()``): a ``number``,
    a ``state`` and an objective column, whatever the file or its folder is called."""
    from scaling.study.figures import value_columns

    return {"number", "state"} <= set(table.columns) and bool(value_columns(table))


def _figures_of(csv: Path, out_dir: Path, name: str) -> list[Path]:
    """The figures of one table, by its file name and columns (none for a table of another
    kind); ``name`` starts each figure's file name."""
    from scaling.study.figures import (
        describe_run,
        plot_accuracy_vs_macs,
        plot_proxy_vs_accuracy,
        plot_scaling_curves,
        plot_search_progress,
    )

    table = load_table(csv)
    run = describe_run(csv)  # protocol / objective from the records beside the table
    if (csv.stem.startswith("compare") or "runs" in csv.stem) and "family" in table.columns:
        return [plot_accuracy_vs_macs(table, out_dir / f"{name}_acc_vs_macs.png",
                                      protocol=run["protocol"])]
    if csv.stem.startswith("scale") and "phi" in table.columns:
        return [plot_scaling_curves(table, out_dir / f"{name}_curves.png",
                                    protocol=run["protocol"])]
    if not is_trials_table(table):
        return []
    written = [plot_search_progress(table, out_dir / f"{name}_progress.png",
                                    objective=run["objective"])]
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
    check_writable("--out", args.out, folder=True)
    written = analyse(args.results_dir, args.out)
    for path in written:
        print(path)
    if not written:  # nothing to draw is the user's mistake (a wrong folder), not a success
        fail(f"no known result tables under {args.results_dir} (expected *compare*.csv, "
             "*runs*.csv, scale*.csv or a search's trials CSV)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
