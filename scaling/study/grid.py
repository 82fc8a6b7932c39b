"""The study's compound grid (step 1 of compound scaling at phi = 1 on the searched baseline):
which candidates are confirmed with every seed, their runs ranked for the pick, and what
``--plan-only`` says before the grid is trained.

With one seed a candidate, two grid runs differ only past about 1.3 points of validation top-1
on the medium protocol (``results/medium``), while the leading rules lie within a few tenths;
so the best ``grid.confirm`` distinct realised models by the first seed are retrained with every
seed of the protocol and the winner is the best mean (Tan & Le 2019, sec. 3.3, pick alpha, beta,
gamma by a small grid search; the seeds are ours).

``grid.prefer`` names a default rule (``width``: alpha = gamma = 1, the rule of the hand-designed
families): its candidate is confirmed too, and a rule that does not lead it by more than
``grid.margin`` standard errors of the difference of means (the confirmed models' seed variance,
pooled) does not replace it, as the search's pick keeps an enqueued family unless beaten. With
three seeds a candidate, the medium grid's leading rules lie within a few tenths of a point.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.study.plan import StudyPreset, scales_only
from scaling.study.stats import Pooled, difference_of_means, pooled_variance
from scaling.study.store import RunStore, joined


def preferred_index(grid: list[dict[str, Any]], prefer: str | None) -> int | None:
    """The index of the grid's candidate that scales only the ``prefer`` dimension (the first
    such; None when ``prefer`` is None or no candidate does)."""
    if prefer is None:
        return None
    return next((i for i, e in enumerate(grid)
                 if scales_only((e["alpha"], e["beta"], e["gamma"]), prefer)), None)


def confirm_plan(grid: list[dict[str, Any]], preset: StudyPreset, store: RunStore
                 ) -> list[dict[str, Any]]:
    """The grid entries to train with every seed: those of the best ``grid_confirm`` distinct
    realised models by the first seed's validation top-1, and the ``grid_prefer`` rule's model
    beside them; none when that leaves one model (``grid_confirm`` 1 and the preferred rule
    first, or no preferred rule). Each entry is marked ``confirmed``."""
    proto = preset.protocol
    rows = joined(grid, proto.seeds[:1], store, proto.key())
    order = sorted(range(len(grid)), key=lambda i: (-rows[i]["val_acc"], rows[i]["macs"]))
    keys: list[str] = []
    for i in order:
        if rows[i]["spec_key"] not in keys and len(keys) < max(preset.grid_confirm, 1):
            keys.append(rows[i]["spec_key"])
    pref = preferred_index(grid, preset.grid_prefer)
    if pref is not None and rows[pref]["spec_key"] not in keys:
        keys.append(rows[pref]["spec_key"])
    if len(keys) < 2:
        keys = []
    for i, e in enumerate(grid):
        e["confirmed"] = rows[i]["spec_key"] in keys
    return [e for e in grid if e["confirmed"]]


def grid_table_rows(grid: list[dict[str, Any]], preset: StudyPreset, store: RunStore
                    ) -> list[dict[str, Any]]:
    """The grid's runs, one row per (entry, seed): a confirmed entry's every seed, another's
    first; best first by the entry's mean validation top-1 over its seeds (``val_mean``)."""
    proto = preset.protocol
    rows: list[dict[str, Any]] = []
    for e in grid:
        seeds = proto.seeds if e.get("confirmed") else proto.seeds[:1]
        mine = joined([e], seeds, store, proto.key())
        mean = sum(r["val_acc"] for r in mine) / len(mine)
        rows += [{**r, "val_mean": mean, "confirmed": bool(e.get("confirmed"))} for r in mine]
    rows.sort(key=lambda r: (not r["confirmed"], -r["val_mean"], r["macs"], r["seed"]))
    return rows


def grid_winner(rows: list[dict[str, Any]], grid: list[dict[str, Any]], preset: StudyPreset
                ) -> tuple[tuple[float, float, float], str]:
    """The grid's winner from :func:`grid_table_rows` (best first) and why: the best mean,
    unless ``grid_prefer`` names a rule that it leads by no more than ``grid_margin`` standard
    errors of the difference of the two means (the confirmed models' seed variance of
    validation top-1, pooled across them), in which case the preferred rule."""
    def coeffs(r: dict[str, Any]) -> tuple[float, float, float]:
        return (r["alpha"], r["beta"], r["gamma"])

    best = rows[0]
    pref = preferred_index(grid, preset.grid_prefer)
    if pref is None:
        return coeffs(best), "the best mean validation top-1"
    p = grid[pref]
    mine = [r for r in rows if coeffs(r) == (p["alpha"], p["beta"], p["gamma"])]
    if mine[0]["spec_key"] == best["spec_key"]:
        return coeffs(mine[0]), ("the best mean validation top-1 (the preferred "
                                 f"{preset.grid_prefer} rule)")
    confirmed = [r for r in rows if r["confirmed"]]
    seeds = {k: sum(r["spec_key"] == k for r in confirmed) for k in (best["spec_key"],
                                                                    mine[0]["spec_key"])}
    if min(seeds.values()) < 2:
        return coeffs(best), ("the best mean validation top-1 (no seed noise to judge the "
                              f"preferred {preset.grid_prefer} rule by)")
    noise = pooled_variance([r["val_acc"] for r in confirmed],
                            [r["spec_key"] for r in confirmed])
    se = (noise.var * sum(1 / n for n in seeds.values())) ** 0.5
    lead = best["val_mean"] - mine[0]["val_mean"]
    said = (f"{coeffs(best)} leads the preferred {preset.grid_prefer} rule {coeffs(mine[0])} by "
            f"{100 * lead:.2f} points of mean validation top-1, {lead / se:.2f} SE (SE "
            f"{100 * se:.2f}: the confirmed models' seed std {100 * noise.std:.2f}, {noise.df} "
            f"df), against a margin of {preset.grid_margin:g} SE")
    if lead > preset.grid_margin * se:
        return coeffs(best), said + ": it replaces the preferred rule"
    return coeffs(mine[0]), said + ": the preferred rule is kept"


def pending_plan(preset_name: str, grid: list[dict[str, Any]], missing: list[dict[str, Any]],
                 base: Any, key: str, runs: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """What ``--plan-only`` says before the grid is trained (a fresh clone, a changed protocol):
    the base point, the grid's candidates, and that the rest waits for them. Writes nothing."""
    log(f"base point: the searched net's width x{base.knob:.4g}, {base.macs:,} MACs")
    log(f"grid ({len(grid)} candidates; * = not yet trained under protocol {key}):")
    for e in grid:
        log(f"  {'*' if e in missing else ' '} alpha={e['alpha']:g} beta={e['beta']:g} "
            f"gamma={e['gamma']:g}  {e['macs']:,} MACs")
    log(f"pending: {len(missing)} of the grid's {len(grid)} runs are not in {runs}, so the grid "
        "winner, and with it the family and single-dimension plans, are not known yet; "
        f"plan.json is not written. Train the grid: python -m scaling.study run "
        f"{preset_name}{' (on a GPU)' if preset_name == 'full' else ''}")
    return {"plan": None, "pending": len(missing)}


def _coeffs(r: Any) -> str:
    return f"({r.alpha:g}, {r.beta:g}, {r.gamma:g})"


def _grid_models(grid: pd.DataFrame) -> pd.DataFrame:
    """One row per realised grid model in the grid's order (best first): its coefficients
    (candidates whose width refit lands on one spec share a row), mean validation top-1 over
    its seeds and their number."""
    rows = []
    for key, g in grid.groupby("spec_key", sort=False):
        r = g.iloc[0]
        coeffs = list(dict.fromkeys(_coeffs(c) for c in g.itertuples()))
        rows.append({"spec_key": key, "coeffs": " = ".join(coeffs), "w": r.w,
                     "resolution": r.resolution, "mac_ratio": r.mac_ratio, "refit": r.refit,
                     "val": g.val_acc.mean(), "n": g.seed.nunique()})
    return pd.DataFrame(rows)


def grid_table(grid: pd.DataFrame) -> list[str]:
    """One row per realised model (candidates whose width refit lands on one spec are one row),
    the winner first: validation top-1, the mean over its seeds."""
    out = ["| (alpha, beta, gamma) | width used | resolution | realised MAC ratio | width "
           "refitted | seeds | val top-1 (%) |", "|---|---:|---:|---:|---|---:|---:|"]
    for r in _grid_models(grid).itertuples():
        out.append(f"| {r.coeffs} | {r.w:.4g} | {r.resolution} | {r.mac_ratio:.3f} | "
                   f"{'yes' if r.refit else 'no'} | {r.n} | {100 * r.val:.2f} |")
    return out


def grid_verdict(grid: pd.DataFrame, val_noise: Pooled | None, prefer: str | None = None,
                 confirm: int = 1) -> str:
    """Whether the grid's best mean can be told from the runner-up (the best other realised
    model with as many seeds; with one seed each, the best other): the difference of their means
    against the family table's pooled seed variance of validation top-1 (a borrowed estimate).
    ``prefer``, ``confirm``: the preset's ``grid.prefer`` and ``grid.confirm`` (who was
    confirmed, and that the winner is then decided by :func:`grid_winner`)."""
    models = _grid_models(grid)
    head = f"{grid.drop_duplicates(['alpha', 'beta', 'gamma']).shape[0]} candidates, " \
           f"{len(models)} distinct realised models"
    if len(models) < 2:
        return head + ": nothing to tell apart."
    a = models.iloc[0]
    rivals = models.iloc[1:][models.n.iloc[1:] == a.n]
    if rivals.empty:
        return head + f"; the winner {a.coeffs} is the only model trained with {a.n} seeds."
    b = rivals.iloc[0]
    runs = "one seed each" if a.n == 1 else f"the mean of {a.n} seeds each"
    confirmed = int((models.n == a.n).sum()) if a.n > 1 else 0
    lead = "the winner"
    if confirmed and prefer:
        head += (f"; the best {confirm} by the first seed and the preferred {prefer}-only rule "
                 f"were trained with {a.n} seeds")
        lead = "the best mean"
    elif confirmed:
        head += (f"; the best {confirmed} by the first seed were trained with {a.n} seeds, and "
                 "the winner is the best mean")
    head += (f"; {lead} {a.coeffs} leads the runner-up {b.coeffs} by "
             f"{100 * (a.val - b.val):.2f} points of validation top-1 on {runs}")
    if val_noise is None:
        return head + ", with no seed-noise estimate: the grid cannot tell them apart."
    d = difference_of_means(a.val, 0.0, int(a.n), b.val, 0.0, int(b.n), val_noise)
    what = "two single runs" if a.n == 1 else f"two means of {a.n} seeds"
    return head + (f". {what.capitalize()} differ only past {100 * d.critical * d.se:.2f} "
                   f"points (t crit {d.critical:.2f} x SE {100 * d.se:.2f}; the seed std of "
                   f"validation top-1, {100 * val_noise.std:.2f}, pooled over the family "
                   f"table's {val_noise.cells} models, {val_noise.df} df), so "
                   + (f"{lead} is told from the runner-up." if d.significant else
                      f"the grid **cannot tell** {lead} from the runner-up: any of the "
                      "leading rules would do as well, as far as "
                      + ("one seed shows." if a.n == 1 else f"{a.n} seeds show.")))
