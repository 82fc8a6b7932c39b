"""What a finished search reports: the best spec(s), a summary table, the trials as CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from scaling.cli import format_table
from scaling.search.objectives import INFEASIBLE, format_macs, get_objective
from scaling.search.workers import ATTEMPTS_PER_TRIAL, Census, max_attempts

PROXY_PREFIX = "proxy_"


def counts(study: Any) -> dict[str, int]:
    """Trials by state, plus how many were over budget (never evaluated, complete with the
    penalty) and how many were trained (complete or pruned, not over budget: what the target
    counts); a trial beyond the target that a concurrent worker started at the same instant
    counts as ``surplus``."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        key = "surplus" if t.user_attrs.get("surplus") else t.state.name.lower()
        out[key] = out.get(key, 0) + 1
        status = t.user_attrs.get("status")
        if status in INFEASIBLE:
            out[status] = out.get(status, 0) + 1
    out["trained"] = Census.of(study).trained
    return out


def target_status(study: Any, target: int) -> dict[str, Any]:
    """The trial target: trained trials, attempts, the cap (:func:`max_attempts`) and, when the
    cap ended the search short of the target, ``stopped``: a message saying so (else None)."""
    census = Census.of(study)
    cap = max_attempts(target)
    stopped = None
    if census.trained < target and census.attempts >= cap:
        stopped = (f"study {study.study_name!r}: {census.trained} of {target} trials trained; "
                   f"sampling stopped at the cap of {cap} attempts ({ATTEMPTS_PER_TRIAL} x "
                   f"the target), {census.over} samples outside the budget (or window) -- raise "
                   "the budget, widen --window or narrow the space's floor (fewer repeats, "
                   "smaller kernels)")
    return {"trained": census.trained, "target": target, "attempts": census.attempts,
            "max_attempts": cap, "stopped": stopped}


def best_trials(study: Any) -> list[Any]:
    """The best feasible trial (single objective: the re-evaluation's winner where the study
    holds one, :mod:`scaling.search.reevaluate`), or the Pareto front by MACs (pareto)."""
    from scaling.search.reevaluate import winner_trial

    if len(study.directions) > 1:
        return sorted(study.best_trials, key=lambda t: t.values[1])
    winner = winner_trial(study)
    if winner is not None:
        return [winner]
    try:
        return [study.best_trial]
    except ValueError:  # nothing feasible completed
        return []


def trial_record(trial: Any, with_spec: bool = True) -> dict[str, Any]:
    a = trial.user_attrs
    rec: dict[str, Any] = {
        "number": trial.number, "state": trial.state.name,
        "values": list(trial.values) if trial.values is not None else None,
        "macs": a.get("macs"), "params": a.get("params"), "status": a.get("status"),
        "score": a.get("score"), "val_acc": a.get("val_acc"),
        "proxies": {k[len(PROXY_PREFIX):]: v for k, v in a.items()
                    if k.startswith(PROXY_PREFIX)},
    }
    if a.get("recipe"):  # the trial's sampled training recipe (a space with ``recipe``)
        rec["recipe"] = a["recipe"]
    for key in ("enqueued", "epochs_trained", "train_samples", "reports"):
        if a.get(key) is not None:
            rec[key] = a[key]
    if rungs(trial):
        rec["rung"] = rungs(trial)
    if with_spec and a.get("spec"):
        rec["spec"] = json.loads(a["spec"])
    return rec


def rungs(trial: Any) -> int:
    """The successive-halving rungs ``trial`` completed (Optuna's ``completed_rung_<k>`` system
    attributes; 0 without such a pruner)."""
    return sum(k.startswith("completed_rung_") for k in getattr(trial, "system_attrs", {}))


def best_records(study: Any) -> list[dict[str, Any]]:
    """The records of :func:`best_trials` (``best.json``); the re-evaluation's winner carries
    its row of the re-evaluation table under ``reevaluation``."""
    from scaling.search.reevaluate import stored

    rows = {r["trial"]: r for r in (stored(study) or {"rows": []})["rows"]}
    records = [trial_record(t) for t in best_trials(study)]
    for rec in records:
        if rec["number"] in rows:
            rec["reevaluation"] = rows[rec["number"]]
    return records


def format_recipe(recipe: dict[str, Any] | None) -> str:
    """``{'optimizer': 'adamw', 'lr': 0.0031}`` -> ``'optimizer adamw, lr 0.0031'``."""
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in (recipe or {}).items())


def score_name(cfg: Any) -> str:
    """What a trial's score is: ``val_acc`` (trained: final validation top-1) or the zero-cost
    rank proxy's name."""
    return cfg.rank_proxy if cfg.evaluator == "zero-cost" else "val_acc"


def summary_table(study: Any, top: int = 10, score: str = "score") -> str:
    """The ``top`` evaluated trials (by value, or the Pareto front first) as an aligned table,
    the score's column named ``score`` (:func:`score_name`), the objective's by the study's
    metric names; a proxy that is already a column (``params``, the score) is not repeated; empty
    when no trial was evaluated."""
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.user_attrs.get("feasible") and t.user_attrs.get("score") is not None]
    front = {t.number for t in best_trials(study)}
    single = len(study.directions) == 1
    if single:
        trials.sort(key=lambda t: -t.value)
    else:
        trials.sort(key=lambda t: (t.number not in front, -t.values[0], t.values[1]))
    proxies = sorted({k for t in trials[:top] for k in t.user_attrs if k.startswith(PROXY_PREFIX)
                      and k[len(PROXY_PREFIX):] not in ("params", score)})
    value = (study.metric_names or ["value"])[0]
    single = single and value != score  # window: the value is the score
    header = ["trial", "best", "MACs", "params", score, *([value] if single else []),
              *(f"proxy {k[len(PROXY_PREFIX):]}" for k in proxies)]
    rows = []
    for t in trials[:top]:
        a = t.user_attrs
        cells = [t.number, "*" if t.number in front else "", format_macs(a["macs"]),
                 a.get("params"), a["score"], *([t.value] if single else [])]
        cells += ["-" if a.get(k) is None else f"{a[k]:.3g}" for k in proxies]
        rows.append(cells)
    return format_table(header, rows, left=0) if rows else ""


def tidy_trials(study: Any) -> Any:
    """One row per trial, the columns a reader needs (``<study>.trials.csv``), in this order:

    - ``trial``: Optuna's trial number; ``state``: COMPLETE, PRUNED, FAIL or RUNNING;
      ``status``: ok, over_budget or below_window (never built: scored the penalty, not counted
      in --trials),
      pruned or diverged;
    - ``macs``, ``params``: the analytic count of the trial's net (MACs at the search's
      resolution); ``budget``: the MAC budget;
    - ``val_acc``: final validation top-1 (train and hybrid evaluators), ``best_val_acc``: the best
      epoch's; ``score``: what the evaluator scored (val_acc, or the rank proxy for zero-cost);
    - the objective's values under the study's metric names (``reward`` = score x
      (MACs/budget)^w, MnasNet's; pareto: the two values it ranks);
    - ``proxy_<name>``: each zero-cost proxy recorded; ``recipe_<key>``: a sampled training recipe;
    - ``enqueued``: the zoo family an enqueued trial evaluates; ``epochs_trained``: the epochs a
      trained trial ran (its steps over the steps of an epoch), ``train_samples`` the images it
      trained on (its cost), ``reports`` the evaluation points its pruner saw; ``rung``: the
      successive-halving rungs it completed (``--pruner sha|hyperband``);
    - ``seconds``: the trial's wall time; ``worker``; ``started``; ``blocks``: the net as block
      strings (:func:`scaling.ir.encode_stages`; ``best.json`` holds the full spec).

    A score or proxy column that repeats an earlier one wherever it has a value is left out (with
    one epoch best_val_acc = val_acc; score = val_acc; the ``params`` proxy = params), and so is
    an empty column. Optuna's raw dump, every sampled parameter and user attribute, is
    ``<study>.csv``."""
    import pandas as pd

    names = study.metric_names or [f"value_{i}" for i in range(len(study.directions))]
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        for key in ("status", "macs", "params", "budget", "val_acc", "best_val_acc", "score"):
            row[key] = a.get(key)
        row.update({n: v for n, v in zip(names, t.values or [None] * len(names))
                    if n not in row})  # pareto's val_acc and macs are columns already
        row.update({k: v for k, v in sorted(a.items()) if k.startswith(PROXY_PREFIX)})
        row.update({f"recipe_{k}": v for k, v in (a.get("recipe") or {}).items()})
        row.update(enqueued=a.get("enqueued"), epochs_trained=a.get("epochs_trained"),
                   train_samples=a.get("train_samples"), reports=a.get("reports"),
                   rung=rungs(t) if rungs(t) else None)
        row["seconds"] = round(t.duration.total_seconds(), 3) if t.duration else None
        row.update(worker=a.get("worker"), started=t.datetime_start, blocks=a.get("blocks"))
        rows.append(row)
    df = pd.DataFrame(rows)
    df = df[[c for c in df.columns if df[c].notna().any() or c in ("trial", "state")]]
    measures = [c for c in df.columns if c in ("params", "val_acc", "best_val_acc", "score")
                or c.startswith(PROXY_PREFIX)]

    def repeats(c: str, o: str) -> bool:  # equal wherever c has a value (over-budget: none)
        return bool((df[c].isna() | (df[c] == df[o])).all())

    same = [c for i, c in enumerate(measures) if c != "params" and c != "val_acc"
            and any(repeats(c, o) for o in measures[:i])]
    return df.drop(columns=same)


def write_outputs(study: Any, out_dir: str, name: str | None = None) -> dict[str, str]:
    """Write ``<study>.trials.csv`` (:func:`tidy_trials`), ``<study>.csv`` (Optuna's raw
    ``study.trials_dataframe()``, which :mod:`scaling.analysis` reads) and ``<study>.best.json``,
    each atomically."""
    from scaling.files import atomic_write_json, atomic_write_text

    name = name or study.study_name
    os.makedirs(out_dir, exist_ok=True)
    csv_path = os.path.join(out_dir, f"{name}.csv")
    atomic_write_text(csv_path, study.trials_dataframe().to_csv(index=False))
    tidy_path = os.path.join(out_dir, f"{name}.trials.csv")
    atomic_write_text(tidy_path, tidy_trials(study).to_csv(index=False))
    best_path = os.path.join(out_dir, f"{name}.best.json")
    atomic_write_json(best_path, best_records(study))
    return {"trials_csv": tidy_path, "csv": csv_path, "best_json": best_path}


def in_repo(path: str) -> str:
    """A path or SQLite URL inside the repository made relative to it
    (:func:`scaling.study.provenance.repo_relative`); any other returned unchanged."""
    from scaling.study.provenance import ROOT, repo_relative

    file = path[len("sqlite:///"):] if path.startswith("sqlite:///") else path
    if "://" in file or not Path(file).resolve().is_relative_to(ROOT):
        return path
    return repo_relative(path)


def report(study: Any, cfg: Any, wall_time: float, paths: dict[str, str]) -> dict[str, Any]:
    """The whole report as one JSON-able dict (what ``--json`` prints); paths inside the
    repository are given relative to it (:func:`in_repo`)."""
    from scaling.search.reevaluate import stored

    objective = get_objective(cfg.objective)
    return {
        "study": study.study_name, "storage": in_repo(cfg.storage_url),
        "objective": objective.name,
        "objective_description": objective.description, "evaluator": cfg.evaluator,
        "budget": cfg.budget, "unit": "MACs", "resolution": cfg.resolution, "data": cfg.data,
        "counts": counts(study), "target": target_status(study, cfg.trials),
        "wall_time_s": round(wall_time, 2),
        "best": best_records(study),
        "reevaluation": stored(study),
        **{k: in_repo(v) for k, v in paths.items()},
    }
