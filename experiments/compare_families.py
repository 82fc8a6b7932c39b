"""Searched-and-scaled family vs hand-designed families at matched MAC points, one protocol.

Every model is adapted to Fashion-MNIST (1 channel, 10 classes, 28x28) with the same total
downsampling (16: 28 -> 2x2 before pooling): MobileNetV2/V3 and EfficientNet take a stride-1 stem
(``small_input``), ResNet and ShuffleNetV2 keep their stride-2 stem conv and drop the stem max
pool. The MAC points are the searched baseline's (width refitted as in ``scale_family.py``)
compound-scaled with the paper's coefficients at phi = 0, 1, ... (the protocol's ``points``):

- ``searched+grid`` / ``searched+paper``: rows reused from ``results/study/scale_family.csv``
  (same protocol key, same seeds; trained there; run ``scale_family.py`` first);
- ``MobileNetV2``, ``ResNet-18``, ``ShuffleNetV2`` (x1.0 layout) and ``MobileNetV3-S`` /
  ``MobileNetV3-L``: width multiplier fitted to each MAC point;
- ``EfficientNet-B0 (official table)``: B0's layout at a base width fitted to the first point,
  then the official B0..B3 (width, depth, resolution) rows, resolution 28 * res / 224;

Writes ``results/study/compare_families.csv`` (family, model, macs, params, seed, val_acc,
test_acc, train_seconds, ...), ``compare_families.md`` (mean +- std over seeds) and provenance.

    python experiments/compare_families.py --quick
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling.study.protocol import (  # noqa: E402
    STUDY,
    add_protocol_args,
    fit_width,
    mac_points,
    protocol_from_args,
    run_models,
    searched_base,
    write_table,
)

G = {"num_classes": 10, "in_chans": 1, "resolution": 28}
HAND = ("MobileNetV2", "MobileNetV3-S", "MobileNetV3-L", "ShuffleNetV2", "ResNet-18",
        "EfficientNet-B0 table")
SEARCHED = {"grid": "searched+grid", "paper": "searched+paper"}


def _zoo(name: str, **kw: Any):
    from scaling.zoo import get_spec

    return get_spec(name, **kw, **G)


def _scaled(name: str, **kw: Any):
    """``w -> scale(zoo name, width=w)``: a family's layout at any width multiplier."""
    from scaling.compound import scale

    base = _zoo(name, **kw)
    return lambda w: scale(base, width=w)


#: family -> (tag, spec maker w -> spec); the adaptation to 28x28 is documented above.
FITTED = {
    "MobileNetV2": ("mobilenet_v2", lambda w: _zoo("mobilenet_v2", width=w, small_input=True)),
    "MobileNetV3-S": ("mobilenet_v3_small",
                      lambda w: _zoo("mobilenet_v3_small", width=w, small_input=True)),
    "MobileNetV3-L": ("mobilenet_v3_large",
                      lambda w: _zoo("mobilenet_v3_large", width=w, small_input=True)),
    "ShuffleNetV2": ("shufflenet_v2", None),
    "ResNet-18": ("resnet18", None),
}


def _maker(family: str):
    tag, make = FITTED[family]
    if make is None:
        make = _scaled({"ShuffleNetV2": "shufflenet_v2_x1_0", "ResNet-18": "resnet18"}[family],
                       stem_pool=None)
    return tag, make


def hand_models(family: str, points: list[float]) -> list[dict[str, Any]]:
    """The models of one hand-designed family matched to the MAC ``points``."""
    from scaling.compound import EFFICIENTNET

    if family in FITTED:
        tag, make = _maker(family)
        out = []
        for target in points:
            w, spec = fit_width(make, target)
            out.append({"family": family, "model": f"{tag} x{w:g}", "knob": w,
                        "spec": spec.replace(name=f"{tag}_x{w:g}")})
        return out
    if family == "EfficientNet-B0 table":
        def b0(w: float, row=EFFICIENTNET["b0"]):
            return _zoo("efficientnet_b0", width=w * row.width, depth=row.depth,
                        small_input=True, dropout=row.dropout).replace(
                resolution=round(28 * row.resolution / 224))

        w0, _ = fit_width(b0, points[0])
        rows = [EFFICIENTNET[f"b{i}"] for i in range(max(4, len(points)))]
        return [{"family": family, "model": f"{r.name} (base x{w0:g})", "knob": w0,
                 "spec": b0(w0, r).replace(name=f"efficientnet_{r.name}_base_x{w0:g}")}
                for r in rows]
    raise ValueError(f"family {family!r} is unknown; expected one of {HAND}")


def searched_rows(scale_csv: Path, key: str, seeds: tuple[int, ...],
                  baseline: str | None = None) -> list[dict[str, Any]]:
    """The searched family's rows from scale_family.csv, if trained under the same protocol
    (and, when given, from the same baseline)."""
    import pandas as pd

    df = pd.read_csv(scale_csv)
    if baseline is not None and set(df["baseline"]) != {baseline}:
        raise ValueError(f"{scale_csv} scaled baseline {sorted(set(df['baseline']))}, this run "
                         f"uses {baseline!r}: rerun scale_family.py")
    if set(df["protocol"]) != {key}:
        raise ValueError(f"{scale_csv} was trained under protocol {sorted(set(df['protocol']))}"
                         f", this run uses {key}: rerun scale_family.py with the same preset")
    df = df[df["seed"].isin(seeds)].copy()
    df["family"] = df["rule"].map(SEARCHED)
    return df.to_dict("records")


def reusable(path: Path | None, models: list[dict[str, Any]], proto
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows copied from ``path`` for models trained there on every seed, models left to train)."""
    if path is None:
        return [], models
    import pandas as pd

    old = pd.read_csv(path)
    old = old[(old["protocol"] == proto.key()) & old["seed"].isin(proto.seeds)]
    rows, todo = [], []
    for m in models:
        got = old[(old["family"] == m["family"]) & (old["model"] == m["model"])]
        if sorted(got["seed"]) == sorted(proto.seeds):
            rows += got.to_dict("records")
        else:
            todo.append(m)
    print(f"reused {len(rows)} rows from {path}; {len(todo)} models left to train", flush=True)
    return rows, todo


def summary_markdown(rows: list[dict[str, Any]]) -> str:
    """Mean +- std test (and val) accuracy per family and model, sorted by family then MACs."""
    import pandas as pd

    df = pd.DataFrame(rows)
    g = df.groupby(["family", "model"], sort=False).agg(
        macs=("macs", "mean"), params=("params", "mean"), n=("seed", "count"),
        val=("val_acc", "mean"), test=("test_acc", "mean"), test_std=("test_acc", "std"))
    g = g.reset_index().sort_values(["family", "macs"])
    lines = ["| family | model | MACs (M) | params (k) | seeds | val top-1 (%) | "
             "test top-1 (%), mean +- std |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in g.itertuples():
        std = 0.0 if math.isnan(r.test_std) else r.test_std
        lines.append(f"| {r.family} | {r.model} | {r.macs / 1e6:.2f} | {r.params / 1e3:.0f} | "
                     f"{r.n} | {100 * r.val:.2f} | {100 * r.test:.2f} +- {100 * std:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", default=list(HAND), choices=HAND,
                   help="hand-designed families to train (default: all)")
    p.add_argument("--baseline", help="searched baseline spec JSON (as for scale_family.py)")
    p.add_argument("--scale-csv", type=Path, default=STUDY / "scale_family.csv",
                   help="scale_family.py's table: the searched family's rows")
    p.add_argument("--no-searched", action="store_true",
                   help="leave the searched family out (e.g. the reproducibility test)")
    p.add_argument("--macs", type=float, nargs="+", help="MAC points (default: the baseline "
                   "scaled by phi = 0, 1, ... with the paper's coefficients)")
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait (after training) for --scale-csv to appear, so both "
                        "scripts can run at once")
    p.add_argument("--reuse", type=Path, help="a previous compare_families.csv: its rows with "
                   "the same family, model (the fitted width names the spec), protocol key and "
                   "seed are copied instead of retrained")
    p.add_argument("--out-dir", type=Path, default=STUDY)
    add_protocol_args(p)
    args = p.parse_args(argv)
    preset, proto = protocol_from_args(args)
    from scaling.study.provenance import Provenance, atomic_write_text

    prov = Provenance(seeds=proto.seeds, device=args.device, preset=preset,
                      protocol={**proto.__dict__, "key": proto.key()})
    source = None
    if args.macs:
        points = [int(x) for x in args.macs]
    else:
        try:
            base, source, _ = searched_base(args.baseline, proto, preset)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        points = mac_points(base, proto)
    if not args.no_searched and not args.scale_csv.is_file() and args.wait <= 0:
        print(f"error: {args.scale_csv} does not exist: run experiments/scale_family.py with "
              "the same preset first, or pass --no-searched", file=sys.stderr)
        return 2
    models = [m for fam in args.families for m in hand_models(fam, points)]
    print(f"baseline {source}; MAC points {[round(x / 1e6, 2) for x in points]}M; "
          f"{len(models)} hand-designed models x {len(proto.seeds)} seeds (protocol {preset}, "
          f"key {proto.key()})", flush=True)
    reused, models = reusable(args.reuse, models, proto)
    rows = reused + run_models(models, proto, args.device, args.threads, args.jobs)
    if not args.no_searched:
        deadline = time.monotonic() + args.wait
        while True:  # scale_family.py may still be running: wait for its table
            try:
                if not args.scale_csv.is_file():
                    raise ValueError(f"{args.scale_csv} does not exist")
                rows = searched_rows(args.scale_csv, proto.key(), proto.seeds,
                                     None if args.macs else source) + rows
                break
            except ValueError as exc:
                if time.monotonic() >= deadline:
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                time.sleep(10)
    cols = ["family", "model", "macs", "params", "seed", "val_acc", "test_acc", "train_seconds"]
    rows = [{**{c: r.get(c) for c in cols}, **{k: v for k, v in r.items() if k not in cols}}
            for r in rows]
    out = args.out_dir
    write_table(rows, out / "compare_families.csv", prov, mac_points=points, baseline=source)
    md = out / "compare_families.md"
    atomic_write_text(md, f"Protocol `{preset}` (key {proto.key()}); test top-1 on "
                      f"{proto.test_size or 10000} Fashion-MNIST test images.\n\n"
                      + summary_markdown(rows))
    print(summary_markdown(rows))
    print(f"wrote {out / 'compare_families.csv'} ({len(rows)} rows) and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
