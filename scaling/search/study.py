"""Studies: configuration, storage, resume, worker processes, heartbeat, hybrid screening.

Storage defaults to ``sqlite:///<out_dir>/<study>.db`` (folders created); any Optuna RDB URL
works (PostgreSQL/MySQL for several machines). Every run enables Optuna's heartbeat
(``RDBStorage(heartbeat_interval, grace_period)``): a trial whose process died (SIGKILL, node
loss) is marked FAIL by :func:`optuna.storages.fail_stale_trials` once its heartbeat is older than
the grace period (checked before each trial and at the start and end of a run), and
:class:`~optuna.storages.RetryFailedTrialCallback` enqueues its parameters again.

``trials`` is the study's target number of finished (complete + pruned) trials: a resumed run
(``resume=True``, i.e. ``load_if_exists``) only runs the remainder; ``workers`` > 1 spawns that
many processes, each running ``study.optimize`` on its share of the remainder against the same
storage (TPE's constant liar keeps concurrent workers apart).
"""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scaling.search.config import IDENTITY, ConfigError, SearchConfig, StorageError
from scaling.search.evaluators import EVALUATORS, SearchContext, make_objective
from scaling.search.objectives import (
    constraints_func,
    format_macs,
    get_objective,
    needs_constraints_func,
)


# -- storage and studies --------------------------------------------------------------------------
def open_storage(cfg: SearchConfig) -> Any:
    """An RDBStorage with heartbeat and retry of stale trials; :class:`StorageError` if the URL
    cannot be opened."""
    import optuna

    url = cfg.storage_url
    if "://" not in url:
        raise StorageError(f"storage={url!r} is not an Optuna RDB URL; expected e.g. "
                           "sqlite:///path.db or postgresql://user@host/db")
    engine: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine["connect_args"] = {"timeout": 60}
        path = url[len("sqlite:///"):].split("?")[0] if url.startswith("sqlite:///") else ""
        if path and not path.startswith(":memory:") and os.path.dirname(path):
            try:  # the folder of the database file (sqlite does not create it)
                os.makedirs(os.path.dirname(path), exist_ok=True)
            except OSError as exc:
                raise StorageError(f"storage {url!r} is unreachable: cannot create its folder: "
                                   f"{exc.strerror or exc}") from None
    elif url.startswith(("postgresql", "mysql")):
        engine["connect_args"] = {"connect_timeout": 10}
    # Optuna >= 4.9 renamed the retry callback; both re-enqueue a stale trial's parameters.
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback",
                    optuna.storages.RetryFailedTrialCallback)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(
                url, engine_kwargs=engine, heartbeat_interval=cfg.heartbeat,
                grace_period=cfg.grace,
                heartbeat_stale_trial_callback=retry(max_retry=cfg.max_retry))
    except Exception as exc:  # noqa: BLE001 - any driver error means: cannot open
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StorageError(f"storage {url!r} is unreachable: {type(exc).__name__}: "
                           f"{first[:200]}") from None
    if url.startswith("sqlite:"):
        _sqlite_wal(storage)
    return storage


def _sqlite_wal(storage: Any) -> None:
    """WAL journal + synchronous=NORMAL: one fsync per checkpoint instead of per commit (a trial
    makes ~40 commits: 6x faster here), and readers do not block the writer (several workers).
    Still safe against a killed process; not for network file systems."""
    import sqlalchemy

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # reconnect with the pragmas


def make_sampler(cfg: SearchConfig, rank: int = 0, kind: str | None = None) -> Any:
    import optuna

    kind = kind or cfg.sampler
    seed = cfg.seed + 1000 * rank
    extra = {"constraints_func": constraints_func} if needs_constraints_func() else {}
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=max(4, min(50, cfg.trials // 3)), **extra)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials, **extra)


def make_pruner(cfg: SearchConfig) -> Any:
    import optuna

    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1,
                                              max_resource=max(1, math.ceil(cfg.epochs)))
    return optuna.pruners.NopPruner()


def _identity(cfg: SearchConfig) -> dict[str, Any]:
    """The settings that define the search, as stored (JSON: int keys become strings)."""
    d = cfg.to_dict()
    return json.loads(json.dumps({k: d[k] for k in IDENTITY}))


def open_study(cfg: SearchConfig, storage: Any, rank: int = 0, *, create: bool = False,
               sampler: str | None = None) -> Any:
    """Create (``create``) or load the study ``cfg.study``; refuse to reuse an existing study
    without ``resume`` or with a different search identity (:class:`ConfigError`)."""
    import optuna

    names = {s.study_name for s in storage.get_all_studies()}
    if create and cfg.study in names and not cfg.resume:
        raise ConfigError(f"study {cfg.study!r} already exists in {cfg.storage_url}; pass "
                          "--resume to continue it or choose another --study")
    objective = get_objective(cfg.objective)
    study = optuna.create_study(storage=storage, study_name=cfg.study, load_if_exists=True,
                                directions=list(objective.directions),
                                sampler=make_sampler(cfg, rank, sampler), pruner=make_pruner(cfg))
    stored = study.user_attrs.get("identity")
    if stored is None:
        if create:
            study.set_user_attr("identity", _identity(cfg))
            study.set_user_attr("config", cfg.to_dict())
    else:
        diff = sorted(k for k, v in _identity(cfg).items() if stored.get(k) != v)
        if diff:
            raise ConfigError(f"study {cfg.study!r} was created with other settings for "
                              f"{diff}; resume it with the same settings or use another --study")
    return study


def _finished(study: Any) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def fail_stale(study: Any, grace: float) -> None:
    """Optuna's fail_stale_trials, plus the trials it skips: a worker killed between creating a
    trial and its first heartbeat leaves a RUNNING trial with no heartbeat row at all; such a
    trial older than the grace period is failed (and retried) too."""
    import datetime

    import optuna
    from optuna.trial import TrialState

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    storage = study._storage
    rdb = getattr(storage, "_backend", storage)  # Optuna wraps RDBStorage in a cache
    try:
        import sqlalchemy
        from optuna.storages._rdb.models import TrialHeartbeatModel

        with rdb.engine.connect() as con:
            beating = {row[0] for row in con.execute(sqlalchemy.text(
                f"SELECT trial_id FROM {TrialHeartbeatModel.__tablename__}"))}
    except Exception:  # noqa: BLE001 - another storage or Optuna layout: nothing more to do
        return
    cutoff = datetime.datetime.now() - datetime.timedelta(seconds=grace)
    callback = storage.get_heartbeat_stale_trial_callback()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t._trial_id in beating or t.datetime_start is None or t.datetime_start > cutoff:
            continue
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL) and callback:
                callback(study, storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass


# -- running --------------------------------------------------------------------------------------
def progress_callback(cfg: SearchConfig, rank: int, emit: Callable[[str], None]
                      ) -> Callable[[Any, Any], None]:
    """Print one line per finished trial: number, state, MACs, score, value, best so far."""
    objective = get_objective(cfg.objective)

    def callback(study: Any, trial: Any) -> None:
        attrs = trial.user_attrs
        macs = attrs.get("macs")
        score = attrs.get("score")
        if objective.multi:
            best = f"front {len(study.best_trials)}"
            value = "-" if trial.values is None else f"({trial.values[0]:.4f}, " \
                                                      f"{format_macs(trial.values[1])})"
        else:
            try:
                bt = study.best_trial
                best = f"best {bt.value:.4f} (#{bt.number})"
            except ValueError:
                best = "best -"
            value = "-" if trial.value is None else f"{trial.value:.4f}"
        dur = trial.duration.total_seconds() if trial.duration else 0.0
        emit(f"[w{rank}] trial {trial.number:4d} {trial.state.name:8s} "
             f"MACs {format_macs(macs) if macs is not None else '-':>7s} "
             f"{attrs.get('status', '-'):11s} score "
             f"{'-' if score is None else f'{score:.4f}':>7s} value {value} | {best} "
             f"| {dur:.1f}s")

    return callback


def run_worker(cfg_dict: dict[str, Any], rank: int, n_trials: int,
               study_name: str | None = None, evaluator: str | None = None,
               sampler: str | None = None, to_stderr: bool = False) -> None:
    """One worker: load the study and run ``n_trials`` (also the target of spawned processes)."""
    import optuna

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
    ctx = SearchContext(cfg, rank)
    stream = sys.stderr if to_stderr else sys.stdout

    def emit(line: str) -> None:
        print(line, file=stream, flush=True)

    callbacks = [] if cfg.quiet else [progress_callback(cfg, rank, emit)]
    study.optimize(make_objective(ctx, evaluator), n_trials=n_trials, timeout=cfg.timeout,
                   callbacks=callbacks, catch=(RuntimeError, ValueError))


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def _run_pool(cfg: SearchConfig, n_trials: int, to_stderr: bool) -> None:
    shares = [s for s in _split(n_trials, cfg.workers) if s > 0]
    if len(shares) == 1:
        run_worker(cfg.to_dict(), 0, shares[0], to_stderr=to_stderr)
        return
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=run_worker, args=(cfg.to_dict(), rank, share),
                         kwargs={"to_stderr": to_stderr}, name=f"search-worker-{rank}")
             for rank, share in enumerate(shares)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
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


def screen(cfg: SearchConfig, storage: Any, study: Any, to_stderr: bool) -> None:
    """Hybrid phase 1: score ``hybrid_samples`` random samples zero-cost in ``<study>-zc``, then
    enqueue the ``trials`` best feasible ones into ``study`` for training."""
    from optuna.trial import TrialState

    zc = dataclasses.replace(cfg, study=cfg.study + "-zc", storage=cfg.storage_url,
                             evaluator="zero-cost", sampler="random", workers=1)
    zc_study = open_study(zc, storage, create=True, sampler="random")
    n = (cfg.hybrid_samples or 5 * cfg.trials) - _finished(zc_study)
    if n > 0:
        run_worker(zc.to_dict(), 0, n, evaluator="zero-cost", sampler="random",
                   to_stderr=to_stderr)
    done = [t for t in zc_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("feasible") and t.user_attrs.get("score") is not None]
    if get_objective(cfg.objective).multi:
        ranked = _front_order(done)
    else:
        ranked = sorted(done, key=lambda t: -t.value)
    for t in ranked[:cfg.trials]:
        study.enqueue_trial(t.params, user_attrs={"zc_trial": t.number}, skip_if_exists=True)


@dataclass
class RunInfo:
    study: Any
    cfg: SearchConfig
    wall_time: float
    ran: int
    extra: dict[str, Any] = field(default_factory=dict)


def run_search(cfg: SearchConfig, to_stderr: bool = False) -> RunInfo:
    """Validate, open (or resume) the study, run the remaining trials, return the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t0 = time.time()
    cfg.validate()
    storage = open_storage(cfg)
    study = open_study(cfg, storage, create=True)
    fail_stale(study, cfg.grace)
    if cfg.evaluator == "hybrid":
        screen(cfg, storage, study, to_stderr)
    remaining = cfg.trials - _finished(study)
    if remaining > 0:
        _run_pool(cfg, remaining, to_stderr)
    fail_stale(study, cfg.grace)
    return RunInfo(study, cfg, time.time() - t0, max(0, remaining))


__all__ = ["EVALUATORS", "ConfigError", "RunInfo", "SearchConfig", "StorageError", "open_storage",
           "open_study", "run_search", "run_worker"]
