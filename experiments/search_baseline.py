"""The baseline architecture search (issue 7) and its check against hand-designed baselines.

Budget: 6M MACs (conv + linear multiply-adds, analytic) at 28x28x1, Fashion-MNIST, 10 classes.
Search: ``python -m scaling.search``'s library with the MnasNet reward (w = -0.07, T = budget), TPE
(10 random start-up trials), the ``train`` evaluator with a median pruner over epochs, every
trial also recording the zero-cost proxies. Protocol of every training here (the
``quick`` preset, scaling/study/protocol.py): 3,000 training images, 1,000 validation images held
out of the training set (split seed 0), 2 epochs, batch 64, SGD lr 0.1 (Nesterov, warm-up + cosine,
label smoothing 0.1), no augmentation, 1 CPU thread.

Comparison: MobileNetV2 (width multiplier) and ShuffleNetV2 (x0.5 layout, compound width) with
the small-input stem (stride 1), each at the largest width within the same budget, trained by the
same protocol with the search's seed and with ``--retrain-seeds`` (the best searched spec is
retrained on those seeds too, so the comparison does not rest on the max over trials; retraining
it with the search seed also checks that its recorded accuracy reproduces). Test accuracy on the
first ``--test-size`` test images is reported once per trained model; nothing is tuned on it.

    python experiments/search_baseline.py            # full: 40 trials (~20 CPU minutes)
    python experiments/search_baseline.py --quick    # 6 small trials (a few CPU minutes)

Writes ``results/search/<name>.{db,csv,trials.csv,best.json,json,comparison.csv,provenance.json}``;
``<name>.json`` holds the best spec under ``spec`` (what scaling/study/protocol.py loads as the
searched baseline from ``results/search/baseline.json``).
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

PRESETS: dict[str, dict[str, Any]] = {
    "full": {"trials": 40, "subset": 3000, "val_size": 1000, "epochs": 2.0,
             "retrain_seeds": [1, 2],
             "test_size": 2000, "name": "baseline"},
    "quick": {"trials": 6, "subset": 1000, "val_size": 500, "epochs": 2.0, "retrain_seeds": [],
              "test_size": 500, "name": "baseline-quick"},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a few CPU minutes (6 small trials)")
    p.add_argument("--budget", default="6M", help="MAC budget (default 6M)")
    p.add_argument("--trials", type=int, help="search trials (full 40, quick 6)")
    p.add_argument("--subset", type=int, help="training images (full 3000)")
    p.add_argument("--val-size", type=int, help="validation images (full 1000)")
    p.add_argument("--epochs", type=float, help="epochs (full 2)")
    p.add_argument("--retrain-seeds", type=int, nargs="*", help="extra seeds (full: 1 2)")
    p.add_argument("--test-size", type=int, help="test images evaluated (full 2000)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--evaluator", default="train")
    p.add_argument("--objective", default="reward")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after S s")
    p.add_argument("--name", help="study / file name (full 'baseline', quick 'baseline-quick')")
    p.add_argument("--out", default=str(ROOT / "results" / "search"))
    p.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.add_argument("--space", help="search space YAML/JSON (a 'recipe' entry searches the "
                   "training recipe too; default: the built-in space, fixed recipe)")
    args = p.parse_args(argv)
    preset = PRESETS["quick" if args.quick else "full"]
    for key, value in preset.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def fitted_baselines(budget: int) -> dict[str, tuple[Any, float]]:
    """MobileNetV2 and ShuffleNetV2 at the largest width multiplier within ``budget`` MACs."""
    from scaling.compound import scale
    from scaling.search.space import fit_multiplier
    from scaling.zoo import get_spec

    small = {"in_chans": 1, "resolution": 28, "num_classes": 10, "small_input": True}
    shuffle = get_spec("shufflenet_v2_x0_5", **small)
    makers = {
        "mobilenet_v2": lambda w: get_spec("mobilenet_v2", width=w, **small),
        "shufflenet_v2": lambda w: scale(shuffle, width=w, name="shufflenet_v2"),
    }
    out = {}
    for name, make in makers.items():
        w = fit_multiplier(make, budget, 0.1, 3.0)
        out[name] = (make(w).replace(name=f"{name} (width {w:.3f})"), w)
    return out


def _test_view(data: Any, n: int | None) -> Any:
    from scaling.data import TensorSplit

    if n is None or data.test is None or n >= len(data.test):
        return data
    return dataclasses.replace(data, test=TensorSplit(data.test.x[:n], data.test.y[:n]))


def _pct(x: float | None) -> str:
    """A top-1 fraction as a percentage with two decimals; '-' when not evaluated."""
    return "-" if x is None or x != x else f"{100 * x:.2f}%"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from scaling.cli import count_of, format_table
    from scaling.cost import complexity
    from scaling.ir import NetworkSpec, encode_stages
    from scaling.search.evaluators import SearchContext, train_spec
    from scaling.search.objectives import format_macs, parse_budget
    from scaling.search.report import best_trials, counts, format_recipe, write_outputs
    from scaling.search.study import SearchConfig, run_search
    from scaling.study.provenance import (
        Provenance,
        atomic_write_json,
        atomic_write_text,
        repo_relative,
    )
    from scaling.train import evaluate

    budget = parse_budget(args.budget)
    seeds = [args.seed, *args.retrain_seeds]
    prov = Provenance(seeds=seeds, device=args.device, budget_macs=budget)
    cfg = SearchConfig(
        study=args.name, budget=budget, objective=args.objective, evaluator=args.evaluator,
        data="fashion-mnist", resolution=28, trials=args.trials, timeout=args.timeout,
        workers=args.workers, seed=args.seed, device=args.device, epochs=args.epochs,
        subset=args.subset, val_size=args.val_size, batch_size=args.batch_size, lr=args.lr,
        threads=args.threads, out_dir=args.out, resume=args.resume, space=args.space,
        reevaluate=0)  # --retrain-seeds retrains the pick
    print(f"search {cfg.study}: budget {format_macs(budget)} MACs at 28x28, {cfg.trials} trials, "
          f"protocol subset {cfg.subset}, val {cfg.val_size}, {count_of(cfg.epochs, 'epoch')}",
          flush=True)
    info = run_search(cfg)
    study = info.study
    paths = write_outputs(study, cfg.out_dir)
    best = best_trials(study)
    if not best:
        print("no feasible trial finished", file=sys.stderr)
        return 1
    top = max(best, key=lambda t: t.user_attrs["val_acc"] or 0.0)
    searched = NetworkSpec.from_json(top.user_attrs["spec"]).replace(name=f"searched #{top.number}")
    recipe = top.user_attrs.get("recipe") or {}  # {}: the fixed recipe of the protocol
    print(f"best trial #{top.number} ({format_macs(top.user_attrs['macs'])} MACs, val "
          f"{_pct(top.user_attrs['val_acc'])}):", *encode_stages(searched), sep="\n  ")
    if recipe:
        print(f"  recipe: {format_recipe(recipe)}")

    ctx = SearchContext(cfg)
    data = _test_view(ctx.data(), args.test_size)
    models = {"searched": searched, **{k: v[0] for k, v in fitted_baselines(budget).items()}}
    rows = []
    for seed in seeds:
        for label, spec in models.items():
            result = train_spec(ctx, spec, seed=seed,
                                recipe=recipe if label == "searched" else None)
            test = evaluate(result.model, data, split="test") if result.model is not None else None
            cost = complexity(spec)
            rows.append({"model": label, "name": spec.name, "seed": seed, "macs": cost.macs,
                         "params": cost.params, "status": result.status,
                         "val_acc": result.final_val_top1, "test_acc": test,
                         "train_time_s": round(result.train_time, 1),
                         "images_per_s": round(result.images_per_s, 1)})
            print(f"  {label:14s} seed {seed}: {format_macs(cost.macs)} MACs, val "
                  f"{_pct(result.final_val_top1)}, test {_pct(test)}", flush=True)
    import pandas as pd

    table = pd.DataFrame(rows)
    summary = table.groupby("model").agg(
        macs=("macs", "first"), params=("params", "first"), val_acc=("val_acc", "mean"),
        test_acc=("test_acc", "mean"), n=("seed", "count")).reset_index()
    beats = all(summary.set_index("model").val_acc["searched"] > summary.set_index("model")
                .val_acc[b] for b in ("mobilenet_v2", "shufflenet_v2"))
    print(format_table(["model", "MACs", "params", "val top-1", "test top-1", "n"],
                       ([r.model, format_macs(r.macs), int(r.params), _pct(r.val_acc),
                         _pct(r.test_acc), int(r.n)] for r in summary.itertuples()), left=1))
    print(f"searched beats both baselines on mean validation accuracy: {beats}")

    out = Path(cfg.out_dir)
    csv_path = out / f"{cfg.study}.comparison.csv"
    atomic_write_text(csv_path, table.to_csv(index=False))
    result_path = out / f"{cfg.study}.json"
    record = {
        "budget": budget, "unit": "MACs", "resolution": 28, "dataset": "fashion-mnist",
        "protocol": {k: getattr(cfg, k) for k in ("subset", "val_size", "epochs", "batch_size",
                                                  "optimizer", "lr", "augment", "threads")},
        "search": {"study": cfg.study, "storage": repo_relative(cfg.storage_url),
                   "objective": cfg.objective, "evaluator": cfg.evaluator, "trials": counts(study),
                   "wall_time_s": round(info.wall_time, 1), "best_trial": top.number,
                   "best_val_acc": top.user_attrs["val_acc"], "best_macs": top.user_attrs["macs"],
                   **{k: str(Path(v).name) for k, v in paths.items()}},
        "spec": json.loads(top.user_attrs["spec"]), "recipe": recipe,
        "baseline_widths": {k: round(v[1], 4) for k, v in fitted_baselines(budget).items()},
        "comparison": rows, "summary": summary.to_dict(orient="records"),
        "searched_beats_baselines": bool(beats), "comparison_csv": csv_path.name,
    }
    atomic_write_json(result_path, record)
    prov.write(result_path, files=[Path(p).name for p in (*paths.values(), csv_path)])
    print(f"wrote {result_path} (+ {csv_path.name}, provenance)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
