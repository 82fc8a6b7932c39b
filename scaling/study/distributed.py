"""The study's runs on any number of workers and machines, through Optuna's RDB storage.

A planned run (one spec x one seed under one protocol) is one *enqueued* Optuna trial: its
``key`` (spec hash + seed + protocol key) and its JSON ``payload`` (everything a worker needs to
train: spec dict, seed, protocol dict) are the trial's user attributes. A worker anywhere needs
only the storage URL and the study name: :func:`work` pops WAITING trials (``study.optimize``,
Optuna's own queue; popping is atomic in the database), calls ``train_fn(payload)`` and stores
the returned dict as the trial's ``result`` attribute; the trial's value is its wall seconds.

Why this is safe with many workers:

- *A worker that dies* (SIGKILL, node loss) stops its heartbeat
  (``RDBStorage(heartbeat_interval, grace_period)``); once it is older than the grace period the
  trial is failed (:func:`optuna.storages.fail_stale_trials`, run by every worker) and Optuna's
  retry callback enqueues a copy with the same attributes for any worker (up to ``max_retry``).
- *Each run is trained once*: a trial trains only if no trial of its key is COMPLETE and none
  with a lower number is WAITING or RUNNING; otherwise it ends PRUNED with ``skipped`` (the owner's
  number). So two processes enqueuing at once (a duplicate) or a retried copy of a finished key
  never train again, and the lowest live trial of a key always trains.
- :func:`enqueue_runs` is idempotent: a key already WAITING, RUNNING or COMPLETE is not enqueued
  again; a key whose every trial FAILED (its ``train_fn`` raised, or its retries ran out) is.

A worker that finds the queue empty while other workers still run trials waits for them
(``wait=True``): one of them may die and its run come back to the queue.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from scaling.search.storage import create_or_load, fail_stale, open_rdb

if TYPE_CHECKING:
    import pandas as pd

KEY, PAYLOAD, RESULT = "key", "payload", "result"  # trial user attrs
KIND_ATTR, KIND = "scaling:kind", "study-runs"  # study system attr marking a run queue
RESERVED = ("key", "trial", "attempts", "worker", "seconds")  # results() columns
POLL_S = 0.5  # how often an idle worker looks at the others' running trials
_ALIVE = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)


def _check_name(study_name: Any) -> str:
    if not isinstance(study_name, str) or not study_name.strip():
        raise ValueError(f"study_name={study_name!r} is not allowed; expected a non-empty string")
    return study_name


def _storage(storage: Any, *, heartbeat: int = 10, grace: int = 30,
             max_retry: int | None = 2) -> Any:
    """An opened storage: a URL is opened with heartbeat and retry (:func:`open_rdb`); an
    Optuna storage object is used as it is."""
    if isinstance(storage, str):
        return open_rdb(storage, heartbeat=heartbeat, grace=grace, max_retry=max_retry)
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    raise TypeError(f"storage={storage!r} is not allowed; expected an Optuna RDB URL "
                    "(sqlite:///runs.db, postgresql://...) or an optuna.storages.RDBStorage")


def _study(storage: Any, study_name: str, create: bool) -> optuna.Study:
    """The run queue ``study_name``: created if ``create``, else it must exist. A study holding
    trials that are not runs (a search's) is refused."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        if not create:
            raise ValueError(f"study_name={study_name!r} is not in the storage; expected a "
                             "study whose runs were enqueued (enqueue_runs)") from None
        create_or_load(storage, study_name, directions=["minimize"])
        study_id = storage.get_study_id_from_name(study_name)
    marked = storage.get_study_system_attrs(study_id).get(KIND_ATTR) == KIND
    if not marked:
        trials = storage.get_all_trials(study_id, deepcopy=False)
        if any(KEY not in t.user_attrs and "empty" not in t.user_attrs for t in trials):
            raise ValueError(f"study_name={study_name!r} holds trials that are not study runs "
                             "(a search?); expected a study made by enqueue_runs")
    study = optuna.load_study(study_name=study_name, storage=storage)
    if create and not marked:
        storage.set_study_system_attr(study_id, KIND_ATTR, KIND)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["seconds"])
    return study


def _check_runs(runs: Iterable[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """(key, payload) of each run; one-line errors for a missing/duplicate key or a payload
    that is not JSON."""
    out, seen = [], set()
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or not isinstance(run.get(KEY), str) or not run[KEY]:
            raise ValueError(f"runs[{i}]={str(run)[:80]!r} is not allowed; expected a dict with "
                             "a non-empty string 'key' and a JSON-able 'payload'")
        key, payload = run[KEY], run.get(PAYLOAD, {k: v for k, v in run.items() if k != KEY})
        if key in seen:
            raise ValueError(f"runs[{i}].key={key!r} is not allowed: it is given twice; "
                             "expected one run per key")
        try:
            json.dumps(payload, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"runs[{i}].payload of key {key!r} is not allowed: {exc}; expected "
                            "JSON-able values (dicts, lists, str, int, finite float)") from None
        seen.add(key)
        out.append((key, payload))
    return out


def enqueue_runs(storage: Any, study_name: str, runs: Iterable[Mapping[str, Any]]) -> int:
    """Enqueue each run (a dict: ``key`` and ``payload``; without ``payload`` the other fields
    are the payload) as one WAITING trial, skipping keys already WAITING, RUNNING or COMPLETE.
    Safe to call from every worker at start. Returns how many trials it added."""
    planned = _check_runs(runs)
    study = _study(_storage(storage), _check_name(study_name), create=True)
    present = {t.user_attrs.get(KEY) for t in study.get_trials(deepcopy=False, states=_ALIVE)}
    added = 0
    for key, payload in planned:
        if key not in present:
            study.enqueue_trial({}, user_attrs={KEY: key, PAYLOAD: payload})
            added += 1
    return added


def _owner(trial: optuna.Trial, key: str) -> int | None:
    """The number of another trial that owns ``key`` (a COMPLETE one, or a lower-numbered one
    still WAITING or RUNNING), else None: this trial trains it."""
    for t in trial.study.get_trials(deepcopy=False, states=_ALIVE):
        if t.number != trial.number and t.user_attrs.get(KEY) == key \
                and (t.state == TrialState.COMPLETE or t.number < trial.number):
            return t.number
    return None


def _checked_result(result: Any, key: str) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise TypeError(f"train_fn returned {type(result).__name__} for run {key!r}; expected "
                        "a dict of JSON-able results (accuracies, seconds...)")
    clash = sorted(set(result) & set(RESERVED))
    if clash:
        raise ValueError(f"train_fn's result for run {key!r} has the field(s) {clash}; these "
                         f"names are kept for results(): {list(RESERVED)}")
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"train_fn's result for run {key!r} is not JSON-able: {exc}") from None
    return result


class _StopWhenEmpty:
    """Stops ``study.optimize`` once no trial is WAITING (the next ask would sample a new one)."""

    def __call__(self, study: optuna.Study, trial: Any) -> None:
        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.stop()


def work(storage: Any, study_name: str, train_fn: Callable[[Any], dict[str, Any]], *,
         heartbeat_interval: int = 10, grace: int = 30, max_retry: int | None = 2,
         wait: bool = True) -> int:
    """Train the study's waiting runs until none is left (and, with ``wait``, none is running
    elsewhere either), ``train_fn(payload) -> dict`` each; returns how many this worker trained.

    Args:
        storage: an Optuna RDB URL, the same on every machine (PostgreSQL/MySQL across machines,
            SQLite for one), or an opened RDBStorage (then its own heartbeat settings hold).
        study_name: the study the runs were enqueued in (:func:`enqueue_runs`).
        train_fn: trains one run from its payload; its exception fails the trial and ends
            this worker (the run is enqueued again by the next :func:`enqueue_runs`).
        heartbeat_interval, grace: seconds between heartbeats, and of silence before a running
            trial counts as dead and is retried (``grace > heartbeat_interval``).
        max_retry: how often one run is retried after its worker died (None: always).
        wait: whether an idle worker waits for others' running trials (they may come back).
    """
    for name, value in (("heartbeat_interval", heartbeat_interval), ("grace", grace)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not allowed; expected an integer >= 1 seconds")
    if max_retry is not None and (isinstance(max_retry, bool) or not isinstance(max_retry, int)
                                  or max_retry < 0):
        raise ValueError(f"max_retry={max_retry!r} is not allowed; expected an integer >= 0 "
                         "or None (retry always)")
    if grace <= heartbeat_interval:
        raise ValueError(f"grace={grace} is not allowed; expected more than "
                         f"heartbeat_interval={heartbeat_interval} seconds")
    if not callable(train_fn):
        raise TypeError(f"train_fn={train_fn!r} is not allowed; expected a callable "
                        "train_fn(payload) -> dict")
    opened = _storage(storage, heartbeat=heartbeat_interval, grace=grace, max_retry=max_retry)
    study = _study(opened, _check_name(study_name), create=False)
    worker, trained = f"{socket.gethostname()}:{os.getpid()}", 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal trained
        key = trial.user_attrs.get(KEY)
        if key is None:  # another worker took the last waiting run: Optuna made a new trial
            trial.set_user_attr("empty", True)
            raise optuna.TrialPruned("no run was waiting")
        trial.set_user_attr("worker", worker)
        owner = _owner(trial, key)
        if owner is not None:
            trial.set_user_attr("skipped", owner)
            raise optuna.TrialPruned(f"run {key!r} belongs to trial {owner}")
        start = time.perf_counter()
        result = _checked_result(train_fn(trial.user_attrs.get(PAYLOAD)), key)
        trial.set_user_attr(RESULT, result)
        trained += 1
        return time.perf_counter() - start

    while True:
        fail_stale(study, grace)
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        if not waiting:
            if not wait or not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                return trained
            time.sleep(POLL_S)
            continue
        study.optimize(objective, n_trials=waiting, callbacks=[_StopWhenEmpty()])


def results(storage: Any, study_name: str) -> pd.DataFrame:
    """The completed runs, one row per key: ``key``, the result's fields, ``trial`` (its Optuna
    number), ``attempts`` (trials that trained it, failed ones included), ``worker``
    (host:pid) and ``seconds``."""
    import pandas as pd  # here: a worker does not need it (a second less at its start)

    study = _study(_storage(storage), _check_name(study_name), create=False)
    trials = study.get_trials(deepcopy=False)
    attempts: dict[str, int] = {}
    for t in trials:
        if t.state in (TrialState.COMPLETE, TrialState.FAIL) and KEY in t.user_attrs:
            attempts[t.user_attrs[KEY]] = attempts.get(t.user_attrs[KEY], 0) + 1
    rows, seen = [], set()
    for t in trials:
        key = t.user_attrs.get(KEY)
        if t.state != TrialState.COMPLETE or RESULT not in t.user_attrs or key in seen:
            continue
        seen.add(key)
        rows.append({KEY: key, **t.user_attrs[RESULT], "trial": t.number,
                     "attempts": attempts[key], "worker": t.user_attrs.get("worker"),
                     "seconds": t.value})
    return pd.DataFrame(rows, columns=None if rows else list(RESERVED))
