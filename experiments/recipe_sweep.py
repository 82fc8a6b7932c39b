"""Issue 17's recipe sweep: which training recipe learns in few steps?

Trains three families on Fashion-MNIST subsets (28x28, validation = ``--val-size`` images held
out of the training set, split seed 0) for each (subset, epochs) cell with a few recipes
(:data:`RECIPES`: SGD with Nesterov momentum at lr 0.05 / 0.1 / 0.2, AdamW at 1e-3 / 3e-3, batch
128, warm-up 5 % + cosine, label smoothing 0.1; :func:`scaling.train.train`), over ``--seeds``:

- ``mobilenet_v2_x0.5``: MobileNetV2 at width 0.5, stride-1 stem (a depthwise net);
- ``resnet18_x0.25``: ResNet-18 at width 0.25 without the stem pool (a narrow ResNet);
- ``searched``: the searched baseline ``results/search/baseline.best.json``.

    nice python experiments/recipe_sweep.py --preset cpu --threads 1        # ~20 CPU minutes
    python experiments/recipe_sweep.py --preset gpu --device cuda --jobs 4  # H100, minutes
    python experiments/recipe_sweep.py --tiny                                # seconds (the test)

``--jobs N`` trains in N spawned worker processes (each run seeds itself, so rows do not depend
on N). Cells whose subset x epochs exceeds ``--max-images`` are skipped (the gpu preset's cap
keeps it to minutes). Writes ``results/recipe_sweep/<preset>.csv`` (one row per run, written as
runs finish), ``<preset>.md`` (per cell: each recipe's mean validation accuracy over families
and seeds, its gap to the cell's best, and the seed noise) and provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RECIPES: dict[str, dict[str, Any]] = {
    "sgd-0.05": {"optimizer": "sgd", "lr": 0.05},
    "sgd-0.1": {"optimizer": "sgd", "lr": 0.1},
    "sgd-0.2": {"optimizer": "sgd", "lr": 0.2},
    "adamw-1e-3": {"optimizer": "adamw", "lr": 1e-3},
    "adamw-3e-3": {"optimizer": "adamw", "lr": 3e-3},
}
FAMILIES = ("mobilenet_v2_x0.5", "resnet18_x0.25", "searched")
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"subsets": [2000, 8000], "epochs": [1.0, 5.0], "seeds": [0, 1], "val_size": 1000,
            "max_images": 16_000, "batch_size": 128,
            "recipes": ["sgd-0.05", "sgd-0.2", "adamw-1e-3", "adamw-3e-3"]},
    # the corners the cpu preset leaves out that one CPU thread affords: 2,000 x 15 epochs
    # (235 steps) and 55,000 x 1 (430 steps), for the fixed recipe and the few-step winner
    # (sgd-0.2 and adamw-1e-3 lost everywhere in the cpu preset); 55,000 x 15 is the gpu one's
    "cpu-long": {"subsets": [2000, 55000], "epochs": [1.0, 15.0], "seeds": [0, 1],
                 "val_size": 1000, "max_images": 60_000, "batch_size": 128,
                 "recipes": ["sgd-0.05", "adamw-3e-3"]},
    "gpu": {"subsets": [2000, 8000, 55000], "epochs": [1.0, 5.0, 15.0], "seeds": [0, 1],
            "val_size": 5000, "max_images": 60_000, "batch_size": 128},
    "tiny": {"subsets": [256], "epochs": [1.0], "seeds": [0], "val_size": 128,
             "max_images": None, "batch_size": 64, "recipes": ["sgd-0.05", "adamw-3e-3"],
             "families": ["resnet18_x0.25"]},
}


def family_spec(name: str) -> Any:
    """The spec of one of :data:`FAMILIES` at 28x28x1, 10 classes."""
    from scaling.compound import scale
    from scaling.study.protocol import load_baseline
    from scaling.zoo import get_spec

    g = {"num_classes": 10, "in_chans": 1, "resolution": 28}
    if name == "mobilenet_v2_x0.5":
        return get_spec("mobilenet_v2", width=0.5, small_input=True, **g).replace(name=name)
    if name == "resnet18_x0.25":
        return scale(get_spec("resnet18", stem_pool=None, **g), width=0.25, name=name)
    if name == "searched":
        spec, _ = load_baseline(str(ROOT / "results" / "search" / "baseline.best.json"),
                                allow_stand_in=True)
        return spec.replace(name=name)
    raise ValueError(f"family={name!r} is not allowed; expected one of {FAMILIES}")


_DATA: dict[tuple[int | None, int], Any] = {}


def run_one(family: str, recipe: str, subset: int | None, epochs: float, seed: int,
            opts: dict[str, Any]) -> dict[str, Any]:
    """Train one (family, recipe, subset, epochs, seed) run; its validation accuracy."""
    from scaling.data import load_dataset
    from scaling.train import train

    key = (subset, opts["val_size"])
    if key not in _DATA:
        _DATA[key] = load_dataset("fashion-mnist", val_size=opts["val_size"], split_seed=0,
                                  subset=subset, resolution=28, in_channels=1)
    res = train(family_spec(family), _DATA[key], epochs=epochs, seed=seed,
                batch_size=opts["batch_size"], augment=False, device=opts["device"],
                threads=opts["threads"], progress=False, **RECIPES[recipe])
    return {"family": family, "recipe": recipe, **RECIPES[recipe], "subset": subset or 55000,
            "epochs": epochs, "seed": seed, "status": res.status,
            "val_acc": res.final_val_top1, "steps": res.steps,
            "train_s": round(res.train_time, 2), "images_per_s": round(res.images_per_s, 1),
            "device": res.device}


def summarise(rows: list[dict[str, Any]]) -> str:
    """Per (subset, epochs) cell: each recipe's mean validation accuracy over families and seeds,
    its gap to the cell's best recipe, and the seed noise (mean over families and recipes of
    the std over seeds)."""
    import pandas as pd

    from scaling.cli import format_table

    t = pd.DataFrame(rows)
    t["val_acc"] = t["val_acc"].astype(float)
    out = []
    for (subset, epochs), cell in t.groupby(["subset", "epochs"]):
        means = cell.groupby("recipe").val_acc.mean()
        per_family = cell.groupby(["recipe", "family"]).val_acc.mean().unstack()
        noise = cell.groupby(["recipe", "family"]).val_acc.std(ddof=1).mean()
        best = means.max()
        for recipe, m in means.sort_values(ascending=False).items():
            out.append([subset, f"{epochs:g}", recipe, f"{100 * m:.2f}",
                        f"{100 * (m - best):+.2f}",
                        " / ".join(f"{100 * v:.1f}" for v in per_family.loc[recipe]),
                        "-" if noise != noise else f"{100 * noise:.2f}"])
    return format_table(["images", "epochs", "recipe", "mean val %", "vs best (pts)",
                         " / ".join(sorted(t.family.unique())) + " %", "seed std (pts)"],
                        out, left=2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--tiny", action="store_true", help="same as --preset tiny")
    p.add_argument("--subsets", type=int, nargs="+", help="training images (55000: all)")
    p.add_argument("--epochs", type=float, nargs="+")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--families", nargs="+", choices=FAMILIES, help="default: all (tiny: one)")
    p.add_argument("--recipes", nargs="+", choices=sorted(RECIPES),
                   help="default: all (cpu: four, tiny: two)")
    p.add_argument("--max-images", type=int, help="skip cells with subset x epochs above this")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    p.add_argument("--jobs", type=int, default=1, help="spawned worker processes")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "recipe_sweep")
    args = p.parse_args(argv)
    args.preset = "tiny" if args.tiny else args.preset
    for key, value in PRESETS[args.preset].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.families = args.families or list(FAMILIES)
    args.recipes = args.recipes or list(RECIPES)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import pandas as pd

    from scaling.study.provenance import Provenance, atomic_write_text

    prov = Provenance(seeds=args.seeds, device=args.device, preset=args.preset,
                      recipes={r: RECIPES[r] for r in args.recipes}, families=args.families)
    opts = {k: getattr(args, k) for k in ("val_size", "batch_size", "device", "threads")}
    tasks = [(f, r, None if n >= 55000 else n, e, s) for n in args.subsets for e in args.epochs
             if not args.max_images or n * e <= args.max_images
             for s in args.seeds for f in args.families for r in args.recipes]
    args.out.mkdir(parents=True, exist_ok=True)
    csv_path = args.out / f"{args.preset}.csv"
    rows: list[dict[str, Any]] = []

    def done(row: dict[str, Any]) -> None:
        rows.append(row)
        atomic_write_text(csv_path, pd.DataFrame(rows).to_csv(index=False))
        acc = row["val_acc"]
        print(f"[{len(rows)}/{len(tasks)}] {row['family']:18s} {row['recipe']:10s} "
              f"n={row['subset']} e={row['epochs']:g} seed {row['seed']}: val "
              f"{'-' if acc is None else f'{acc:.4f}'} ({row['train_s']} s)", flush=True)

    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for fut in [pool.submit(run_one, *t, opts) for t in tasks]:
                done(fut.result())
    else:
        for t in tasks:
            done(run_one(*t, opts))
    text = summarise(rows)
    md_path = args.out / f"{args.preset}.md"
    atomic_write_text(md_path, f"# Recipe sweep ({args.preset})\n\nValidation top-1 "
                      f"({args.val_size} held-out images), batch {args.batch_size}, no "
                      f"augmentation, seeds {args.seeds}; recipes {json.dumps(RECIPES)}.\n\n"
                      f"```\n{text}\n```\n")
    print(text)
    prov.write(csv_path, files=[md_path.name])
    print(f"wrote {csv_path}, {md_path.name} (+ provenance)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
