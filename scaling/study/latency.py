"""A study's families in time: mean accuracy beside measured whole-model latency (issue 31).

MACs are what the package counts, not what a user waits for: at equal MACs, depthwise and
channel-shuffle families run at a fraction of a dense net's MACs per second on a CPU, which is
why MnasNet (Tan et al. 2019) searched on measured latency. Here each model of a family
comparison is timed whole, deployed (:func:`scaling.latency.profile.model_runs`), every (model,
batch) in one interleaved pass (:func:`scaling.latency.profile.sample_modules`); the summary is
the median and the interquartile range of its samples. :func:`per_mac` ranks families by time per
MAC at one point; :func:`figure_accuracy_vs_latency` draws one panel per batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.ir import NetworkSpec

__all__ = ["accuracy_by_model", "figure_accuracy_vs_latency", "measure_latency", "per_mac",
           "plot_accuracy_vs_latency"]


def accuracy_by_model(runs: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """One row per (family, method, ratio, model, spec_key) of ``runs`` (one row per run), in
    their first order: macs, params, ``acc_mean``, ``acc_std`` (NaN at one seed), ``n_seeds``."""
    need = ["family", "method", "ratio", "model", "spec_key", "macs", "params", "seed", column]
    if missing := [c for c in need if c not in runs.columns]:
        raise ValueError(f"runs lack the column(s) {missing}; expected a family table with "
                         f"{need}")
    ok = runs[runs[column].notna()]
    keys = ["family", "method", "ratio", "model", "spec_key"]
    return (ok.groupby(keys, sort=False)
            .agg(macs=("macs", "first"), params=("params", "first"),
                 acc_mean=(column, "mean"), acc_std=(column, "std"), n_seeds=("seed", "nunique"))
            .reset_index())


def measure_latency(specs: Sequence[NetworkSpec], batches: Sequence[int] = (1, 32),
                    threads: int = 1, **timing: Any) -> pd.DataFrame:
    """Whole deployed ``specs`` timed on this CPU in float32, all (model, batch) interleaved:
    one row per (spec index ``model_index``, ``batch``) with ``latency_ms`` (median of samples,
    ms per call of ``batch`` images), ``iqr_ms`` and ``repeats`` (samples). ``timing``: the
    options of :func:`~scaling.latency.profile.sample_modules` (rounds, repeats, warmup, min_ms).
    """
    from scaling.latency.profile import check_options, model_runs, sample_modules

    if not specs:
        raise ValueError("measure_latency: no specs to measure")
    for b in batches:
        check_options("cpu", threads, b, "float32")
    samples = sample_modules(model_runs(specs, "cpu", batches), "cpu", threads, **timing)
    rows = []
    for k, s in enumerate(samples):
        q = pd.Series(s).quantile([0.25, 0.5, 0.75])
        rows.append({"model_index": k % len(specs), "batch": batches[k // len(specs)],
                     "latency_ms": float(q[0.5]), "iqr_ms": float(q[0.75] - q[0.25]),
                     "repeats": len(s)})
    return pd.DataFrame(rows)


def per_mac(table: pd.DataFrame, ratio: float = 1) -> pd.DataFrame:
    """Time per MAC at ``ratio`` (the base point): per family and batch, ``ns_per_mac`` = latency
    / (MACs x batch) and ``x_fastest`` (its multiple of the fastest family at that batch); ranked
    slowest first at the smallest batch (cheap in MACs, slow in time, at the top)."""
    base = table[table["ratio"] == ratio].copy()
    if base.empty:
        raise ValueError(f"per_mac: no model at ratio={ratio!r}; ratios present: "
                         f"{sorted(table['ratio'].unique().tolist())}")
    base["ns_per_mac"] = base["latency_ms"] * 1e6 / (base["macs"] * base["batch"])
    base["x_fastest"] = base["ns_per_mac"] / base.groupby("batch")["ns_per_mac"].transform("min")
    wide = base.pivot_table(index=["family", "model", "macs"], columns="batch",
                            values=["latency_ms", "ns_per_mac", "x_fastest"])
    wide.columns = [f"{name}_b{batch}" for name, batch in wide.columns]
    first = f"ns_per_mac_b{int(base['batch'].min())}"
    return wide.reset_index().sort_values(first, ascending=False, ignore_index=True)


def _few_minor(value: float, pos: Any = None) -> str:
    """A minor log-tick label at 2, 3 and 5 x 10^k only, as a plain number."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)), 6)
    return f"{value:g}" if lead in (2, 3, 5) else ""


def figure_accuracy_vs_latency(table: pd.DataFrame, families: Sequence[str] | None = None,
                               subtitle: str = ""):
    """One panel per batch: mean accuracy vs measured latency, a line through each family's
    points in MACs order, error bars of the seeds' std, log latency axis. ``families`` fixes
    each family's colour ``C{i}`` (the study's family figure's) and marker by its index."""
    from scaling.study.figures import MARKERS, _figure, _plain_log_axis, _wrap

    order = list(families) if families is not None else list(dict.fromkeys(table["family"]))
    batches = sorted(int(b) for b in table["batch"].unique())
    fig, axes = _figure(6.0 * len(batches), 4.8, ncols=len(batches))
    panels = [axes] if len(batches) == 1 else list(axes[0])
    for ax, batch in zip(panels, batches):
        rows = table[table["batch"] == batch]
        for family, grp in rows.groupby("family", sort=False):
            i = order.index(family) if family in order else len(order)
            grp = grp.sort_values("macs")
            bars = (grp["acc_std"] * 100).where(grp["n_seeds"] > 1)
            ax.errorbar(grp["latency_ms"], grp["acc_mean"] * 100,
                        yerr=None if bars.isna().all() else bars, color=f"C{i % 10}",
                        marker=MARKERS[i % len(MARKERS)], ms=5, capsize=3, lw=1.2,
                        label=str(family))
        ax.set_xscale("log")
        _plain_log_axis(ax.xaxis)
        ax.xaxis.set_minor_formatter(_few_minor)  # 2, 3, 5 x 10^k: labels that do not collide
        ax.set_xlabel(f"measured latency, ms per call of {batch} image{'s' * (batch > 1)} "
                      "(median; log scale)")
        ax.set_ylabel("test top-1 (%), mean ± std over seeds")
        ax.set_title(f"batch {batch}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    panels[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5),
                      title="family (line in MACs order)", title_fontsize=7)
    fig.suptitle(_wrap(f"Test accuracy vs measured latency{': ' + subtitle if subtitle else ''}",
                       140), fontsize=9)
    return fig


def plot_accuracy_vs_latency(table: pd.DataFrame, path: str | Path,
                             families: Sequence[str] | None = None, subtitle: str = "") -> Path:
    """:func:`figure_accuracy_vs_latency` into a PNG at ``path`` (written atomically)."""
    from scaling.study.figures import _save

    return _save(figure_accuracy_vs_latency(table, families, subtitle), path)
