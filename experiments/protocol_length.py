"""How long must a study's runs train before accuracy grows with MACs? (issue 16)

Takes the smallest and the largest family point of a study's plan (``results/<preset>/plan.json``,
the realised specs of ``python -m scaling.study run``) for the chosen families and trains both under
the preset's protocol at several epoch counts, every seed; one row per run. The summary gives,
per family and epoch count, the largest point's test accuracy over the smallest's and that
difference in seed standard deviations (the larger of the two points' std), the criterion of
issue 16 ("the largest beats the smallest by more than 3 seed std"). A point that several
families share is trained once per seed. ``--subset``, ``--batch-size``, ``--lr``,
``--[no-]zero-init-last`` and ``--drop-path`` change the protocol (or, for drop-path, every
spec) to test what else decides it; ``--single METHOD`` takes the base and the
largest point of the single-dimension experiment's METHOD instead of the family end points.
``results/protocol_length/README.md`` compares the runs.

    python experiments/protocol_length.py --preset medium --families EfficientNet-B0 \\
        MobileNetV3-S --epochs 2 4 --seeds 0 1 --jobs 2

Writes ``results/protocol_length/<name>.csv`` (rows as they finish), ``<name>.md`` and provenance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="medium", help="study preset whose plan and protocol "
                   "are used")
    p.add_argument("--plan", type=Path, help="plan.json (default: results/<preset>/plan.json)")
    p.add_argument("--families", nargs="+", required=True, help="family names of the plan")
    p.add_argument("--epochs", type=float, nargs="+", required=True, help="epoch counts")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs at once (1 thread each)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--subset", type=int, help="training images instead of the preset's")
    p.add_argument("--batch-size", type=int, help="instead of the preset's batch size")
    p.add_argument("--lr", type=float, help="instead of the preset's learning rate")
    p.add_argument("--drop-path", type=float, help="train every model with this drop-path rate "
                   "instead of its spec's (EfficientNet's 0.2 is the only non-zero one)")
    p.add_argument("--zero-init-last", action=argparse.BooleanOptionalAction, default=None,
                   help="start every residual block as the identity (scaling.nn.init_weights), "
                   "or not (--no-zero-init-last); default: as the preset's protocol")
    p.add_argument("--single", choices=("depth", "width", "resolution", "compound"),
                   help="the single-dimension experiment's base and largest point of this "
                   "method, for the --families that have one, instead of the family end points")
    p.add_argument("--name", help="result file name (default: the preset)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "protocol_length")
    args = p.parse_args(argv)
    args.plan = args.plan or ROOT / "results" / args.preset / "plan.json"
    args.name = args.name or args.preset
    if not args.plan.is_file():
        p.error(f"--plan {args.plan} does not exist; run python -m scaling.study run "
                f"{args.preset} first")
    if any(e <= 0 for e in args.epochs):
        p.error(f"--epochs {args.epochs}: every value must be > 0")
    return args


def end_points(plan: dict[str, Any], family: str, single: str | None = None
               ) -> list[dict[str, Any]]:
    """The smallest and largest point of ``family`` in the plan's family comparison, or (single:
    a method) the base and the largest point of that method in the single-dimension experiment."""
    if single is None:
        points = [m for m in plan["models"]
                  if m["experiment"] == "family" and m["family"] == family]
    else:
        points = [m for m in plan["models"] if m["experiment"] == "single"
                  and m["family"] == family and m["method"] in ("base", single)]
    points.sort(key=lambda m: m["ratio"])
    if len(points) < 2:
        what = "family" if single is None else "single"
        known = sorted({m["family"] for m in plan["models"] if m["experiment"] == what})
        raise ValueError(f"family={family!r} has {len(points)} points in the plan's {what!r} "
                         f"experiment{'' if single is None else f' ({single})'}; expected one "
                         f"of {known}")
    return [points[0], points[-1]]


def with_drop_path(spec: Any, rate: float | None) -> Any:
    """``spec`` with drop-path rate ``rate`` (None: unchanged)."""
    return spec if rate is None else spec.replace(drop_path_rate=rate)


def summarise(table: Any) -> tuple[Any, str]:
    """Per (family, epochs): both points' mean +- std and the gap in seed std."""
    from scaling.cli import format_table

    rows, out = [], []
    for (family, epochs), group in table.groupby(["family", "epochs"], sort=True):
        small, large = (group[group.ratio == r].test_acc.astype(float)
                        for r in (group.ratio.min(), group.ratio.max()))
        std = max(small.std(ddof=1), large.std(ddof=1))
        gap = large.mean() - small.mean()
        rec = {"family": family, "epochs": epochs, "seeds": int(min(len(small), len(large))),
               "small_mean": small.mean(), "small_std": small.std(ddof=1),
               "large_mean": large.mean(), "large_std": large.std(ddof=1), "gap": gap,
               "gap_in_std": gap / std if std > 0 else None}
        out.append(rec)
        ratio = rec["gap_in_std"]
        rows.append([family, f"{epochs:g}", rec["seeds"],
                     f"{100 * rec['small_mean']:.2f} +- {100 * rec['small_std']:.2f}",
                     f"{100 * rec['large_mean']:.2f} +- {100 * rec['large_std']:.2f}",
                     f"{100 * gap:+.2f}", "n/a" if ratio is None else f"{ratio:.2f}",
                     "n/a" if ratio is None else ("yes" if ratio > 3 else "no")])
    text = format_table(["family", "epochs", "seeds", "smallest test %", "largest test %",
                         "gap (pts)", "gap / seed std", "> 3"], rows, left=1)
    return out, text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import pandas as pd

    from scaling.ir import NetworkSpec
    from scaling.study.config import PRESETS
    from scaling.study.plan import spec_key
    from scaling.study.protocol import run_models, write_report
    from scaling.study.provenance import Provenance, atomic_write_text, repo_relative

    plan = json.loads(args.plan.read_text())
    preset = PRESETS[args.preset]
    prov = Provenance(seeds=args.seeds, device=args.device, preset=args.preset)
    suffix = "" if args.single is None else f" ({args.single})"
    models = [{"family": f + suffix, "ratio": m["ratio"], "macs": m["macs"],
               "spec": with_drop_path(NetworkSpec.from_dict(m["spec"]), args.drop_path)}
              for f in args.families for m in end_points(plan, f, args.single)]
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{args.name}.csv"
    rows: list[dict[str, Any]] = []
    over = {k: v for k, v in (("subset", args.subset), ("batch_size", args.batch_size),
                              ("lr", args.lr)) if v}
    p = dataclasses.replace(preset.protocol, seeds=tuple(args.seeds),
                            zero_init_last=(preset.protocol.zero_init_last
                                            if args.zero_init_last is None
                                            else args.zero_init_last),
                            **over)
    keyed = [(spec_key(m["spec"]), m) for m in models]
    distinct: dict[str, dict[str, Any]] = {}  # families may share a point (B0's x1)
    for key, m in keyed:
        distinct.setdefault(key, m)
    for epochs in args.epochs:
        proto = dataclasses.replace(p, epochs=epochs)
        outs = run_models(list(distinct.values()), proto, device=args.device, threads=1,
                          jobs=args.jobs)  # one row per (model, seed), in that order
        trained = dict(zip([(key, seed) for key in distinct for seed in proto.seeds], outs))
        for (key, m), seed in [(km, seed) for km in keyed for seed in proto.seeds]:
            # the row is this family's, whichever family's model trained the spec
            res = {k: v for k, v in trained[key, seed].items() if k not in m}
            rows.append({"family": m["family"], "ratio": m["ratio"], "macs": m["macs"],
                         "epochs": epochs, "subset": proto.subset,
                         "batch_size": proto.batch_size, "lr": proto.lr,
                         "drop_path": m["spec"].drop_path_rate,
                         "zero_init_last": proto.zero_init_last, "seed": seed,
                         "protocol": proto.key(), **res})
        atomic_write_text(csv_path, pd.DataFrame(rows).to_csv(index=False))
    summary, text = summarise(pd.DataFrame(rows))
    what = ("Smallest and largest family point" if args.single is None else
            f"Base and largest {args.single}-only point of the single-dimension experiment")
    md = (f"# Protocol length: does accuracy grow with MACs? ({args.name})\n\n"
          f"{what} of `{repo_relative(args.plan)}`, trained by "
          f"the `{args.preset}` protocol ({p.subset or 'all'} images, batch {p.batch_size}, lr "
          f"{p.lr}{'' if args.drop_path is None else f', drop-path rate {args.drop_path:g}'}"
          f"{', residual blocks start as identity' if p.zero_init_last else ''}) "
          f"at each epoch count, seeds {args.seeds}; test top-1 on "
          f"{p.test_size or 10000} test images, mean +- std over seeds. Gap / seed std: the "
          "difference of means over the larger of the two stds (issue 16 asks for > 3).\n\n"
          f"```\n{text}\n```\n\nRows: `{csv_path.name}`.\n")
    write_report(csv_path, md, prov, summary)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
