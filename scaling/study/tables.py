"""Result tables with pandas: the accuracy column of a table, mean +- std over seeds, the Pareto
front of accuracy vs MACs, and rank correlations of zero-cost proxies with trained accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

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
