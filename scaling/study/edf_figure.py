"""The error EDF of a design space's random members beside reference nets (Radosavovic et al.
2019, Fig. 2 ff.): a step curve, one line per reference family at its mean error, a band over the
span of its seeds (so a margin smaller than the seed spread is seen as such)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scaling.cli import count_of
from scaling.study.figures import _figure, _save, _wrap

__all__ = ["figure_edf", "plot_edf"]

COLORS = ("C0", "C3", "C2", "C1", "C4", "C5")


def figure_edf(table: pd.DataFrame, references: pd.DataFrame, n: int, subtitle: str = ""):
    """``table``: :func:`scaling.search.edf.edf` of the members' validation errors (``value``,
    ``fraction``); ``references``: one row per (``family``, seed) with ``val_acc``; ``n``: the
    members. Returns the Figure."""
    fig, ax = _figure()
    if len(table):
        x = [table["value"].iloc[0], *table["value"]]
        ax.step(x, [0.0, *table["fraction"]], where="post", color="k",
                label=f"{n} random members (1 seed each)")
    for (family, grp), color in zip(references.groupby("family", sort=False), COLORS):
        err = 1 - grp["val_acc"]
        label = f"{family}: mean of {count_of(len(err), 'seed')}"
        ax.axvline(err.mean(), color=color, label=label)
        ax.axvspan(err.min(), err.max(), color=color, alpha=0.15)
    ax.set_xlabel("validation error (top-1)")
    ax.set_ylabel("fraction of members with error <= x (EDF)")
    ax.set_ylim(0, 1)
    title = "Random members of the search space"
    ax.set_title(f"{title}\n{_wrap(subtitle, 90)}" if subtitle else title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_edf(table: pd.DataFrame, references: pd.DataFrame, n: int, path: str | Path,
             subtitle: str = "") -> Path:
    """:func:`figure_edf` written atomically as a PNG at ``path``."""
    return _save(figure_edf(table, references, n, subtitle), path)
