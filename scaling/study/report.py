"""Tables, figures and the README of a study run (:mod:`scaling.study.runner`).

Every claim the README makes is computed here from the tables by :mod:`scaling.study.stats`
(issue 30): seed variance pooled across the cells of a table (one cell = one model's seeds); a
difference of two means is a difference only past the two-sided 5% critical value of t on the
pooled df; growth is the slope of test top-1 on log2(MACs) over every point and seed, one-sided,
Holm-corrected across families; the grid's candidates are deduplicated by realised spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from scaling.cli import count_of
from scaling.search.reevaluate import reevaluation_markdown
from scaling.study.grid import grid_table, grid_verdict
from scaling.study.plan import COMPOUND_FAMILIES, SEARCHED, StudyPreset
from scaling.study.protocol import TEST_SIZE, data_title
from scaling.study.stats import Pooled, difference_of_means, holm, pooled_variance, slope


def stats(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=1, 0 for one seed) and count of test/val top-1 and MACs per group."""
    g = df.groupby(by, sort=False).agg(
        macs=("macs", "mean"), target=("target_macs", "mean"), params=("params", "mean"),
        mac_error=("mac_error", "first"), mac_tol=("mac_tol", "first"), n=("seed", "count"),
        val=("val_acc", "mean"), test=("test_acc", "mean"), test_std=("test_acc", "std"))
    g["test_std"] = g["test_std"].fillna(0.0)
    return g.reset_index()


def noise(runs: pd.DataFrame, column: str = "test_acc") -> Pooled | None:
    """The seed variance of ``column`` pooled across the table's cells (a model shared by two
    rows, e.g. one base point in two families, counts once); None below two seeds."""
    runs = runs.drop_duplicates(["spec_key", "seed"])
    try:
        return pooled_variance(runs[column], runs["spec_key"])
    except ValueError:
        return None


def _noise_text(pooled: Pooled | None, table: str) -> str:
    if pooled is None:
        return "SE from the fit's own residuals (one seed per point: no seed-noise estimate)"
    return (f"SE from the seed std pooled over the {table} table's {pooled.cells} models "
            f"({100 * pooled.std:.2f} points, {pooled.df} df)")


def _effect(a: Any, b: Any, pooled: Pooled | None) -> str:
    """``a.test - b.test`` against the pooled seed noise: the verdict of a two-sided t test."""
    if pooled is None:
        return "one seed: no noise estimate"
    return difference_of_means(a.test, a.test_std ** 2, a.n, b.test, b.test_std ** 2, b.n,
                               pooled).verdict()


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def spread(groups: pd.DataFrame) -> str:
    """What a table's accuracies are: ``mean +- std`` over seeds, or one seed's value."""
    return "mean +- std" if groups.n.max() > 1 else "one seed"


def mean_std(row: Any) -> str:
    """A group's test top-1 as ``mean +- std`` in %, or the mean alone over one seed (whose
    std is no estimate of anything)."""
    return f"{pct(row.test)} +- {pct(row.test_std)}" if row.n > 1 else pct(row.test)


def growth_fits(runs: pd.DataFrame, pooled: Pooled | None) -> dict[str, Any]:
    """Per family: the OLS slope of test top-1 on log2(MACs) over all its points and seeds
    (:func:`scaling.study.stats.slope`), SE from the pooled seed variance (its own residuals
    below two seeds); None where there is no estimate (two runs, one seed each)."""
    import numpy as np

    fits = {}
    for family, g in runs.groupby("family", sort=False):
        try:
            fits[family] = slope(np.log2(g.macs.astype(float)), g.test_acc.astype(float), pooled)
        except ValueError:
            fits[family] = None
    return fits


def growth_findings(fam: pd.DataFrame, winner: tuple[float, float, float],
                    fits: dict[str, Any], rules: dict[str, Any] = COMPOUND_FAMILIES
                    ) -> tuple[list[str], int]:
    """Per family: the slope in points per doubling with its 95% CI, the one-sided p of
    slope > 0 and its Holm adjustment across the families; growth holds where the adjusted p
    is below 0.05. The scaling column names the rule of compound-scaled families (the grid's
    winner for the searched one)."""
    tested = [f for f in dict.fromkeys(fam.family) if fits.get(f) is not None]
    adjusted = dict(zip(tested, holm([fits[f].p_greater for f in tested])))
    lines, holds = [], 0
    for family in dict.fromkeys(fam.family):
        g = fam[fam.family == family].sort_values("target")
        fit, p = fits.get(family), adjusted.get(family, 1.0)
        holds += p < 0.05
        rule = winner if family == SEARCHED else rules.get(family)
        scaling = g.iloc[-1].method + (" ({:g}, {:g}, {:g})".format(*rule) if rule else "")
        est = ("no estimate (two runs, no seed noise) | - | -" if fit is None else
               f"{100 * fit.estimate:+.2f} [{100 * fit.low:+.2f}, {100 * fit.high:+.2f}] | "
               f"{fit.p_greater:.2g} | {p:.2g}")
        lines.append(f"| {family} | {scaling} | {g.macs.min() / 1e6:.2f}-{g.macs.max() / 1e6:.2f}M"
                     f" | {est} | {'yes' if p < 0.05 else 'no'} |")
    head = ["| family | scaling (alpha, beta, gamma) | MACs | slope (pts per doubling) [95% CI] | "
            "one-sided p | Holm p | grows |", "|---|---|---|---|---|---|---|"]
    return head + lines, holds


def searched_findings(fam: pd.DataFrame, pooled: Pooled | None) -> list[str]:
    """At each point: the searched family against the best hand-designed family there."""
    out = ["| MAC point | searched (%) | best hand-designed (%) | difference (pts) | "
           "effect | searched's rank |", "|---|---|---|---|---|---|"]
    firsts = 0
    for ratio, g in fam.groupby("ratio", sort=True):
        s = g[g.family == SEARCHED]
        hand = g[g.family != SEARCHED].sort_values("test", ascending=False)
        if s.empty or hand.empty:
            continue
        s, h = s.iloc[0], hand.iloc[0]
        rank = int((g.test > s.test).sum()) + 1
        firsts += rank == 1
        diff = s.test - h.test
        out.append(f"| {s.target / 1e6:.2f}M (x{ratio:g}) | {mean_std(s)} | "
                   f"{h.family}: {mean_std(h)} | {100 * diff:+.2f} | "
                   f"{_effect(s, h, pooled)} | {rank} of {len(g)} |")
    return out + ["", over_points(fam, pooled, firsts)] if len(out) > 2 else out


def over_points(fam: pd.DataFrame, pooled: Pooled | None, firsts: int) -> str:
    """The searched family's mean test top-1 over every MAC point against the best
    hand-designed family's by the same mean; SE of the difference from the pooled seed std:
    s_p sqrt(sum 1/n_i + sum 1/n_j) / P over the P points."""
    from scaling.study.stats import t_cdf, t_ppf

    points = fam.groupby("family").filter(lambda g: len(g) == fam.ratio.nunique())
    means = points.groupby("family").test.mean()
    if SEARCHED not in means or len(means) < 2:
        return ""
    hand = means.drop(SEARCHED).sort_values(ascending=False)
    best, n_points = hand.index[0], fam.ratio.nunique()
    diff = means[SEARCHED] - hand.iloc[0]
    text = (f"Over the {n_points} points, the searched family's mean test top-1 is "
            f"{pct(means[SEARCHED])}% against {pct(hand.iloc[0])}% for {best}, the best "
            f"hand-designed family by that mean: {100 * diff:+.2f} points")
    if pooled is not None:
        inv = sum(float((1 / points[points.family == f].n).sum()) for f in (SEARCHED, best))
        se = pooled.std * inv ** 0.5 / n_points
        t, crit = diff / se, t_ppf(0.975, pooled.df)
        text += (f" (pooled SE {100 * se:.2f}, t {t:+.2f}, two-sided p "
                 f"{2 * t_cdf(-abs(t), pooled.df):.2g}, t crit {crit:.2f}: "
                 + ("a difference" if abs(t) > crit else "within seed noise") + ")")
    return text + f"; it ranks first at {firsts} of {n_points} points."


def single_findings(single: pd.DataFrame, keys: dict[tuple[str, str, float], str],
                    pooled: Pooled | None) -> list[str]:
    """Compound against the best single-dimension method at each ratio, per family; ``keys``
    maps (family, method, ratio) to the spec hash, so a compound model that is one of the
    single-dimension models (a grid winner with alpha = gamma = 1 is width scaling) is named."""
    out = ["| family | MACs | depth | width | resolution | compound | compound - best single "
           "(pts) | effect |", "|---|---|---|---|---|---|---|---|"]
    worst: list[str] = []
    for (family, ratio), g in single[single.ratio > 1].groupby(["family", "ratio"], sort=False):
        by = {r.method: r for r in g.itertuples()}
        if "compound" not in by:
            continue
        singles = [by[m] for m in ("depth", "width", "resolution") if m in by]
        best = max(singles, key=lambda r: r.test)
        diff = by["compound"].test - best.test
        cells = " | ".join(mean_std(by[m]) if m in by else "-"
                           for m in ("depth", "width", "resolution", "compound"))
        same = [m for m in ("depth", "width", "resolution")
                if keys.get((family, m, ratio)) == keys.get((family, "compound", ratio))]
        note = f" (the same model as {same[0]})" if same else ""
        out.append(f"| {family} | x{ratio:g} | {cells} | {100 * diff:+.2f} (vs {best.method})"
                   f"{note} | {_effect(by['compound'], best, pooled)} |")
        low = min(by.values(), key=lambda r: r.test)
        rest = min((r for r in by.values() if r is not low), key=lambda r: r.test)
        worst.append(f"{family} x{ratio:g}: {low.method}, {100 * (rest.test - low.test):.2f} "
                     f"pts below the next ({_effect(rest, low, pooled)})")
    return out + ["", "Lowest method per case: " + "; ".join(worst) + "."]


def family_table(fam: pd.DataFrame) -> list[str]:
    out = ["| family | scaling | target MACs | realised MACs (error) | params (k) | seeds | "
           f"val top-1 (%) | test top-1 (%), {spread(fam)} |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in fam.sort_values(["family", "target"], kind="stable").itertuples():
        out.append(f"| {r.family} | {r.method} | {r.target / 1e6:.2f}M | {r.macs / 1e6:.3f}M "
                   f"({100 * r.mac_error:+.1f}%) | {r.params / 1e3:.0f} | {r.n} | {pct(r.val)} | "
                   f"{mean_std(r)} |")
    return out


def _style(ax, title: str, seeds: int) -> None:
    """A log-2 MAC axis with plain tick labels (0.5, 1, 2, ...), labels, legend and grid."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("MACs (millions, realised; log scale)")
    ax.set_ylabel("test top-1 (%), mean +- std" if seeds > 1 else "test top-1 (%), one seed")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)


def plot(fam: pd.DataFrame, single: pd.DataFrame, out: Path, preset_name: str,
         runs: pd.DataFrame, fits: dict[str, Any], title: str = "Fashion-MNIST 28x28"
         ) -> list[Path]:
    """``family.png`` (one panel per family: every run, the means, the fitted line on log2 MACs
    with its 95% band) and ``single.png`` (test top-1 vs MACs per scaling method)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from scaling.files import atomic_write_bytes

    def save(fig, name: str) -> Path:
        import io

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        return atomic_write_bytes(out / name, buf.getvalue())

    n = int(fam.n.max())

    def bars(g: pd.DataFrame) -> Any:  # no error bar where one seed gives no std
        return (100 * g.test_std).where(g.n > 1) if n > 1 else None

    from scaling.study.figures import fit_band

    names = list(dict.fromkeys(fam.family))
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.2 * rows), sharey=True,
                             squeeze=False)
    for i, (ax, family) in enumerate(zip(axes.flat, names)):
        g, r = fam[fam.family == family].sort_values("macs"), runs[runs.family == family]
        ax.plot(r.macs / 1e6, 100 * r.test_acc, ".", color="0.6", ms=4, label="runs")
        ax.errorbar(g.macs / 1e6, 100 * g.test, yerr=bars(g), fmt="o", color=f"C{i}",
                    capsize=3, label="mean")
        fit = fits.get(family)
        if fit is not None:
            fit_band(ax, fit, g.macs.min(), g.macs.max(), f"C{i}", label="OLS, 95% band")
        _style(ax, family + ("" if fit is None else f"\n{100 * fit.estimate:+.2f} pts/doubling "
                             f"[{100 * fit.low:+.2f}, {100 * fit.high:+.2f}]"), n)
        ax.title.set_fontsize(9)
        ax.label_outer()
        if i:  # one legend says what the marks are
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}, preset {preset_name}: test top-1 vs MACs, {n} seed"
                 f"{'s' if n > 1 else ''} per point; line: OLS on log2 MACs over all runs",
                 fontsize=10)
    paths = [save(fig, "family.png")]
    fams = list(dict.fromkeys(single.family))
    fig, axes = plt.subplots(1, len(fams), figsize=(6 * len(fams), 4.4), squeeze=False)
    for ax, family in zip(axes[0], fams):
        g = single[single.family == family]
        base = g[g.method == "base"]
        for method in ("depth", "width", "resolution", "compound"):
            m = pd.concat([base, g[g.method == method]]).sort_values("macs")
            ax.errorbar(m.macs / 1e6, 100 * m.test, yerr=bars(m), marker="o",
                        capsize=3, label=method)
        _style(ax, f"{family}: one dimension vs compound", n)
    paths.append(save(fig, "single.png"))
    return paths


def write_report(out: Path, preset_name: str, preset: StudyPreset,
                 tables: dict[str, list[dict[str, Any]]], plan: dict[str, Any], prov
                 ) -> dict[str, Any]:
    """Write the CSVs (with provenance), the figures and README.md; returns a summary."""
    from scaling.files import atomic_write_text

    dfs = {name: pd.DataFrame(rows) for name, rows in tables.items()}
    for name, df in dfs.items():
        path = out / f"{name}.csv"
        atomic_write_text(path, df.to_csv(index=False, float_format="%.6g"))
        prov.write(path, winner=plan["winner"], base_macs=preset.base_macs)
    fam = stats(dfs["family"], ["family", "method", "ratio"])
    single = stats(dfs["single"], ["family", "method", "ratio"])
    p = preset.protocol
    fam_noise, single_noise = noise(dfs["family"]), noise(dfs["single"])
    fits = growth_fits(dfs["family"], fam_noise)
    figures = plot(fam, single, out, preset_name, dfs["family"], fits, data_title(p))
    growth, holds = growth_findings(fam, tuple(plan["winner"]), fits, dict(preset.rules))
    errs = pd.concat([dfs["family"], dfs["single"]])
    worst = errs.assign(excess=errs.mac_error.abs() - errs.mac_tol).sort_values("excess").iloc[-1]
    s = plan["searched"]
    lines = [
        f"# Study, preset `{preset_name}`: {data_title(p)}, matched MACs",
        "",
        f"Written by `python -m scaling.study run {preset_name}` (provenance beside "
        "each CSV: command, git commit, seeds, device, date; `runs.provenance.json` lists every "
        "invocation that trained rows of `runs.csv`, and whether it ran the search in `search/` "
        "or found it there). Test top-1 on "
        f"{p.test_size or TEST_SIZE.get(p.dataset, 'all')} test images, evaluated once per "
        "trained model; validation = "
        f"{p.val_size} images held out of the training set. Training: {p.subset or 'all'} "
        f"images x {count_of(p.epochs, 'epoch')}, batch {p.batch_size}, SGD lr {p.lr} "
        "(Nesterov, warm-up + cosine, label smoothing 0.1; no stochastic depth"
        f"{'; zero_init_last: every residual block starts as identity' * p.zero_init_last}"
        f"), seeds {list(p.seeds)}, protocol "
        f"key {p.key()}.",
        "",
        "## MAC matching",
        "",
        f"Every MAC figure is the realised, rounded model's (analytic conv + linear MACs). "
        f"Tolerances: {100 * preset.mac_tol:g}% of the target for every family point and for "
        f"depth/width/compound scaling, {100 * preset.res_tol:g}% for resolution-only scaling "
        f"(integer pixels), {100 * preset.grid_mac_tol:g}% of 2x for the grid. Largest error in "
        f"the tables: {100 * worst.mac_error:+.2f}% ({worst.family}, {worst.method} "
        f"x{worst.ratio:g}; tolerance {100 * worst.mac_tol:g}%).",
        "",
        "## The searched baseline",
        "",
        f"Search: budget {plan['search_budget'] / 1e6:g}M MACs, {preset.search['trials']} "
        f"trained trials ({preset.search['evaluator']} evaluator"
        f"{', residual blocks started as identity' * bool(preset.search.get('zero_init_last'))}"
        f"); counts {s.get('counts')}. "
        f"Best trial #{s.get('number')} at {s.get('macs', 0) / 1e6:.2f}M MACs"
        + (f"; its width refitted (x{s['base_width']:.3g}) to the base point, "
           f"{s['base_macs'] / 1e6:.3f}M MACs, as every family's is. " if "base_width" in s else
           ", used as found: its MACs are the base point of every family. ")
        + "Its spec and recipe: `search/baseline.json`.",
        "",
        *reevaluation_markdown(s.get("reevaluation")),
        f"## Grid at phi = 1 (winner alpha, beta, gamma = {tuple(plan['winner'])})",
        "",
        *grid_table(dfs["grid"]),
        "",
        grid_verdict(dfs["grid"], noise(dfs["family"], "val_acc"), preset.grid_prefer,
                     preset.grid_confirm),
        *([f"The winner: {plan['winner_reason']}."] if plan.get("winner_reason") else []),
        "",
        "## Searched family vs hand-designed families at matched MACs",
        "",
        "![family](family.png)",
        "",
        *family_table(fam),
        "",
        "## Findings",
        "",
        f"**Accuracy grows with MACs** in {holds} of {fam.family.nunique()} families: the OLS "
        "slope of test top-1 on log2(MACs) over every point and seed, in points per doubling, "
        f"{_noise_text(fam_noise, 'family')}; one-sided p of slope > 0, Holm-corrected across "
        "the families (grows: Holm p < 0.05):",
        "",
        *growth,
        "",
        "**The searched family against the best hand-designed family at each point** "
        "(difference of means, two-sided t test at 5%, seed variance pooled across the family "
        "table):",
        "",
        *searched_findings(fam, fam_noise),
        "",
        "**Compound vs single-dimension scaling** (Tan & Le 2019, Figures 3 and 8), test top-1 "
        f"(%), {spread(single)}:",
        "",
        "![single](single.png)",
        "",
        *single_findings(single, {(r.family, r.method, r.ratio): r.spec_key
                                  for r in dfs["single"].itertuples()}, single_noise),
        "",
        f"Effects in this table: {_noise_text(single_noise, 'single')}. A "
        "difference short of its critical value is not evidence either way with this many seeds.",
        "",
    ]
    readme = atomic_write_text(out / "README.md", "\n".join(lines))
    return {"readme": str(readme), "figures": [str(f) for f in figures],
            "growth_holds": holds, "families": int(fam.family.nunique())}
