"""What did one protocol change do to every model of a study? (issue 16)

Compares two ``runs.csv`` of ``python -m scaling.study run`` (one row per trained model and seed)
model by model: only models whose spec hash is in both files, so each row compares one
architecture under two protocols. Either file may be read from git history as ``REV:PATH``, so a
study rerun in place can be compared with its committed predecessor::

    python experiments/compare_runs.py --before 3f250c1:results/medium/runs.csv \\
        --after results/medium/runs.csv --label "zero_init_last" --name medium-zero-init-effect

Each side may be several files of one protocol (their rows are pooled), such as the CSVs of
``experiments/protocol_length.py``; those carry no spec hash, so where a side has none the models
are matched by name and realised MACs instead.

Per model: test top-1 mean +- std over seeds before and after, the difference and its standard
error sqrt(s1^2/n1 + s2^2/n2); a difference beyond 2 SE counts as an effect. Writes
``results/protocol_length/<name>.csv``, ``<name>.md`` and provenance. Trains nothing.
"""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", required=True, nargs="+",
                   help="runs.csv (or REV:PATH in this repository); several: their rows pooled")
    p.add_argument("--after", required=True, nargs="+",
                   help="runs.csv (or REV:PATH in this repository); several: their rows pooled")
    p.add_argument("--label", default="the change", help="what changed, for the report")
    p.add_argument("--name", required=True, help="result file name")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "protocol_length")
    return p.parse_args(argv)


def read_runs(source: str) -> Any:
    """A runs.csv from a path, or from git history as ``REV:PATH`` (relative to the repo)."""
    import pandas as pd

    path = Path(source)
    if path.is_file():
        return pd.read_csv(path)
    if ":" in source:
        done = subprocess.run(["git", "show", source], cwd=ROOT, capture_output=True, text=True)
        if done.returncode == 0:
            return pd.read_csv(io.StringIO(done.stdout))
        raise ValueError(f"{source!r} is not a file, and git show could not read it: "
                         f"{done.stderr.strip()}")
    raise ValueError(f"{source!r} is not a file; expected a runs.csv path or REV:PATH")


def read_all(sources: list[str]) -> Any:
    """The rows of every source (:func:`read_runs`), pooled."""
    import pandas as pd

    return pd.concat([read_runs(s) for s in sources], ignore_index=True)


def match_columns(before: Any, after: Any) -> list[str]:
    """The columns that identify one model in both tables: its spec hash and name where both
    have the hash, else its name and realised MACs (``protocol_length`` rows carry no hash)."""
    if "spec_key" in before and "spec_key" in after:
        return ["spec_key", "model"]
    return ["model", "macs"]


def compare(before: Any, after: Any) -> list[dict[str, Any]]:
    """One record per model trained in both tables (status ok; :func:`match_columns`), by name."""
    stats = []
    by = match_columns(before, after)
    for name, table in (("before", before), ("after", after)):
        keys = sorted(table.protocol.unique())
        if len(keys) != 1:
            raise ValueError(f"the {name} table holds runs of protocols {keys}; expected one "
                             "(a study mid-run still keeps its stale rows)")
        ok = table[table.status == "ok"]
        stats.append(ok.groupby(by).test_acc.agg(["mean", "std", "count"]))
    both = stats[0].merge(stats[1], left_index=True, right_index=True,
                          suffixes=("_before", "_after"))
    if both.empty:
        raise ValueError("no spec was trained in both runs tables: nothing to compare")
    out = []
    for index, r in both.sort_index(level="model").iterrows():
        model = index[by.index("model")]
        se = math.sqrt(r.std_before ** 2 / r.count_before + r.std_after ** 2 / r.count_after)
        diff = r.mean_after - r.mean_before
        out.append({"model": model, "seeds": int(min(r.count_before, r.count_after)),
                    "before_mean": r.mean_before, "before_std": r.std_before,
                    "after_mean": r.mean_after, "after_std": r.std_after, "diff": diff,
                    "se": se, "diff_in_se": diff / se if se > 0 else None})
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from scaling.cli import format_table
    from scaling.study.protocol import write_report
    from scaling.study.provenance import Provenance, atomic_write_text

    before, after = read_all(args.before), read_all(args.after)
    records = compare(before, after)
    by_hash = match_columns(before, after)[0] == "spec_key"
    matched = "spec hash" if by_hash else "name and realised MACs"
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{args.name}.csv"
    atomic_write_text(csv_path, pd.DataFrame(records).to_csv(index=False, float_format="%.6g"))

    def sources(paths: list[str]) -> str:
        return ", ".join(f"`{p}`" for p in paths)

    def pct(m: float, s: float) -> str:
        return f"{100 * m:.2f} +- {100 * s:.2f}"

    rows = [[r["model"], r["seeds"], pct(r["before_mean"], r["before_std"]),
             pct(r["after_mean"], r["after_std"]), f"{100 * r['diff']:+.2f}",
             "n/a" if r["diff_in_se"] is None else f"{r['diff_in_se']:+.1f}"] for r in records]
    up = sum(1 for r in records if (r["diff_in_se"] or 0) > 2)
    down = sum(1 for r in records if (r["diff_in_se"] or 0) < -2)
    text = format_table(["model", "seeds", "before test %", "after test %", "diff (pts)",
                         "diff / SE"], rows)
    md = (f"# {args.label}: model by model ({args.name})\n\n"
          f"Test top-1 of every model trained in both {sources(args.before)} (before) and "
          f"{sources(args.after)} (after), matched by {matched}; mean +- std over seeds. SE of the "
          "difference: sqrt(s1^2/n1 + s2^2/n2). "
          f"{up} of {len(records)} models gain more than 2 SE, {down} lose more than 2 SE, "
          f"{len(records) - up - down} move within 2 SE.\n\n```\n{text}\n```\n\n"
          f"Rows: `{csv_path.name}`.\n")
    prov = Provenance(device="cpu")
    write_report(csv_path, md, prov, [{"gain_2se": up, "loss_2se": down,
                                       "models": len(records)}],
                 before=args.before, after=args.after, label=args.label)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
