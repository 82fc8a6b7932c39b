"""Tables, figures and the README of a study run (:mod:`scaling.study.runner`).

Every claim the README makes is computed here from the tables, with its effect size against seed
noise: a difference of two means is called a difference only when it exceeds twice its standard
error ``sqrt(s1**2 / n1 + s2**2 / n2)`` (seed standard deviations, ``ddof=1``); "accuracy grows
with MACs" needs the largest point's mean above the smallest's by more than three seed standard
deviations (the larger of the two).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.cli import count_of
from scaling.study.plan import COMPOUND_FAMILIES, SEARCHED, StudyPreset


def stats(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=1, 0 for one seed) and count of test/val top-1 and MACs per group."""
    g = df.groupby(by, sort=False).agg(
        macs=("macs", "mean"), target=("target_macs", "mean"), params=("params", "mean"),
        mac_error=("mac_error", "first"), mac_tol=("mac_tol", "first"), n=("seed", "count"),
        val=("val_acc", "mean"), test=("test_acc", "mean"), test_std=("test_acc", "std"))
    g["test_std"] = g["test_std"].fillna(0.0)
    return g.reset_index()


def _se(a: Any, b: Any) -> float:
    return math.sqrt(a.test_std ** 2 / max(a.n, 1) + b.test_std ** 2 / max(b.n, 1))


def _verdict(diff: float, se: float) -> str:
    if se == 0:
        return "one seed: no noise estimate"
    return f"{abs(diff) / se:.1f} SE: " + ("a difference" if abs(diff) > 2 * se
                                           else "within seed noise")


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def spread(groups: pd.DataFrame) -> str:
    """What a table's accuracies are: ``mean +- std`` over seeds, or one seed's value."""
    return "mean +- std" if groups.n.max() > 1 else "one seed"


def mean_std(row: Any) -> str:
    """A group's test top-1 as ``mean +- std`` in %, or the mean alone over one seed (whose
    std is no estimate of anything)."""
    return f"{pct(row.test)} +- {pct(row.test_std)}" if row.n > 1 else pct(row.test)


def growth_findings(fam: pd.DataFrame, winner: tuple[float, float, float],
                    rules: dict[str, Any] = COMPOUND_FAMILIES) -> tuple[list[str], int]:
    """Per family: the largest point's test top-1 minus the smallest's, in seed std (issue 16's
    criterion: more than 3x the larger of the two points' std) and against the standard error of
    the difference of means (whether the growth is evidence at all, as in the other tables); the
    scaling column names the rule of compound-scaled families (the grid's winner for the searched
    one)."""
    lines, holds = [], 0
    for family, g in fam.groupby("family", sort=False):
        g = g.sort_values("target")
        lo, hi = g.iloc[0], g.iloc[-1]
        noise = max(lo.test_std, hi.test_std)
        diff = hi.test - lo.test
        ok = noise > 0 and diff > 3 * noise
        holds += ok
        rule = winner if family == SEARCHED else rules.get(family)
        scaling = hi.method + (" ({:g}, {:g}, {:g})".format(*rule) if rule else "")
        mult = f"{diff / noise:.1f}x the seed std" if noise > 0 else "no seed noise estimate"
        lines.append(f"| {family} | {scaling} | {lo.macs / 1e6:.2f}M: {mean_std(lo)} | "
                     f"{hi.macs / 1e6:.2f}M: {mean_std(hi)} | {100 * diff:+.2f} ({mult}) | "
                     f"{'yes' if ok else 'no'} | {_verdict(diff, _se(lo, hi))} |")
    head = ["| family | scaling (alpha, beta, gamma) | smallest point: test top-1 (%) | "
            "largest point | difference (pts) | > 3 seed std | difference against its SE |",
            "|---|---|---|---|---|---|---|"]
    return head + lines, holds


def searched_findings(fam: pd.DataFrame) -> list[str]:
    """At each point: the searched family against the best hand-designed family there."""
    out = ["| MAC point | searched (%) | best hand-designed (%) | difference (pts) | "
           "effect | searched's rank |", "|---|---|---|---|---|---|"]
    for ratio, g in fam.groupby("ratio", sort=True):
        s = g[g.family == SEARCHED]
        hand = g[g.family != SEARCHED].sort_values("test", ascending=False)
        if s.empty or hand.empty:
            continue
        s, h = s.iloc[0], hand.iloc[0]
        rank = int((g.test > s.test).sum()) + 1
        diff = s.test - h.test
        out.append(f"| {s.target / 1e6:.2f}M (x{ratio:g}) | {mean_std(s)} | "
                   f"{h.family}: {mean_std(h)} | {100 * diff:+.2f} | "
                   f"{_verdict(diff, _se(s, h))} | {rank} of {len(g)} |")
    return out


def single_findings(single: pd.DataFrame, keys: dict[tuple[str, str, float], str]
                    ) -> list[str]:
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
                   f"{note} | {_verdict(diff, _se(by['compound'], best))} |")
        low = min(by.values(), key=lambda r: r.test)
        rest = min((r for r in by.values() if r is not low), key=lambda r: r.test)
        worst.append(f"{family} x{ratio:g}: {low.method}, {100 * (rest.test - low.test):.2f} "
                     f"pts below the next ({_verdict(rest.test - low.test, _se(rest, low))})")
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


def grid_table(grid: pd.DataFrame) -> list[str]:
    out = ["| alpha | beta | gamma | width used | resolution | realised MAC ratio | width "
           "refitted | val top-1 (%) |", "|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in grid.itertuples():
        out.append(f"| {r.alpha:g} | {r.beta:g} | {r.gamma:g} | {r.w:.4g} | {r.resolution} | "
                   f"{r.mac_ratio:.3f} | {'yes' if r.refit else 'no'} | {pct(r.val_acc)} |")
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


TEST_SIZE = {"fashion-mnist": 10000, "mnist": 10000, "cifar10": 10000}  #: official test sets


def data_title(p: Any) -> str:
    """The study's data in a few words: ``Fashion-MNIST 28x28`` (``+ 3 channels`` where they
    are not the dataset's own)."""
    from scaling.data import NATIVE_SHAPE

    name = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10",
            "imagefolder": "ImageFolder"}.get(p.dataset, p.dataset)
    extra = "" if NATIVE_SHAPE[p.dataset][0] == p.in_channels else f", {p.in_channels} channels"
    return f"{name} {p.resolution}x{p.resolution}{extra}"


def plot(fam: pd.DataFrame, single: pd.DataFrame, out: Path, preset_name: str,
         title: str = "Fashion-MNIST 28x28") -> list[Path]:
    """``family.png`` (test top-1 vs MACs per family) and ``single.png`` (per scaling method)."""
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

    fig, ax = plt.subplots(figsize=(7, 4.6))
    for family, g in fam.groupby("family", sort=False):
        g = g.sort_values("macs")
        ax.errorbar(g.macs / 1e6, 100 * g.test, yerr=bars(g), marker="o", capsize=3,
                    label=family, lw=2.2 if family == SEARCHED else 1.2)
    _style(ax, f"{title}, preset {preset_name}: {n} seed{'s' if n > 1 else ''} "
           "per point", n)
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
    figures = plot(fam, single, out, preset_name, data_title(p))
    growth, holds = growth_findings(fam, tuple(plan["winner"]), dict(preset.rules))
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
        f"## Grid at phi = 1 (winner alpha, beta, gamma = {tuple(plan['winner'])})",
        "",
        *grid_table(dfs["grid"]),
        "",
        "## Searched family vs hand-designed families at matched MACs",
        "",
        "![family](family.png)",
        "",
        *family_table(fam),
        "",
        "## Findings",
        "",
        f"**Accuracy grows with MACs** in {holds} of {fam.family.nunique()} families (largest "
        "point above the smallest by more than 3 seed standard deviations):",
        "",
        *growth,
        "",
        "**The searched family against the best hand-designed family at each point** "
        "(difference of means; SE from the seed std):",
        "",
        *searched_findings(fam),
        "",
        "**Compound vs single-dimension scaling** (Tan & Le 2019, Figures 3 and 8), test top-1 "
        f"(%), {spread(single)}:",
        "",
        "![single](single.png)",
        "",
        *single_findings(single, {(r.family, r.method, r.ratio): r.spec_key
                                  for r in dfs["single"].itertuples()}),
        "",
        "A difference within 2 SE is not evidence either way with this many seeds.",
        "",
    ]
    readme = atomic_write_text(out / "README.md", "\n".join(lines))
    return {"readme": str(readme), "figures": [str(f) for f in figures],
            "growth_holds": holds, "families": int(fam.family.nunique())}
