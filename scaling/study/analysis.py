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

import argparse
import sys
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


# -- figures -------------------------------------------------------------------------------------
def _figure(width: float = 6.4, height: float = 4.4, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height), dpi=120, squeeze=ncols == 1)


def _save(fig, path: str | Path) -> Path:
    import io

    from scaling.study.provenance import atomic_write_bytes

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def plot_accuracy_vs_macs(runs: pd.DataFrame, path: str | Path,
                          title: str = "Accuracy vs MACs") -> Path:
    """One line per family (mean over seeds, std error bars), log MACs axis, front marked."""
    summary = summarize_runs(runs)
    fig, ax = _figure()
    for family, grp in summary.groupby("family", sort=False):
        grp = grp.sort_values("macs")
        ax.errorbar(grp["macs"], grp["acc_mean"] * 100, yerr=grp["acc_std"] * 100, marker="o",
                    ms=4, capsize=3, lw=1.2, label=str(family))
    front = pareto_front(summary, score="acc_mean")
    ax.plot(front["macs"], front["acc_mean"] * 100, ls="--", color="black", lw=1, alpha=0.6,
            label="Pareto front")
    ax.scatter(front["macs"], front["acc_mean"] * 100, s=70, facecolors="none",
               edgecolors="black", zorder=3)
    ax.set_xscale("log")
    ax.set_xlabel("MACs (conv + linear multiply-adds)")
    ax.set_ylabel(f"{accuracy_column(runs).replace('_', ' ')} (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_scaling_curves(scaled: pd.DataFrame, path: str | Path, group: str = "rule") -> Path:
    """Accuracy, MACs and params against phi, one line per scaling rule."""
    if "phi" not in scaled.columns:
        raise ValueError("plot_scaling_curves needs a 'phi' column")
    acc = accuracy_column(scaled)
    groups = scaled.groupby(group, sort=False) if group in scaled.columns else [("", scaled)]
    metrics = [(acc, "accuracy (%)", 100.0), ("macs", "MACs", 1.0)]
    if "params" in scaled.columns:
        metrics.append(("params", "params", 1.0))
    fig, axes = _figure(4.0 * len(metrics), 3.6, ncols=len(metrics))
    axes = list(axes[0])
    for name, grp in groups:
        agg = grp.groupby("phi")[[m for m, _, _ in metrics]].agg(["mean", "std"]).fillna(0.0)
        for ax, (col, label, k) in zip(axes, metrics, strict=True):
            ax.errorbar(agg.index, agg[(col, "mean")] * k, yerr=agg[(col, "std")] * k, marker="o",
                        capsize=3, label=str(name) or None)
            ax.set_xlabel("phi")
            ax.set_ylabel(label)
            if col != acc:
                ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    if group in scaled.columns:
        axes[0].legend(fontsize=7)
    return _save(fig, path)


def trial_scores(trials: pd.DataFrame) -> pd.Series:
    for col in ("value", "values_0"):
        if col in trials.columns:
            return pd.to_numeric(trials[col], errors="coerce")
    raise ValueError("trials table has no 'value' or 'values_0' column")


def plot_search_progress(trials: pd.DataFrame, path: str | Path) -> Path:
    """Each completed trial's score and the best so far, against the trial number."""
    done = trials[trials["state"] == "COMPLETE"] if "state" in trials.columns else trials
    done = done.sort_values("number")
    score = trial_scores(done)
    fig, ax = _figure()
    ax.scatter(done["number"], score, s=12, alpha=0.6, label="trial")
    ax.plot(done["number"], score.cummax(), color="C3", lw=1.5, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_proxy_vs_accuracy(df: pd.DataFrame, proxy: str, target: str,
                           path: str | Path) -> Path:
    """Scatter of a zero-cost proxy against accuracy, titled with its rank correlations."""
    corr = rank_correlations(df, [proxy], target)
    fig, ax = _figure(4.8, 4.0)
    ax.scatter(pd.to_numeric(df[proxy], errors="coerce"), df[target], s=14, alpha=0.7)
    ax.set_xlabel(proxy)
    ax.set_ylabel(target)
    if len(corr):
        row = corr.iloc[0]
        ax.set_title(f"Spearman {row.spearman:.2f}, Kendall {row.kendall:.2f} (n={row.n})")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


# -- CLI -----------------------------------------------------------------------------------------
def _proxy_columns(trials: pd.DataFrame) -> list[str]:
    return [c for c in trials.columns if c.startswith("user_attrs_proxy_")]


def analyse(results_dir: Path, out_dir: Path) -> list[Path]:
    """Draw every figure whose table exists under ``results_dir``; returns the files written."""
    written: list[Path] = []
    for csv in sorted(results_dir.rglob("*.csv")):
        name = csv.stem
        table = load_table(csv)
        if (name.startswith("compare") or "runs" in name) and "family" in table.columns:
            written.append(plot_accuracy_vs_macs(table, out_dir / f"{name}_acc_vs_macs.png"))
        elif name.startswith("scale") and "phi" in table.columns:
            written.append(plot_scaling_curves(table, out_dir / f"{name}_curves.png"))
        elif (("trials" in name or csv.parent.name == "search") and "number" in table.columns
              and "state" in table.columns):
            written.append(plot_search_progress(table, out_dir / f"{name}_progress.png"))
            target = "user_attrs_val_acc"
            if target in table.columns:
                for proxy in _proxy_columns(table):
                    short = proxy.removeprefix("user_attrs_proxy_")
                    written.append(plot_proxy_vs_accuracy(
                        table, proxy, target, out_dir / f"{name}_{short}_vs_acc.png"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaling.analysis", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--out", type=Path, default=Path("results/figures"))
    args = parser.parse_args(argv)
    if not args.results_dir.is_dir():
        print(f"error: results_dir {str(args.results_dir)!r} is not a folder", file=sys.stderr)
        return 2
    try:
        written = analyse(args.results_dir, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    if not written:
        print(f"no known result tables under {args.results_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
