"""Figures of scaling studies; each says what it shows (split, units, protocol, error bars).

Each ``figure_*`` returns a matplotlib :class:`~matplotlib.figure.Figure` (no pyplot state, so
tests can inspect axes, labels and titles); each ``plot_*`` draws the same figure into a PNG
(written atomically) and returns its path. Tables are those of :mod:`scaling.study.analysis`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.cli import count_of
from scaling.study.tables import accuracy_column, pareto_front, rank_correlations, summarize_runs

__all__ = ["MIN_CORRELATION_N", "PROXY_NAMES", "accuracy_label", "describe_run",
           "figure_accuracy_vs_macs", "figure_proxy_vs_accuracy", "figure_scaling_curves",
           "figure_search_progress", "fit_band", "objective_text", "plot_accuracy_vs_macs",
           "plot_proxy_vs_accuracy", "plot_scaling_curves", "plot_search_progress",
           "protocol_text", "trial_scores", "value_columns"]

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", "-.", ":")
SPLITS = {"test_acc": "test", "val_acc": "validation", "accuracy": "held-out"}
PROXY_NAMES = {"synflow": "SynFlow, log score (Tanaka et al. 2020)",
               "naswot": "NASWOT, log|det K| (Mellor et al. 2021)",
               "grad_norm": "gradient norm at initialisation (Abdelfattah et al. 2021)",
               "params": "parameter count"}
MIN_CORRELATION_N = 10  # below this a rank correlation is flagged on the plot as unreliable


def _figure(width: float = 6.4, height: float = 4.4, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=ncols == 1)
    return fig, axes


def _save(fig, path: str | Path) -> Path:
    import io

    from scaling.files import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def accuracy_label(column: str) -> str:
    """Axis label of an accuracy column: which split, top-1, percent."""
    split = SPLITS.get(column.removeprefix("user_attrs_"), column)
    return f"{split} top-1 accuracy (%)"


def protocol_text(df: pd.DataFrame, protocol: str | None = None) -> str:
    """``protocol`` if given, else the table's ``protocol`` key(s) and ``device`` column."""
    if protocol:
        return protocol
    parts = []
    for col, name in (("protocol", "protocol"), ("device", "device")):
        if col in df.columns:
            values = sorted({str(v) for v in df[col].dropna()})
            if values:
                parts.append(f"{name} {', '.join(values)}")
    return "; ".join(parts) or "protocol not recorded"


def describe_run(csv_path: str | Path) -> dict[str, str | None]:
    """The protocol and search objective recorded beside a results table, for figure titles.

    Reads ``<stem>.provenance.json`` (``preset``, ``protocol``) and ``<stem>.json`` (a search's
    ``protocol`` and ``search.objective``); missing or unreadable records give None.
    """
    csv_path = Path(csv_path)
    record: dict[str, Any] = {}
    for suffix in (".json", ".provenance.json"):
        try:
            record.update(json.loads(csv_path.with_name(csv_path.stem + suffix).read_text()))
        except (OSError, ValueError):
            continue
    proto = record.get("protocol") if isinstance(record.get("protocol"), dict) else {}
    text = None
    if proto:
        head = " ".join(str(v) for v in (record.get("preset") and f"{record['preset']} preset",
                                          proto.get("key") and f"protocol {proto['key']}") if v)
        data = record.get("dataset", proto.get("dataset", ""))
        res = record.get("resolution", proto.get("resolution"))
        text = (f"{head + ': ' if head else ''}{data}{f' {res}x{res}' if res else ''}, "
                f"{proto.get('subset')} train / {proto.get('val_size')} validation images, "
                f"{count_of(proto.get('epochs'), 'epoch')}, {proto.get('optimizer')} "
                f"lr {proto.get('lr')}")
        if proto.get("test_size"):
            text += f", test = first {proto['test_size']} test images"
    search = record.get("search") if isinstance(record.get("search"), dict) else {}
    return {"protocol": text, "objective": search.get("objective")}


def _plain_log_axis(axis) -> None:
    """Log-scale tick labels as plain numbers (3, 10, 30), not 3x10^0."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    axis.set_minor_formatter(fmt)


def _wrap(text: str, width: int = 100) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _seeds_text(counts: pd.Series) -> str:
    lo, hi = int(counts.min()), int(counts.max())
    if hi == 1:
        return "one seed per point: no error bars"
    n = str(lo) if lo == hi else f"{lo}-{hi}"
    return f"error bars: mean ± std over {n} seeds{'; none at one seed' if lo == 1 else ''}"


def figure_accuracy_vs_macs(runs: pd.DataFrame, title: str | None = None,
                            protocol: str | None = None):
    """One line per family (mean over seeds, std error bars), log MACs axis, front marked.

    Families are told apart by colour, marker and line style, and each family's points are
    shifted by a small constant factor in MACs (at most ±3%) so coinciding models stay visible.
    """
    summary = summarize_runs(runs)
    acc = accuracy_column(runs)
    fig, ax = _figure(8.6, 5.0)
    families = list(dict.fromkeys(summary["family"]))
    for i, family in enumerate(families):
        grp = summary[summary["family"] == family].sort_values("macs")
        shift = 10 ** (0.025 * (i - (len(families) - 1) / 2) / max(len(families) - 1, 1))
        bars = (grp["acc_std"] * 100).where(grp["n_seeds"] > 1)  # one seed: no std, no bar
        ax.errorbar(grp["macs"] / 1e6 * shift, grp["acc_mean"] * 100,
                    yerr=None if bars.isna().all() else bars,
                    marker=MARKERS[i % len(MARKERS)], ls=LINESTYLES[i % len(LINESTYLES)],
                    ms=5, mfc="none" if i % 2 else None, capsize=3, lw=1.2, label=str(family))
    front = pareto_front(summary, score="acc_mean")
    ax.plot(front["macs"] / 1e6, front["acc_mean"] * 100, ls="--", color="black", lw=1,
            alpha=0.6, label="Pareto front (of the means)")
    ax.set_xscale("log")
    _plain_log_axis(ax.xaxis)
    ax.set_xlabel("MACs, millions (conv + linear multiply-adds, log scale)")
    ax.set_ylabel(accuracy_label(acc))
    split = SPLITS.get(acc, acc)
    note = (f"{protocol_text(runs, protocol)}; {_seeds_text(summary['n_seeds'])}; "
            "points shifted ≤3% in MACs per family")
    ax.set_title(f"{title or split.capitalize() + ' accuracy vs MACs'}\n{_wrap(note)}",
                 fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
              title="family (mean ± std)" if summary["n_seeds"].max() > 1 else "family",
              title_fontsize=7)
    return fig


def fit_band(ax, fit, macs_lo: float, macs_hi: float, color: Any = None, scale: float = 100.0,
             label: str | None = None) -> None:
    """Draw a line fitted on log2(MACs) (:class:`scaling.study.stats.Slope`) from ``macs_lo``
    to ``macs_hi`` with its pointwise confidence band of the mean; x in millions of MACs,
    y times ``scale`` (accuracy in %)."""
    import numpy as np

    x = np.linspace(np.log2(macs_lo), np.log2(macs_hi), 50)
    line, lo, hi = fit.band(x)
    ax.fill_between(2 ** x / 1e6, scale * lo, scale * hi, color=color, alpha=0.18, lw=0)
    ax.plot(2 ** x / 1e6, scale * line, color=color, lw=1.2, label=label)


def plot_accuracy_vs_macs(runs: pd.DataFrame, path: str | Path, title: str | None = None,
                          protocol: str | None = None) -> Path:
    return _save(figure_accuracy_vs_macs(runs, title, protocol), path)


def _rule_label(name: object, grp: pd.DataFrame) -> str:
    coeffs = [(c, s) for c, s in (("alpha", "α"), ("beta", "β"), ("gamma", "γ"))
              if c in grp.columns and grp[c].nunique() == 1]
    if len(coeffs) < 3:
        return str(name)
    return f"{name} (" + ", ".join(f"{s}={grp[c].iloc[0]:g}" for c, s in coeffs) + ")"


def figure_scaling_curves(scaled: pd.DataFrame, group: str = "rule",
                          protocol: str | None = None):
    """Accuracy, MACs and params against the (integer) compound coefficient phi, per rule."""
    from matplotlib.ticker import FixedLocator

    if "phi" not in scaled.columns:
        raise ValueError("plot_scaling_curves needs a 'phi' column")
    acc = accuracy_column(scaled)
    groups = list(scaled.groupby(group, sort=False)) if group in scaled.columns else [("", scaled)]
    metrics = [(acc, accuracy_label(acc), 100.0), ("macs", "MACs, millions (log scale)", 1e-6)]
    if "params" in scaled.columns:
        metrics.append(("params", "parameters, millions (log scale)", 1e-6))
    fig, axes = _figure(4.2 * len(metrics), 4.0, ncols=len(metrics))
    axes = list(axes[0])
    phis = sorted(pd.to_numeric(scaled["phi"]).unique())
    counts = scaled.groupby([*([group] if group in scaled.columns else []), "phi"])[acc].count()
    for i, (name, grp) in enumerate(groups):
        agg = grp.groupby("phi")[[m for m, _, _ in metrics]].agg(["mean", "std"]).fillna(0.0)
        shift = 0.06 * (i - (len(groups) - 1) / 2)  # keep coinciding error bars apart
        for ax, (col, label, k) in zip(axes, metrics, strict=True):
            ax.errorbar(agg.index + shift, agg[(col, "mean")] * k,
                        yerr=agg[(col, "std")] * k if col == acc else None,
                        marker=MARKERS[i % len(MARKERS)], ls=LINESTYLES[i % len(LINESTYLES)],
                        mfc="none" if i % 2 else None, capsize=3,
                        label=_rule_label(name, grp) or None)
            ax.set_xlabel("compound coefficient φ")
            ax.xaxis.set_major_locator(FixedLocator(phis))
            ax.set_ylabel(label)
            ax.set_title(label.split(",")[0].split(" (")[0], fontsize=9)
            if col != acc:
                ax.set_yscale("log")
                _plain_log_axis(ax.yaxis)
            ax.grid(True, alpha=0.3)
    if group in scaled.columns:
        axes[0].legend(fontsize=7, title="scaling rule", title_fontsize=7)
    note = (f"{protocol_text(scaled, protocol)}; {_seeds_text(counts)} "
            "(MACs and parameters are exact counts)")
    fig.suptitle(f"Compound scaling, φ = {phis[0]:g}..{phis[-1]:g}: {SPLITS.get(acc, acc)} "
                 f"accuracy, MACs and parameters\n{_wrap(note, 150)}", fontsize=9)
    return fig


def plot_scaling_curves(scaled: pd.DataFrame, path: str | Path, group: str = "rule",
                        protocol: str | None = None) -> Path:
    return _save(figure_scaling_curves(scaled, group, protocol), path)


def value_columns(trials: pd.DataFrame) -> list[str]:
    """The objective columns of Optuna's ``trials_dataframe()``, in order: ``value`` /
    ``values_0``..., or with metric names (``study.set_metric_names``) ``value_reward``,
    ``values_synflow``, ``values_macs``."""
    return [c for c in trials.columns if c == "value" or c.startswith(("value_", "values_"))]


def trial_scores(trials: pd.DataFrame) -> pd.Series:
    """The first objective of every trial (a Pareto search's first: accuracy or a proxy)."""
    columns = value_columns(trials)
    if not columns:
        raise ValueError("trials table has no objective column; expected 'value', 'values_0' "
                         f"or Optuna's named 'value_<metric>', got columns {list(trials.columns)}")
    return pd.to_numeric(trials[columns[0]], errors="coerce")


def objective_text(trials: pd.DataFrame, objective: str | None = None) -> str:
    """What a search's objective value is: given by name, or inferred from the trials table."""
    budget = None
    if "user_attrs_budget" in trials.columns and trials["user_attrs_budget"].notna().any():
        budget = float(trials["user_attrs_budget"].dropna().iloc[0])
    named = [c.split("_", 1)[1] for c in value_columns(trials) if "_" in c and c != "values_0"]
    if objective is None and len(value_columns(trials)) > 1:
        return (f"{named[0] if named else 'the first objective'}, the first of a Pareto search's "
                f"objectives ({', '.join(named) or 'values_0, values_1, ...'})")
    if objective is None and named and named[0] != "reward":
        objective = named[0].replace("_", " ")
    if objective is None and "user_attrs_val_acc" in trials.columns:
        done = trials[trials.get("state", "COMPLETE") == "COMPLETE"]
        acc = pd.to_numeric(done["user_attrs_val_acc"], errors="coerce")
        same = (trial_scores(done) - acc).abs().max() < 1e-12
        objective = "accuracy" if same else "reward" if budget else None
    if objective == "reward":
        target = f"{budget / 1e6:g}M MACs (the budget)" if budget else "the MAC budget"
        return f"MnasNet reward ACC·(MACs/T)^-0.07, ACC = val. top-1, T = {target}"
    if objective == "accuracy":
        return "validation top-1 accuracy (fraction)"
    return objective or "objective value (not recorded)"


def _feasible(trials: pd.DataFrame) -> pd.Series:
    if "user_attrs_feasible" in trials.columns:
        return trials["user_attrs_feasible"].map(lambda v: str(v).lower() != "false")
    if "user_attrs_macs_over_budget" in trials.columns:
        return ~(pd.to_numeric(trials["user_attrs_macs_over_budget"], errors="coerce") > 0)
    return pd.Series(True, index=trials.index)


def figure_search_progress(trials: pd.DataFrame, objective: str | None = None):
    """Every trial's objective value against the trial number: complete, pruned (value at the
    last reported epoch) and over-budget (penalty value) with their own markers; best so far
    over complete feasible trials."""
    trials = trials.sort_values("number")
    state = trials["state"] if "state" in trials.columns else pd.Series("COMPLETE", trials.index)
    feasible = _feasible(trials)
    score = trial_scores(trials)
    kinds = [("complete", (state == "COMPLETE") & feasible, "o", "C0"),
             ("pruned (last reported value)", state == "PRUNED", "x", "0.45"),
             ("over budget (penalty value)", ~feasible, "v", "C3"),
             ("failed", state == "FAIL", "*", "k")]
    fig, ax = _figure(7.2, 4.4)
    for label, mask, marker, color in kinds:
        if mask.any():
            ax.scatter(trials["number"][mask], score[mask].fillna(0.0), s=18, marker=marker,
                       color=color, alpha=0.8, label=f"{label}: {int(mask.sum())}")
    good = (state == "COMPLETE") & feasible
    best = score.where(good).cummax().ffill()
    ax.step(trials["number"], best, where="post", color="C2", lw=1.5, label="best so far")
    ax.set_xlabel("trial number")
    ax.set_ylabel("objective value (higher is better)")
    ax.set_title(f"Search progress, {len(trials)} trials\nobjective: "
                 f"{objective_text(trials, objective)}", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def plot_search_progress(trials: pd.DataFrame, path: str | Path,
                         objective: str | None = None) -> Path:
    return _save(figure_search_progress(trials, objective), path)


def proxy_label(column: str) -> str:
    short = column.removeprefix("user_attrs_").removeprefix("proxy_")
    return PROXY_NAMES.get(short, short.replace("_", " "))


def figure_proxy_vs_accuracy(df: pd.DataFrame, proxy: str, target: str):
    """Scatter of a zero-cost proxy against accuracy, titled with its rank correlations; a
    warning on the plot when fewer than MIN_CORRELATION_N trials back them."""
    corr = rank_correlations(df, [proxy], target)
    y = pd.to_numeric(df[target], errors="coerce")
    scale = 100.0 if y.dropna().between(0, 1).all() else 1.0
    fig, ax = _figure(5.2, 4.2)
    ax.scatter(pd.to_numeric(df[proxy], errors="coerce"), y * scale, s=14, alpha=0.7)
    ax.set_xlabel(proxy_label(proxy))
    short = target.removeprefix("user_attrs_")
    ax.set_ylabel(accuracy_label(short) if scale == 100.0 else short.replace("_", " "))
    name = proxy_label(proxy).split(",")[0].split(" (")[0]
    n = int(corr.iloc[0].n) if len(corr) else int(y.notna().sum())
    title = f"{name} vs accuracy (trained trials)\n"
    if len(corr):
        row = corr.iloc[0]
        title += f"Spearman ρ = {row.spearman:.2f}, Kendall τ = {row.kendall:.2f}, n = {n}"
    else:
        title += f"n = {n}: too few for a rank correlation"
    if n < MIN_CORRELATION_N:
        title += f"\nwarning: n = {n} < {MIN_CORRELATION_N} trials, not a reliable estimate"
    ax.set_title(title, fontsize=9, color="C3" if n < MIN_CORRELATION_N else "black")
    ax.grid(True, alpha=0.3)
    return fig


def plot_proxy_vs_accuracy(df: pd.DataFrame, proxy: str, target: str,
                           path: str | Path) -> Path:
    return _save(figure_proxy_vs_accuracy(df, proxy, target), path)
