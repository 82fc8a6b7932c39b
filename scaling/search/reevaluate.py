"""A sound pick: the best few trials retrained with more seeds, the winner by the mean.

The trials of a search are scored once, with one seed, on a few thousand validation images
(2,000 carry about 0.75 points of standard error), and the best of many noisy scores is biased
upward (the winner's curse). So after the search the best ``reevaluate`` (K) trained trials of a
single-objective study are retrained under the same protocol
(:func:`scaling.search.evaluators.train_spec`: the same data split, subset, epochs, fixed recipe
and the trial's own sampled recipe, no pruning) with the seeds ``seed + 1 .. seed + S``
(``reevaluate_seeds``). The search's own run is left out of the mean, since it is what selected
the trial. Every complete enqueued hand-designed family (``--enqueue``) is re-evaluated beside
them, whatever its rank, so the pick is measured against the known nets on the same seeds.

The winner is the trial whose objective value at its mean validation accuracy is best
(``window``: the mean itself; ``reward``: the reward of the mean), with one guard against the
winner's curse (the best of K noisy means is biased upward): a searched trial displaces the best
enqueued family only if it leads it by more than ``pick_margin`` standard errors of the
difference of two means, the seed standard deviation pooled over every re-evaluated trial
(:func:`pick`). Otherwise the enqueued family is the winner: the search returns the best
hand-designed net it was given unless it found one measurably better.

The retrainings run in ``workers`` processes (this one and spawned ones, each taking every
``workers``-th of them, on the search's storage). Each retraining is stored in the study (user
attr ``reeval:<trial>:<seed>``), so a resumed or repeated run retrains only what is missing;
the table and the winner are stored as the study's user attr ``reevaluation``, which
:func:`scaling.search.report.best_trials` reads: ``best.json``'s record is the winner. Not
done for the zero-cost evaluator (nothing was trained: its score is a deterministic proxy)
nor for ``pareto`` (the front is the answer, not one winner); the stored table is then
cleared.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from scaling.search.objectives import get_objective

ATTR = "reevaluation"
#: the evaluators whose score is a training run by :func:`scaling.search.evaluators.train_spec`
TRAINING_EVALUATORS = ("train", "hybrid")


def skip_reason(cfg: Any) -> str | None:
    """Why ``cfg``'s search is not re-evaluated (None: it is)."""
    if not cfg.reevaluate:
        return "--reevaluate 0"
    if cfg.evaluator == "zero-cost":
        return "the zero-cost evaluator trains nothing"
    if cfg.evaluator not in TRAINING_EVALUATORS:  # a user's own: its protocol is not train_spec
        return f"evaluator {cfg.evaluator!r} is not one that trains by the search's protocol"
    if get_objective(cfg.objective).multi:
        return "a Pareto front has no single winner"
    return None


def candidates(study: Any, k: int) -> list[Any]:
    """The ``k`` best trained trials of a single-objective study: complete, feasible, scored
    (not pruned: a pruned trial never reached the protocol's top rung), by value."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("feasible") and t.user_attrs.get("score") is not None
            and t.user_attrs.get("status") == "ok"]
    ranked = sorted(done, key=lambda t: (-t.value, t.number))
    top = ranked[:k]
    return top + [t for t in ranked[k:] if t.user_attrs.get("enqueued")]


def pooled_std(rows: list[dict[str, Any]]) -> float | None:
    """The seed standard deviation of validation accuracy pooled over ``rows`` (each row's
    ``val_accs``): sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)); None without 2 seeds in a row."""
    ss, df = 0.0, 0
    for row in rows:
        ok = [a for a in row["val_accs"] if a is not None]
        if len(ok) > 1:
            ss += statistics.variance(ok) * (len(ok) - 1)
            df += len(ok) - 1
    return (ss / df) ** 0.5 if df else None


def pick(rows: list[dict[str, Any]], margin: float) -> tuple[int | None, dict[str, Any]]:
    """The winning trial of the re-evaluated ``rows`` (module docstring) and how it was
    decided: ``best`` (the best value), ``kept`` (the enqueued family kept, or None), ``lead``
    and ``se`` (the best searched trial's lead over it, and the SE of that difference)."""
    scored = [r for r in rows if r["value"] is not None]
    if not scored:
        return None, {"best": None, "kept": None, "lead": None, "se": None}
    best = max(scored, key=lambda r: r["value"])
    known = [r for r in scored if r.get("enqueued")]
    how: dict[str, Any] = {"best": best["trial"], "kept": None, "lead": None, "se": None,
                           "margin": margin}
    if not known or best.get("enqueued"):
        return best["trial"], how
    ref = max(known, key=lambda r: r["value"])
    std = pooled_std(scored)
    se = None if std is None else std * (1 / best["n"] + 1 / ref["n"]) ** 0.5
    how.update(lead=best["value"] - ref["value"], se=se)
    if margin <= 0 or se is None or how["lead"] > margin * se:
        return best["trial"], how
    how["kept"] = ref["trial"]
    return ref["trial"], how


def _seed_key(number: int, seed: int) -> str:
    return f"reeval:{number}:{seed}"


def _row(study: Any, trial: Any, seeds: list[int], cfg: Any) -> dict[str, Any]:
    """The re-evaluation row of ``trial`` from the stored retrainings."""
    attrs = study.user_attrs  # a seed a dead helper left unstored is missing from the mean
    accs = [attrs.get(_seed_key(trial.number, s), {}).get("val_acc") for s in seeds]
    ok = [a for a in accs if a is not None]
    mean = statistics.fmean(ok) if ok else None
    objective = get_objective(cfg.objective)
    macs = trial.user_attrs["macs"]
    value = None if mean is None else objective.values(mean, macs, cfg.budget, cfg.reward_w)
    return {"trial": trial.number, "macs": macs, "search_val_acc": trial.user_attrs["score"],
            "mean": mean, "std": statistics.stdev(ok) if len(ok) > 1 else None, "n": len(ok),
            "value": value, "seeds": seeds, "val_accs": accs,
            "enqueued": trial.user_attrs.get("enqueued")}


def reevaluate(study: Any, cfg: Any, data: Any = None,
               emit: Callable[[str], None] = lambda line: None) -> dict[str, Any] | None:
    """Re-evaluate ``study``'s best trials (module docstring); returns the table ``{"k",
    "seeds", "rows", "winner"}`` (also stored in the study), or None when skipped or nothing
    was trained."""
    from scaling.search.evaluators import SearchContext

    if skip_reason(cfg) is not None:
        if study.user_attrs.get(ATTR) is not None:
            study.set_user_attr(ATTR, None)
        return None
    top = candidates(study, cfg.reevaluate)
    if not top:
        return None
    seeds = [cfg.seed + i for i in range(1, cfg.reevaluate_seeds + 1)]
    stored = study.user_attrs
    jobs = [(t.number, s) for t in top for s in seeds if _seed_key(t.number, s) not in stored]
    shares = max(1, min(cfg.workers, len(jobs)))
    with _helpers(cfg, jobs, shares):  # shares 1.. in other processes, share 0 here
        train_jobs(study, SearchContext(cfg, data=data), jobs[::shares], emit)
    rows = [_row(study, t, seeds, cfg) for t in top]
    winner, how = pick(rows, getattr(cfg, "pick_margin", 0.0))
    table = {"k": cfg.reevaluate, "seeds": seeds, "rows": rows, "winner": winner, "pick": how}
    study.set_user_attr(ATTR, table)
    return table


def train_jobs(study: Any, ctx: Any, jobs: list[tuple[int, int]],
               emit: Callable[[str], None] = lambda line: None) -> None:
    """Retrain each (trial number, seed) of ``jobs`` not yet stored, and store it."""
    from scaling.ir import NetworkSpec
    from scaling.search.evaluators import train_spec

    trials = study.get_trials(deepcopy=False)
    for number, seed in jobs:
        key = _seed_key(number, seed)
        if key in study.user_attrs:
            continue
        trial = trials[number]
        t0 = time.monotonic()
        result = train_spec(ctx, NetworkSpec.from_json(trial.user_attrs["spec"]), seed=seed,
                            recipe=trial.user_attrs.get("recipe"))
        acc = result.final_val_top1 if result.status == "ok" else None
        study.set_user_attr(key, {"val_acc": acc, "status": result.status})
        shown = "-" if acc is None else f"{acc:.4f}"
        emit(f"re-evaluation: trial #{number} seed {seed}: val_acc {shown}, "
             f"status {result.status}, {time.monotonic() - t0:.1f} s")


def _share(cfg_dict: dict[str, Any], jobs: list[tuple[int, int]], parent: int) -> None:
    """A spawned process's share of the re-evaluation, on the search's storage (the target
    :func:`scaling.search.storage.run_spawned` runs)."""
    import optuna

    from scaling.search.config import SearchConfig
    from scaling.search.evaluators import SearchContext
    from scaling.search.storage import open_storage
    from scaling.search.workers import die_with_parent

    die_with_parent(parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = SearchConfig.from_dict(cfg_dict)
    study = optuna.load_study(study_name=cfg.study, storage=open_storage(cfg))
    train_jobs(study, SearchContext(cfg), jobs)


@contextlib.contextmanager
def _helpers(cfg: Any, jobs: list[tuple[int, int]], shares: int) -> Iterator[None]:
    """Run shares 1..``shares - 1`` of ``jobs`` (every ``shares``-th job) in spawned
    processes on the search's storage (``cfg.workers`` of them in all, this one included) while
    the body runs share 0; wait for them, and stop them if the body fails. What a helper did
    not store (it died) the body's caller finds missing: the table then has fewer seeds."""
    from scaling.search.storage import run_spawned
    from scaling.search.workers import stop_processes

    if shares < 2:
        yield
        return
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    procs = [ctx.Process(target=run_spawned,
                         args=(_share, cfg.to_dict(), jobs[r::shares], os.getpid()),
                         name=f"reevaluate-{r}") for r in range(1, shares)]
    for p in procs:
        p.start()
    try:
        yield
        for p in procs:
            p.join()
    finally:
        stop_processes(procs)


def stored(study: Any) -> dict[str, Any] | None:
    """The study's stored re-evaluation table (None: none, or cleared)."""
    return study.user_attrs.get(ATTR)


def winner_trial(study: Any) -> Any | None:
    """The re-evaluation's winning trial, or None (no re-evaluation, no winner)."""
    table = stored(study)
    if not table or table.get("winner") is None:
        return None
    return study.get_trials(deepcopy=False)[table["winner"]]


def format_reevaluation(table: dict[str, Any]) -> str:
    """The table as aligned text, the winner marked ``*``: trial, MACs, the search's val_acc,
    the mean, std and number of the new seeds' val_acc."""
    from scaling.cli import format_table
    from scaling.cost.units import format_macs

    rows = [[r["trial"], "*" if r["trial"] == table["winner"] else "", format_macs(r["macs"]),
             r["search_val_acc"], r["mean"], r["std"], r["n"], r.get("enqueued") or ""]
            for r in table["rows"]]
    text = format_table(["trial", "winner", "MACs", "search val_acc", "mean val_acc", "std",
                         "n", "enqueued"], rows, left=0)
    line = pick_line(table)
    return text + ("\n" + line if line else "")


def pick_line(table: dict[str, Any]) -> str:
    """One sentence on how the winner was picked (empty for a table without the record)."""
    how = table.get("pick") or {}
    if how.get("lead") is None or how.get("se") is None:
        return ""
    verdict = (f"kept the enqueued trial #{how['kept']}" if how["kept"] is not None
               else f"picked #{how['best']}")
    return (f"pick: the best searched trial #{how['best']} leads the best enqueued family by "
            f"{100 * how['lead']:+.2f} points (SE of the difference {100 * how['se']:.2f}, "
            f"margin {how['margin']:g} SE): {verdict}")


def reevaluation_markdown(table: dict[str, Any] | None) -> list[str]:
    """The search's re-evaluation (:mod:`scaling.search.reevaluate`) as a table and the pick's
    sentence; nothing for a search without one."""
    if not table or not table.get("rows"):
        return []
    out = [f"The best {table['k']} trials, and every enqueued family, retrained with seeds "
           f"{table['seeds']} (the search's own run left out); the winner (*) is the best mean "
           "unless the pick keeps the enqueued family:", "",
           "| trial | enqueued | MACs | search val top-1 (%) | mean val top-1 (%) | std | n |",
           "|---:|---|---:|---:|---:|---:|---:|"]
    for r in table["rows"]:
        star = "*" if r["trial"] == table["winner"] else ""
        std = "-" if r["std"] is None else f"{100 * r['std']:.2f}"
        mean = "-" if r["mean"] is None else f"{100 * r['mean']:.2f}"
        out.append(f"| {r['trial']}{star} | {r.get('enqueued') or ''} | "
                   f"{r['macs'] / 1e6:.3f}M | {100 * r['search_val_acc']:.2f} | "
                   f"{mean} | "
                   f"{std} | {r['n']} |")
    line = pick_line(table)
    return out + ([""] + [line[0].upper() + line[1:] + "."] if line else []) + [""]
