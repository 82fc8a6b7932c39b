"""The search's Optuna storage: open it (drivers, SQLite WAL, races), create or load a study
safely from several processes at once, and fail trials whose process died.

Storage defaults to ``sqlite:///<out_dir>/<study>.db`` (folders created); any Optuna RDB URL
works (PostgreSQL/MySQL for several machines). Every run enables Optuna's heartbeat
(``RDBStorage(heartbeat_interval, grace_period)``): a trial whose process died (SIGKILL, node
loss) is marked FAIL by :func:`optuna.storages.fail_stale_trials` once its heartbeat is older than
the grace period, and :class:`~optuna.storages.RetryFailedTrialCallback` enqueues its parameters
again.

A study keeps its full configuration (the space included, once) in its *system* attributes
(``scaling:config``) and only a one-line summary in its user attributes, so that
``optuna studies`` prints a readable table; studies written before that (a ``identity`` and a
``config`` user attribute) still load and resume.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from scaling.search.config import (
    IDENTITY,
    IDENTITY_DEFAULTS,
    ConfigError,
    SearchConfig,
    StorageError,
)
from scaling.search.objectives import format_macs, get_objective

CONFIG_ATTR = "scaling:config"  # study system attr: the SearchConfig as a dict
CREATED_ATTR = "scaling:created"  # study system attr: time.time() at creation
_RETRIES = 6  # schema / study creation races between processes opening one new storage
# PostgreSQL drivers SQLAlchemy can use, by URL dialect suffix, with their pip package.
_PG_DRIVERS = {"psycopg": ("psycopg", "psycopg[binary]"),
               "psycopg2": ("psycopg2", "psycopg2-binary")}


def _postgres_url(url: str) -> str:
    """``postgresql://`` with the installed driver made explicit (SQLAlchemy >= 2.1 defaults to
    psycopg 3, older ones to psycopg2); :class:`StorageError` naming the package to install."""
    scheme, rest = url.split("://", 1)
    driver = scheme.partition("+")[2]
    if driver:
        module, package = _PG_DRIVERS.get(driver, (driver, driver))
        if importlib.util.find_spec(module) is None:
            raise StorageError(f"storage {url!r} needs the PostgreSQL driver {module!r}: "
                               f"pip install '{package}' (or: pip install 'scaling[postgres]')")
        return url
    for name, (module, _) in _PG_DRIVERS.items():
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{name}://{rest}"
    raise StorageError(f"storage {url!r} needs a PostgreSQL driver: pip install 'psycopg[binary]' "
                       "or 'psycopg2-binary' (or: pip install 'scaling[postgres]')")


def storage_failure(exc: BaseException, url: str) -> StorageError | None:
    """A one-line :class:`StorageError` if ``exc`` is the database failing under a running
    search (SQLAlchemy or sqlite3 errors: a server stopped, a corrupted file, a missing table),
    else None. Completed trials were committed before: ``--resume`` continues."""
    import sqlite3

    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    if not isinstance(exc, (SQLAlchemyError, sqlite3.Error, StorageInternalError)):
        return None
    return StorageError(f"storage {url!r} failed: {describe(exc)}; the trials it recorded are "
                        "kept (rerun with --resume once it works)")


def run_spawned(body: Callable[..., Any], cfg_dict: dict[str, Any], *args: Any,
                **kwargs: Any) -> None:
    """``body(cfg_dict, *args, **kwargs)`` as a spawned process's target: Ctrl-C exits 130 and
    a storage failure exits 2 with one line, instead of multiprocessing's "Process ...:
    Traceback" (the search's workers, the re-evaluation's helpers)."""
    from scaling.cli import quiet_interrupts

    quiet_interrupts()
    try:
        body(cfg_dict, *args, **kwargs)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - only the storage's failures are translated
        failure = storage_failure(exc, SearchConfig.from_dict(cfg_dict).storage_url)
        if failure is None:
            raise
        print(f"python -m scaling.search: error: {failure}", file=sys.stderr, flush=True)
        sys.exit(2)


def describe(exc: BaseException) -> str:
    """``Type: first line`` of a storage error, the driver's own under Optuna's
    ``StorageInternalError`` and SQLAlchemy's wrappers (``.orig``)."""
    from optuna.exceptions import StorageInternalError

    if isinstance(exc, StorageInternalError):
        exc = exc.__cause__ or exc.__context__ or exc
    exc = getattr(exc, "orig", None) or exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {first[:200]}"


def _racing(exc: BaseException) -> bool:
    """Whether ``exc`` is another process creating the same tables/study at the same time."""
    text = f"{type(exc).__name__} {exc}".lower()
    return any(s in text for s in ("integrityerror", "uniqueviolation", "already exists",
                                   "duplicate key", "unique constraint", "database is locked"))


def _backoff(attempt: int) -> None:
    time.sleep(0.05 * (attempt + 1) + random.random() * 0.1)


def open_storage(cfg: SearchConfig) -> Any:
    """The search's RDBStorage (:func:`open_rdb` with the search's heartbeat settings)."""
    return open_rdb(cfg.storage_url, heartbeat=cfg.heartbeat, grace=cfg.grace,
                    max_retry=cfg.max_retry)


def open_rdb(url: str, *, heartbeat: int, grace: int, max_retry: int | None) -> Any:
    """An RDBStorage with heartbeat and retry of stale trials (up to ``max_retry`` times, None:
    always); :class:`StorageError` if the URL cannot be opened. Several processes may open one
    new storage at once (retried). Shared by the search and the study's distributed runs."""
    import optuna

    given = url
    if "://" not in url:
        raise StorageError(f"storage={url!r} is not an Optuna RDB URL; expected e.g. "
                           "sqlite:///path.db or postgresql://user@host/db")
    engine: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        engine["connect_args"] = {"timeout": 60}
        path = url[len("sqlite:///"):].split("?")[0] if url.startswith("sqlite:///") else ""
        if not path or path.startswith(":memory:") or "mode=memory" in url:
            raise StorageError(f"storage {url!r} is not allowed: an in-memory SQLite database "
                               "is a new empty one on each connection; expected a file, e.g. "
                               "sqlite:///path/to/search.db")
        if os.path.dirname(path):
            try:  # the folder of the database file (sqlite does not create it)
                os.makedirs(os.path.dirname(path), exist_ok=True)
            except OSError as exc:
                raise StorageError(f"storage {url!r} is unreachable: cannot create its folder: "
                                   f"{exc.strerror or exc}") from None
    elif url.startswith(("postgresql", "mysql")):
        engine["connect_args"] = {"connect_timeout": 10}
        if url.startswith("postgresql"):
            url = _postgres_url(url)
    # Optuna >= 4.9 renamed the retry callback; both re-enqueue a stale trial's parameters.
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback",
                    optuna.storages.RetryFailedTrialCallback)
    for attempt in range(_RETRIES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=retry(max_retry=max_retry))
            break
        except Exception as exc:  # noqa: BLE001 - any driver error means: cannot open
            if _racing(exc) and attempt < _RETRIES - 1:
                _backoff(attempt)
                continue
            raise StorageError(f"storage {given!r} is unreachable: "
                               f"{describe(exc)}") from None
    if url.startswith("sqlite:"):
        _sqlite_wal(storage)
    return storage


def _sqlite_wal(storage: Any) -> None:
    """WAL journal + synchronous=NORMAL: one fsync per checkpoint instead of per commit (a trial
    makes ~40 commits: 6x faster here), and readers do not block the writer (several workers).
    Still safe against a killed process; not for network file systems.

    Every transaction also starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for pysqlite):
    Optuna pops a waiting trial by reading its state and then setting it RUNNING, and SQLite
    ignores ``SELECT ... FOR UPDATE``, so two processes could both pop one trial (seen: two
    workers running one enqueued study run); with the write lock taken at the start, the read
    and the write are one step."""
    import sqlalchemy

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        dbapi_connection.isolation_level = None  # pysqlite's own BEGIN off: on_begin's instead

    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    sqlalchemy.event.listen(storage.engine, "connect", on_connect)
    sqlalchemy.event.listen(storage.engine, "begin", on_begin)
    storage.engine.dispose()  # reconnect with the pragmas


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that define the search, as stored (JSON: int keys become strings); the
    window only where the objective is ``window`` (elsewhere it decides nothing)."""
    out = {k: config.get(k, IDENTITY_DEFAULTS.get(k)) for k in IDENTITY}
    if out["objective"] != "window":
        out["window"] = None
    return json.loads(json.dumps(out))


def _shown(value: Any, limit: int = 60) -> str:
    """``value`` as one short line for an error message (a space dict is cut at ``limit``)."""
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def metric_names(cfg: SearchConfig) -> list[str]:
    """The study's objective names: ``reward``; for ``window`` the score (val_acc | the rank
    proxy); for ``pareto`` (the score, macs)."""
    score = "val_acc" if cfg.evaluator in ("train", "hybrid") else cfg.rank_proxy
    objective = get_objective(cfg.objective)
    if not objective.multi:
        return ["reward"] if objective.name == "reward" else [score]
    return [score, "macs"]


def summary(cfg: SearchConfig) -> str:
    """The one-line user attribute of a study (what ``optuna studies`` shows)."""
    space = cfg.space.get("name", "custom") if isinstance(cfg.space, dict) else "default"
    return (f"{cfg.objective} by {cfg.evaluator}, {format_macs(cfg.budget)} MACs, {cfg.data} "
            f"at {cfg.resolution}px, seed {cfg.seed}, space {space}")


def _system_attrs(storage: Any, name: str) -> dict[str, Any]:
    """The study ``name``'s system attributes, through the storage's public API (Optuna's
    ``Study`` has none)."""
    return storage.get_study_system_attrs(storage.get_study_id_from_name(name))


def stored_identity(study: Any, storage: Any) -> dict[str, Any] | None:
    """The identity a study was created with (new layout or the old ``identity`` user attr)."""
    config = _system_attrs(storage, study.study_name).get(CONFIG_ATTR)
    if config is not None:
        return _identity(config)
    old = study.user_attrs.get("identity")
    return None if old is None else _identity({**IDENTITY_DEFAULTS, **old})


def _create_or_load(cfg: SearchConfig, storage: Any, sampler: Any, pruner: Any) -> Any:
    """The search's study: :func:`create_or_load` with its objective's directions."""
    return create_or_load(storage, cfg.study, directions=get_objective(cfg.objective).directions,
                          sampler=sampler, pruner=pruner)


def create_or_load(storage: Any, name: str, *, directions: Any, sampler: Any = None,
                   pruner: Any = None) -> Any:
    """``create_study(load_if_exists=True)``, retried when another process creates it at once."""
    import optuna

    for attempt in range(_RETRIES):
        try:
            return optuna.create_study(storage=storage, study_name=name,
                                       load_if_exists=True, directions=list(directions),
                                       sampler=sampler, pruner=pruner)
        except Exception as exc:  # noqa: BLE001 - the race surfaces as the driver's error
            if not (isinstance(exc, optuna.exceptions.DuplicatedStudyError) or _racing(exc)) \
                    or attempt == _RETRIES - 1:
                raise
            _backoff(attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _created_at(storage: Any, name: str) -> float | None:
    """When the study ``name`` was created (None: absent; 0: an older layout; now: another
    process is creating it at this moment)."""
    for st in storage.get_all_studies():
        if st.study_name == name:
            system = _system_attrs(storage, name)
            if CREATED_ATTR in system:
                return system[CREATED_ATTR]
            return 0.0 if st.user_attrs or CONFIG_ATTR in system else time.time()
    return None


def _trained(storage: Any, name: str) -> int:
    """Trials of the study ``name`` that count toward its target (over-budget samples do not)."""
    from scaling.search.workers import is_trained

    study_id = storage.get_study_id_from_name(name)
    return sum(map(is_trained, storage.get_all_trials(study_id, deepcopy=False)))


def open_study(cfg: SearchConfig, storage: Any, sampler: Any, pruner: Any, *,
               create: bool = False) -> Any:
    """Create (``create``) or load the study ``cfg.study``. Without ``resume`` an existing study
    is refused unless another process created it within the last ``cfg.grace`` seconds and it has
    not reached its target (several processes started at once on a new study join it); a study
    with a different search identity is always refused (:class:`ConfigError`)."""
    import optuna

    if create and not cfg.resume:
        created = _created_at(storage, cfg.study)
        if created is not None and (time.time() - created > cfg.grace
                                    or _trained(storage, cfg.study) >= cfg.trials):
            raise ConfigError(f"study {cfg.study!r} already exists in {cfg.storage_url}; pass "
                              "--resume to continue it or choose another --study")
    study = _create_or_load(cfg, storage, sampler, pruner)
    stored = stored_identity(study, storage)
    if stored is None and study.get_trials(deepcopy=False):
        raise ConfigError(f"study {cfg.study!r} in {cfg.storage_url} was not made by "
                          "python -m scaling.search (it has trials but no search settings); "
                          "choose another --study")
    if stored is None:
        if create:
            study_id = storage.get_study_id_from_name(cfg.study)
            if CREATED_ATTR not in storage.get_study_system_attrs(study_id):
                storage.set_study_system_attr(study_id, CREATED_ATTR, time.time())
            storage.set_study_system_attr(study_id, CONFIG_ATTR, cfg.to_dict())
            study.set_user_attr("search", summary(cfg))
    else:
        given = _identity(cfg.to_dict())
        diff = [f"{k} (stored {_shown(stored.get(k))}, given {_shown(v)})"
                for k, v in sorted(given.items()) if stored.get(k) != v]
        if diff:
            raise ConfigError(f"study {cfg.study!r} was created with other settings: "
                              f"{'; '.join(diff)}; resume it with the same settings or use "
                              "another --study")
    if create and study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metric_names(cfg))
    return study


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
