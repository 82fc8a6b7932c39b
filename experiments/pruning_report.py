"""Issue 17's pruning report: how often would a pruned trial have beaten the best?

Loads a finished search study, draws a seeded sample of ``--sample`` of its pruned trials and
retrains each to the end of the study's protocol (its own spec and recipe, the study's seed,
data split, subset and epochs: :func:`scaling.search.evaluators.train_spec`, no pruner). Reports
the trials pruned, sampled and rerun, the best completed trial's validation accuracy, and how
many reruns reach more (would have won).

    python experiments/pruning_report.py --study baseline \\
        --storage sqlite:///results/search/baseline.db --sample 5

Writes ``results/pruning/<study>.json`` and ``.md`` (+ provenance).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def study_config(study: Any) -> Any:
    """The :class:`~scaling.search.config.SearchConfig` a study was run with (its system attr,
    or the ``config``/``identity`` user attrs of older studies)."""
    from scaling.search.config import SearchConfig
    from scaling.search.storage import CONFIG_ATTR

    system = study._storage.get_study_system_attrs(study._study_id)
    stored = system.get(CONFIG_ATTR) or study.user_attrs.get("config") \
        or study.user_attrs.get("identity")
    if not stored:
        raise ValueError(f"study {study.study_name!r} holds no search configuration (not made "
                         "by scaling.search)")
    cfg = SearchConfig.from_dict(stored)
    cfg.study = study.study_name
    if "prune_warmup" not in stored:  # older studies: the median pruner acted from epoch 1
        cfg.prune_warmup = 0.0
    return cfg


def rerun_pruned(study: Any, sample: int, seed: int = 0, data: Any = None,
                 threads: int | None = None, log: Any = print) -> dict[str, Any]:
    """Retrain a seeded sample of ``study``'s pruned trials to the end; the report as a dict.
    ``data``: an :class:`~scaling.data.ImageData` instead of the study's dataset (tests)."""
    from optuna.trial import TrialState

    from scaling.ir import NetworkSpec
    from scaling.search.evaluators import SearchContext, train_spec
    from scaling.search.space import load_space

    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 0:
        raise ValueError(f"sample={sample!r} is not allowed; expected an int >= 0")
    cfg = study_config(study)
    cfg.space = load_space(cfg.space)
    if threads:
        cfg.threads = threads
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
              if t.user_attrs.get("spec")]
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("val_acc") is not None]
    best = max(complete, key=lambda t: t.user_attrs["val_acc"], default=None)
    best_acc = best.user_attrs["val_acc"] if best else None
    chosen = sorted(random.Random(seed).sample(pruned, min(sample, len(pruned))),
                    key=lambda t: t.number)
    ctx = SearchContext(cfg, data=data)
    reruns = []
    for t in chosen:
        spec = NetworkSpec.from_json(t.user_attrs["spec"])
        result = train_spec(ctx, spec, recipe=t.user_attrs.get("recipe"))
        acc = result.final_val_top1
        history = t.user_attrs.get("val_history") or []
        won = acc is not None and best_acc is not None and acc > best_acc
        reruns.append({"number": t.number, "pruned_at_epoch": len(history),
                       "val_at_pruning": history[-1] if history else None,
                       "final_val_acc": acc, "status": result.status, "beats_best": won,
                       "recipe": t.user_attrs.get("recipe")})
        log(f"trial {t.number}: pruned after epoch {len(history)} at "
            f"{history[-1] if history else '-'}; rerun to the end: {acc} "
            f"({'beats' if won else 'below'} the best {best_acc})")
    return {"study": study.study_name, "epochs": cfg.epochs, "pruner": cfg.pruner,
            "prune_warmup": getattr(cfg, "prune_warmup", None),
            "completed": len(complete), "pruned": len(pruned), "sampled": len(chosen),
            "rerun": sum(r["status"] == "ok" for r in reruns),
            "best_trial": best.number if best else None, "best_val_acc": best_acc,
            "would_have_won": sum(r["beats_best"] for r in reruns), "reruns": reruns}


def to_markdown(rep: dict[str, Any]) -> str:
    from scaling.cli import count_of, format_table

    rows = [[r["number"], r["pruned_at_epoch"], r["val_at_pruning"], r["final_val_acc"],
             "yes" if r["beats_best"] else "no"] for r in rep["reruns"]]
    return (f"# Pruning report: {rep['study']}\n\n"
            f"{rep['pruned']} pruned and {rep['completed']} completed trials ({rep['pruner']} "
            f"pruner, {count_of(rep['epochs'], 'epoch')}); {rep['sampled']} pruned trials sampled, "
            f"{rep['rerun']} rerun to the end; **{rep['would_have_won']} would have beaten the "
            f"best completed trial** (#{rep['best_trial']}, val {rep['best_val_acc']}).\n\n```\n"
            + format_table(["trial", "pruned at epoch", "val then", "val at the end", "beats best"],
                           rows, left=0) + "\n```\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", required=True, help="study name")
    p.add_argument("--storage", required=True, help="Optuna storage URL of the study")
    p.add_argument("--sample", type=int, default=5, help="pruned trials to rerun")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "pruning")
    args = p.parse_args(argv)
    import optuna

    from scaling.study.provenance import Provenance, atomic_write_json, atomic_write_text

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prov = Provenance(seeds=[args.seed], study=args.study)
    try:
        study = optuna.load_study(study_name=args.study, storage=args.storage)
        rep = rerun_pruned(study, args.sample, args.seed, threads=args.threads)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{args.study}.json"
    atomic_write_json(json_path, rep)
    md_path = args.out / f"{args.study}.md"
    atomic_write_text(md_path, to_markdown(rep))
    prov.write(json_path, files=[md_path.name])
    print(json.dumps({k: v for k, v in rep.items() if k != "reruns"}))
    print(f"wrote {json_path}, {md_path.name} (+ provenance)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
