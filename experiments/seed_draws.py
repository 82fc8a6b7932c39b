"""How often would k seeds pass issue 16's growth yardstick? Every k-seed draw of a many-seed run.

Issue 16 asks that a family's largest point beat its smallest by more than 3 seed standard
deviations (the larger of the two points' sample std, as :func:`protocol_length.summarise` and the
study's report compute it). With 3 seeds that std is itself a noisy estimate. This script takes a
run with n seeds per point (a CSV of ``experiments/protocol_length.py``) and, per family, applies
the yardstick to every pair of k-seed subsets of the two points' runs (C(n, k)^2 draws): the share
of draws that pass and the quartiles of the ratio. It resamples runs that exist; it trains nothing.

    python experiments/seed_draws.py results/protocol_length/medium-zi-b0-10seeds.csv --k 3

Writes ``<stem>-draws-k<k>.csv`` (one row per family), its ``.md`` and provenance beside the CSV.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

THRESHOLD = 3.0  # issue 16: "more than 3 seed standard deviations"


def subset_stats(values: Any, k: int) -> tuple[Any, Any]:
    """Mean and sample std (ddof 1) of every k-subset of ``values``, as two arrays."""
    import numpy as np

    values = np.asarray(values, dtype=float)
    if not 2 <= k <= len(values):
        raise ValueError(f"k={k} is not allowed; expected 2 <= k <= {len(values)} (the runs "
                         "of a point)")
    subsets = values[np.array(list(itertools.combinations(range(len(values)), k)))]
    return subsets.mean(axis=1), subsets.std(axis=1, ddof=1)


def draws(small: Any, large: Any, k: int) -> Any:
    """The yardstick's ratio, (mean large - mean small) / max(std small, std large), for every
    pair of k-subsets of the two points' runs (a flat array of C(n_small, k) * C(n_large, k))."""
    import numpy as np

    s_mean, s_std = subset_stats(small, k)
    l_mean, l_std = subset_stats(large, k)
    gap = l_mean[:, None] - s_mean[None, :]
    spread = np.maximum(l_std[:, None], s_std[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 0, gap / spread, np.sign(gap) * np.inf).ravel()


def summarise(table: Any, k: int) -> list[dict[str, Any]]:
    """Per family: runs per point, the ratio over all runs, and the k-seed draws' pass share and
    quartiles."""
    import numpy as np

    out = []
    for family, group in table.groupby("family", sort=True):
        small = group[group.ratio == group.ratio.min()].test_acc.to_numpy(float)
        large = group[group.ratio == group.ratio.max()].test_acc.to_numpy(float)
        ratios = draws(small, large, k)
        (full,) = draws(small, large, len(small)) if len(small) == len(large) else (None,)
        q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
        out.append({"family": family, "seeds": int(min(len(small), len(large))), "k": k,
                    "draws": int(ratios.size), "ratio_all_seeds": full,
                    "pass_share": float(np.mean(ratios > THRESHOLD)),
                    "ratio_q25": float(q25), "ratio_median": float(q50),
                    "ratio_q75": float(q75)})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("csv", type=Path, help="rows of experiments/protocol_length.py")
    p.add_argument("--k", type=int, default=3, help="seeds per point in a draw")
    args = p.parse_args(argv)
    if not args.csv.is_file():
        p.error(f"{args.csv} does not exist")
    import pandas as pd

    from scaling.cli import format_table
    from scaling.study.protocol import write_report
    from scaling.study.provenance import Provenance, atomic_write_text, repo_relative

    table = pd.read_csv(args.csv)
    missing = {"family", "ratio", "seed", "test_acc"} - set(table.columns)
    if missing:
        p.error(f"{args.csv} lacks the columns {sorted(missing)}; expected a CSV of "
                "experiments/protocol_length.py")
    summary = summarise(table, args.k)
    out = args.csv.with_name(f"{args.csv.stem}-draws-k{args.k}.csv")
    atomic_write_text(out, pd.DataFrame(summary).to_csv(index=False))
    rows = [[r["family"], r["seeds"],
             "n/a" if r["ratio_all_seeds"] is None else f"{r['ratio_all_seeds']:.2f}", r["draws"],
             f"{100 * r['pass_share']:.0f}%",
             f"{r['ratio_q25']:.2f} / {r['ratio_median']:.2f} / {r['ratio_q75']:.2f}"]
            for r in summary]
    text = format_table(["family", "seeds per point", "ratio, all seeds", f"{args.k}-seed draws",
                         f"draws > {THRESHOLD:g}", "ratio: quartiles"], rows, left=1)
    md = (f"# Issue 16's growth yardstick on {args.k}-seed draws of `{args.csv.name}`\n\n"
          f"Ratio: (mean test top-1 of the largest point - that of the smallest) / the larger "
          f"of the two points' sample std; issue 16 asks for > {THRESHOLD:g}. Every pair of "
          f"{args.k}-seed subsets of the two points' runs gives one draw (C(n, {args.k})^2 of "
          f"them for n seeds per point): what a study with {args.k} seeds could have measured "
          f"from these runs. Runs: `{repo_relative(args.csv)}` (its own provenance beside "
          f"it).\n\n```\n{text}\n```\n")
    seeds = sorted(int(s) for s in table.seed.unique())
    write_report(out, md, Provenance(seeds=seeds, device="cpu"), summary,
                 source=repo_relative(args.csv), k=args.k)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
