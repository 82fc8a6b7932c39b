"""Studies: samplers, the run loop, worker processes, hybrid screening (the storage, study
creation and stale trials are in :mod:`scaling.search.storage`).

``trials`` is the study's target number of trained trials (complete or pruned, not over budget),
global across every process sharing the storage: a resumed run (``resume=True``) only runs the
remainder; ``workers`` > 1 spawns that many processes (``spawn`` start method: safe after CUDA
initialisation), and separate ``python -m scaling.search --resume`` processes may join. Each
process starts a trial only while ``trained + running < trials``, and a trial that finds the
target already claimed by lower-numbered trials (two processes starting at the same instant)
ends at once as FAIL with the user attr ``surplus``. Spawned workers die with their parent.
An over-budget sample is recorded (constraint and penalty) and does not use up the target;
sampling stops at :data:`~scaling.search.workers.ATTEMPTS_PER_TRIAL` x ``trials`` attempts, and
the search then warns (and the report says) how many trials were trained.

Samplers are seeded from the study's seed and the number of the process's first trial
(:class:`~scaling.search.workers.ProcessSeededSampler`): every process and every resume draws
different samples; a fresh single-process search draws what it always drew.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scaling.search.config import ConfigError, SearchConfig, StorageError
from scaling.search.evaluators import EVALUATORS, SearchContext, make_objective
from scaling.search.objectives import (
    INFEASIBLE,
    constraints_func,
    format_macs,
    get_objective,
    needs_constraints_func,
)
from scaling.search.report import target_status
from scaling.search.storage import fail_stale, open_storage, run_spawned
from scaling.search.storage import open_study as _open_study
from scaling.search.workers import (
    Census,
    ProcessSeededSampler,
    die_with_parent,
    max_attempts,
    run_trials,
    stop_processes,
)


# -- samplers, pruners, studies -------------------------------------------------------------------
def make_sampler(cfg: SearchConfig, kind: str | None = None) -> Any:
    """The study's sampler, seeded at this process's first trial from (``cfg.seed``, its
    number)."""
    import optuna

    kind = kind or cfg.sampler
    extra = {"constraints_func": constraints_func} if needs_constraints_func() else {}

    def build(seed: int) -> Any:
        if kind == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if kind == "nsga2":
            return optuna.samplers.NSGAIISampler(
                seed=seed, population_size=max(4, min(50, cfg.trials // 3)), **extra)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials,
                                          **extra)

    return ProcessSeededSampler(build, cfg.seed)


def make_pruner(cfg: SearchConfig) -> Any:
    """The study's pruner, over the trial's evaluation points (``evals_per_epoch`` an epoch, the
    steps of the same schedule: a rung is a partial run of the full protocol). ``sha``
    (successive halving, Jamieson & Talwalkar 2016; asynchronous as in ASHA, Li et al. 2020) and
    ``hyperband`` (Li et al. 2018): the lowest rung at ``min_resource`` reports (about
    1/F^2 of the run, F = ``prune_factor``), each next rung F times longer, and the top rung the
    protocol itself (a trial that is never pruned trains exactly what the study trains).
    ``median``: after ``prune_warmup`` of the run."""
    import optuna

    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.prune_startup,
                                           n_warmup_steps=cfg.prune_warmup_steps)
    if cfg.pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=cfg.min_resource,
                                                      reduction_factor=cfg.prune_factor)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=cfg.min_resource,
                                              max_resource=cfg.reports,
                                              reduction_factor=cfg.prune_factor)
    return optuna.pruners.NopPruner()


def open_study(cfg: SearchConfig, storage: Any, rank: int = 0, *, create: bool = False,
               sampler: str | None = None) -> Any:
    """:func:`scaling.search.storage.open_study` with this config's sampler and pruner (``rank``
    is kept for callers: the sampler seeds by first trial number, which no two processes
    share)."""
    return _open_study(cfg, storage, make_sampler(cfg, sampler), make_pruner(cfg), create=create)


# -- running --------------------------------------------------------------------------------------
def progress_callback(cfg: SearchConfig, rank: int, emit: Callable[[str], None],
                      clock: Callable[[], float] = time.monotonic) -> Callable[[Any, Any], None]:
    """One line per finished trial, each field named: ``trial k of N`` (trained trials of the
    target, all processes counted; an over-budget sample is not counted), Optuna's number, its
    state and status, MACs, the score (:func:`~scaling.search.report.score_name`), the
    objective's value(s) under the study's metric names, the best so far, the trial's seconds
    and an ETA: this process's seconds per counted trial times the trials left, divided among
    the workers (``tqdm``'s interval format)."""
    from tqdm import tqdm

    from scaling.search.report import score_name

    objective = get_objective(cfg.objective)
    label = score_name(cfg)
    start, counted = clock(), [0]

    def callback(study: Any, trial: Any) -> None:
        attrs = trial.user_attrs
        macs, score = attrs.get("macs"), attrs.get("score")
        names = study.metric_names or ["value"] * len(study.directions)
        status = attrs.get("status", "-")
        head = f"[w{rank}] trial"
        if status in INFEASIBLE or attrs.get("surplus"):
            emit(f"{head} #{trial.number} {status.replace('_', ' ')}: "
                 f"{format_macs(macs) if macs is not None else '-'} MACs, not counted")
            return
        trained = Census.of(study).trained
        counted[0] += 1
        if objective.multi:
            best = f"Pareto front {len(study.best_trials)} trials"
            value = ""  # its values are the score and the MACs
        else:
            try:
                bt = study.best_trial
                best = f"best {names[0]} {bt.value:.4f} (#{bt.number})"
            except ValueError:
                best = f"best {names[0]} -"
            value = "" if trial.value is None or names[0] == label \
                else f", {names[0]} {trial.value:.4f}"
        dur = trial.duration.total_seconds() if trial.duration else 0.0
        left = max(0, cfg.trials - trained)
        eta = (clock() - start) / counted[0] * left / max(1, cfg.workers)
        tag = f", enqueued {attrs['enqueued']}" if attrs.get("enqueued") else ""
        emit(f"{head} {trained} of {cfg.trials} (#{trial.number}{tag}) "
             f"{trial.state.name.lower()}, "
             f"status {status}: {format_macs(macs) if macs is not None else '-'} MACs, "
             f"{label} {'-' if score is None else f'{score:.4f}'}{value} | {best} | "
             f"{dur:.1f} s, ETA {tqdm.format_interval(eta)}")

    return callback


def with_blocks(objective: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``objective`` that also stores the trial's spec as compact block strings (user attr
    ``blocks``, :func:`scaling.ir.encode_stages`, space-separated) beside its JSON ``spec``."""
    import json

    from scaling.ir import NetworkSpec, encode_stages

    def run(trial: Any) -> Any:
        try:
            return objective(trial)
        finally:
            spec = trial.user_attrs.get("spec")
            if spec:
                trial.set_user_attr("blocks", " ".join(
                    encode_stages(NetworkSpec.from_dict(json.loads(spec)))))

    return run


def run_worker(cfg_dict: dict[str, Any], rank: int, target: int,
               study_name: str | None = None, evaluator: str | None = None,
               sampler: str | None = None, to_stderr: bool = False,
               parent: int | None = None, data: Any = None) -> int:
    """One worker: load the study and run trials until it has ``target`` trained trials, all
    processes counted (:func:`scaling.search.workers.run_trials`); a spawned worker passes its
    ``parent``'s pid and dies with it. Returns the trials this worker ran."""
    import optuna

    if parent is not None:
        die_with_parent(parent)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    cfg = SearchConfig.from_dict(cfg_dict)
    if cfg.threads:  # proxies and training; 1 thread was 4x faster on the busy 2-core CPU
        import torch

        torch.set_num_threads(cfg.threads)
    if study_name:
        cfg.study = study_name
    storage = open_storage(cfg)
    study = open_study(cfg, storage, rank, sampler=sampler)
    ctx = SearchContext(cfg, rank, data=data)
    stream = sys.stderr if to_stderr else sys.stdout

    def emit(line: str) -> None:
        print(line, file=stream, flush=True)

    callbacks = [] if cfg.quiet else [progress_callback(cfg, rank, emit)]
    return run_trials(study, with_blocks(make_objective(ctx, evaluator)), target,
                      timeout=cfg.timeout, fail_stale=lambda s: fail_stale(s, cfg.grace),
                      callbacks=callbacks, catch=(RuntimeError, ValueError))


def _run_pool(cfg: SearchConfig, to_stderr: bool, data: Any = None) -> None:
    """``cfg.workers`` processes (one: this process, on ``data``) run the study up to
    ``cfg.trials``."""
    if cfg.workers == 1:
        run_worker(cfg.to_dict(), 0, cfg.trials, to_stderr=to_stderr, data=data)
        return
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be used in a forked child
    procs = [ctx.Process(target=run_spawned, args=(run_worker, cfg.to_dict(), rank, cfg.trials),
                         kwargs={"to_stderr": to_stderr, "parent": os.getpid()},
                         name=f"search-worker-{rank}")
             for rank in range(cfg.workers)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    except KeyboardInterrupt:  # the workers got it too: let them record their trials' end
        deadline = time.monotonic() + 10
        for p in procs:
            p.join(max(0.0, deadline - 7 - time.monotonic()))
        for p in procs:  # one that lost it (it landed in a weakref callback) gets a second
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGINT)
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
        raise
    finally:  # an exception or Ctrl-C here: the workers stop with us
        stop_processes(procs)
    if any(p.exitcode == 2 for p in procs):  # a worker said why (one line): nothing to add
        raise SystemExit(2)
    bad = [f"{p.name} exit {p.exitcode}" for p in procs if p.exitcode != 0]
    if bad:
        print(f"warning: {', '.join(bad)}", file=sys.stderr, flush=True)


def _front_order(trials: list[Any]) -> list[Any]:
    """Trials by non-domination rank (maximise value 0, minimise value 1), then value 0."""
    rest, ordered = list(trials), []
    while rest:
        front = [t for t in rest if not any(
            o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values
            for o in rest)]
        ordered += sorted(front, key=lambda t: -t.values[0])
        rest = [t for t in rest if t not in front]
    return ordered


def screen(cfg: SearchConfig, storage: Any, study: Any, to_stderr: bool,
           data: Any = None) -> None:
    """Hybrid phase 1: score ``hybrid_samples`` random samples zero-cost in ``<study>-zc``, then
    enqueue the ``trials`` best feasible ones into ``study`` for training."""
    from optuna.trial import TrialState

    zc = dataclasses.replace(cfg, study=cfg.study + "-zc", storage=cfg.storage_url,
                             evaluator="zero-cost", sampler="random", workers=1)
    zc_study = open_study(zc, storage, create=True, sampler="random")
    n = cfg.hybrid_samples or 5 * cfg.trials
    if not Census.of(zc_study).done(n, max_attempts(n)):
        run_worker(zc.to_dict(), 0, n, evaluator="zero-cost", sampler="random",
                   to_stderr=to_stderr, data=data)
    done = [t for t in zc_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("feasible") and t.user_attrs.get("score") is not None]
    if get_objective(cfg.objective).multi:
        ranked = _front_order(done)
    else:
        ranked = sorted(done, key=lambda t: -t.value)
    for t in ranked[:cfg.trials]:
        study.enqueue_trial(t.params, user_attrs={"zc_trial": t.number}, skip_if_exists=True)


def load_data(cfg: SearchConfig) -> Any:
    """The search's dataset, loaded before any storage or trial work, whatever the evaluator (the
    zero-cost one too, whose proxies may never read an image): a missing dataset or
    ``--data-root``, a ``--val-size`` beyond its training set, an ``--in-channels`` it cannot be
    converted to fail at once (:class:`ConfigError`; a missing dataset stays a
    :class:`~scaling.data.DatasetNotFoundError`)."""
    try:
        return SearchContext(cfg).data()
    except ValueError as exc:
        raise ConfigError(f"--data {cfg.data!r}: {exc}") from None


@dataclass
class RunInfo:
    study: Any
    cfg: SearchConfig
    wall_time: float
    ran: int
    extra: dict[str, Any] = field(default_factory=dict)


def run_search(cfg: SearchConfig, to_stderr: bool = False, *, pick: bool = True) -> RunInfo:
    """Validate, open (or resume) the study, run the remaining trials, return the study.
    ``pick=False``: leave the re-evaluation of the best trials to the caller (the study's
    workers on a shared storage do it once for all of them, :mod:`scaling.study.shared`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.time()
    cfg.validate()
    data = load_data(cfg)
    storage = open_storage(cfg)
    study = open_study(cfg, storage, create=True)
    fail_stale(study, cfg.grace)
    stream = sys.stderr if to_stderr else sys.stdout

    def emit(line: str) -> None:
        if not cfg.quiet:
            print(line, file=stream, flush=True)

    if cfg.enqueue:
        from scaling.search.enqueue import enqueue_families

        ctx = SearchContext(cfg, data=data)
        enqueue_families(study, cfg, ctx.in_channels, ctx.num_classes, emit)
    if cfg.evaluator == "hybrid":
        screen(cfg, storage, study, to_stderr, data)
    census = Census.of(study)
    remaining = cfg.trials - census.trained
    if not census.done(cfg.trials, max_attempts(cfg.trials)):
        _run_pool(cfg, to_stderr, data)
    fail_stale(study, cfg.grace)
    from scaling.search.reevaluate import reevaluate

    if pick:
        reevaluate(study, cfg, data, emit)
    info = RunInfo(study, cfg, time.time() - t0, max(0, remaining))
    status = target_status(study, cfg.trials)
    if status["stopped"]:
        info.extra["stopped"] = status["stopped"]
        print(f"warning: {status['stopped']}", file=sys.stderr, flush=True)
    return info


__all__ = ["EVALUATORS", "ConfigError", "RunInfo", "SearchConfig", "StorageError", "open_storage",
           "open_study", "run_search", "run_worker"]
