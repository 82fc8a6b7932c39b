"""A study run by many workers that share one Optuna RDB storage (``run CONFIG --storage URL``).

Every worker (one per GPU, on any machine; the same config and URL) goes through the stages of
:func:`scaling.study.runner.run` in step with the others:

1. **search**: each worker joins the search's study (its trials shared as in
   ``python -m scaling.search --storage``); then one worker, the one that pops the single
   ``pick`` run, waits until no trial of the search runs any more, re-evaluates its best trials
   and stores the winner's record, which every worker reads: all of them plan from one baseline.
2. **grid**, then **families and single-dimension scaling**: every worker enqueues the stage's
   planned runs (:func:`scaling.study.distributed.enqueue_runs`: idempotent) and works through
   them (:func:`~scaling.study.distributed.work`: each run trained once, a dead worker's run
   retrained by another; a worker with nothing left waits for the others' running runs); then
   it copies every run of the stage from the storage into its own ``runs.csv``, so each worker
   plans the next stage from the same rows and writes the same tables.

The storage's study names derive from the config: ``<name>-<protocol key>-<stage>``, stage
``search``, ``pick``, ``grid`` and ``runs`` (:func:`study_names`). The storage is the run
store of such a study: a run found in a local ``runs.csv`` but not in the storage is trained again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from scaling.study.distributed import POLL_S, enqueue_runs, results, work
from scaling.study.plan import StudyPreset
from scaling.study.store import RUN_COLUMNS, RunStore, run_row

STAGES = ("search", "pick", "grid", "confirm", "runs")


def study_names(preset: StudyPreset) -> dict[str, str]:
    """The storage's study of each stage: ``<config name>-<protocol key>-<stage>``."""
    return {stage: f"{preset.name}-{preset.protocol.key()}-{stage}" for stage in STAGES}


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (a run's result is stored as strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def wait_idle(study: Any, grace: float) -> None:
    """Return once no trial of ``study`` runs; a dead worker's trial is failed meanwhile
    (:func:`scaling.search.storage.fail_stale`), so this ends."""
    from optuna.trial import TrialState

    from scaling.search.storage import fail_stale

    while True:
        fail_stale(study, grace)
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        time.sleep(POLL_S)


def search(cfg: Any, storage: str, names: dict[str, str], heartbeat: int, grace: int,
           log: Callable[[str], None]) -> tuple[dict[str, Any], Any]:
    """Run the search's trials with the other workers (``cfg.storage`` is the shared URL), then
    the one ``pick`` run; returns the winner's record (the same for every worker) and the
    search's study."""
    from scaling.search.reevaluate import reevaluate, stored
    from scaling.search.report import best_trials, counts, trial_record
    from scaling.search.study import run_search

    t0 = time.perf_counter()
    study = run_search(cfg, pick=False).study

    def pick(payload: Any) -> dict[str, Any]:
        wait_idle(study, cfg.grace)  # a trial still running elsewhere may become the best
        reevaluate(study, cfg, emit=log)
        best = best_trials(study)
        if not best:
            raise RuntimeError(f"the search trained no feasible trial: {counts(study)}")
        return {"record": _finite({**trial_record(best[0]), "counts": counts(study),
                                   "search_seconds": round(time.perf_counter() - t0, 1),
                                   "reevaluation": stored(study)})}

    enqueue_runs(storage, names["pick"], [{"key": "baseline", "payload": {}}])
    work(storage, names["pick"], pick, heartbeat_interval=heartbeat, grace=grace)
    table = results(storage, names["pick"])
    if table.empty:
        raise RuntimeError(f"the search's pick failed on every worker that tried it (study "
                           f"{names['pick']!r} in {storage}); rerun to try it again")
    return table["record"].iloc[0], study


def train_stage(entries: list[dict[str, Any]], seeds: tuple[int, ...], preset: StudyPreset,
                store: RunStore, device: str, threads: int | None, storage: str,
                study_name: str, heartbeat: int, grace: int,
                log: Callable[[str], None] = print, earlier: set[str] | None = None) -> int:
    """Train every (entry, seed) of a stage with the other workers through the storage's study
    ``study_name`` (each run once), then put all of the stage's runs into ``store``; returns
    how many this worker trained. ``earlier``: keys of runs that an earlier stage took from
    the storage (a spec in two experiments trains once); this stage's keys are added to it."""
    from scaling.compound.match import macs_of
    from scaling.ir import NetworkSpec
    from scaling.study.protocol import train_seeds

    proto = preset.protocol
    earlier = set() if earlier is None else earlier
    planned: dict[str, tuple[Any, int]] = {}
    for e in sorted(entries, key=lambda e: -macs_of(e["spec"])):  # big first: balance
        for seed in seeds:
            key = RunStore.key(e["spec"], seed, proto.key())
            if key not in earlier:
                planned.setdefault(key, (e["spec"], seed))
    runs = [{"key": key, "payload": {"spec": spec.to_dict(), "seed": seed}}
            for key, (spec, seed) in planned.items()]
    added = enqueue_runs(storage, study_name, runs)
    log(f"{study_name}: {len(runs)} runs planned ({added} enqueued by this worker)")

    def train_fn(payload: dict[str, Any]) -> dict[str, Any]:
        spec, seed = NetworkSpec.from_dict(payload["spec"]), payload["seed"]
        row = run_row(spec, seed, proto.key(), train_seeds(spec, proto, [seed], device,
                                                           threads)[0])
        log(f"{spec.name}: {row['macs'] / 1e6:.2f}M MACs seed {seed} val {row['val_acc']:.4f} "
            f"test {row['test_acc']:.4f} ({row['wall_seconds']:.0f} s)")
        return _finite({k: v for k, v in row.items() if k != "key"})

    trained = work(storage, study_name, train_fn, heartbeat_interval=heartbeat, grace=grace)
    done = {r["key"]: r for r in results(storage, study_name).to_dict("records")}
    lost = [key for key in planned if key not in done]
    if lost:
        raise RuntimeError(f"{len(lost)} of the {len(planned)} runs of {study_name!r} failed on "
                           f"every worker that tried them (first: {lost[0]}); rerun a worker "
                           "to enqueue them again")
    store.update([{c: done[key].get(c) for c in RUN_COLUMNS} for key in planned])
    earlier.update(planned)
    log(f"{study_name}: {trained} of its {len(planned)} runs trained here, all in "
        f"{store.path.name}")
    return trained
