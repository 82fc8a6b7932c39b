"""What lets many processes share one search: per-trial seeding, a global trial target, and
worker processes that die with their parent.

- :class:`ProcessSeededSampler` creates the study's sampler at a process's first trial, seeded
  from the study's seed and that trial's number (:func:`process_seed`): a fresh search's first
  process draws exactly the stream of ``cfg.seed`` (the same trials as before this class
  existed), and every other process -- a resume, a spawned worker, a separate process sharing
  the storage -- starts at a different trial number (they are unique in a study), so it never
  replays another's random stream; each stays reproducible from (seed, first trial number).
- :func:`run_trials` runs trials until the study has ``target`` *trained* trials (complete or
  pruned, not over budget: :func:`is_trained`), counting every process's trials: a trial starts
  only while ``trained + running < target``; one that finds ``target`` lower-numbered trials
  trained or running (two processes starting at the same instant) raises :class:`SurplusTrial`
  and ends as FAIL with the user attr ``surplus``. An over-budget sample is recorded (COMPLETE
  with the penalty and its constraint) and sampling goes on, up to a cap of
  :data:`ATTEMPTS_PER_TRIAL` x ``target`` attempts (finished or failed trials, over-budget ones
  included); the report says when the cap ended a search. :class:`TargetCallback` stops each
  ``study.optimize`` call (``study.stop()``, Optuna's own mechanism) when that is reached.
- :func:`die_with_parent`: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, and a watchdog thread
  polling ``os.getppid()`` everywhere, so killing the parent leaves no orphan worker.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from scaling.search.objectives import INFEASIBLE

POLL_S = 0.5  # how often a waiting process looks at other processes' running trials


def process_seed(seed: int, first_trial: int) -> int:
    """The sampler seed of a process whose first trial is number ``first_trial``: ``seed`` for
    trial 0, else a 32-bit hash of both (numpy SeedSequence)."""
    import numpy as np

    if first_trial == 0:
        return seed
    return int(np.random.SeedSequence([int(seed) % 2**63, int(first_trial)]).generate_state(1)[0])


class ProcessSeededSampler(optuna.samplers.BaseSampler):
    """An Optuna sampler that, before this process's first trial, becomes
    ``build(process_seed(seed, trial.number))`` and then delegates to it (module docstring)."""

    def __init__(self, build: Callable[[int], Any], seed: int) -> None:
        self._build, self._seed = build, seed
        self._inner = build(seed)
        self.first_trial: int | None = None

    def __str__(self) -> str:
        return f"ProcessSeeded({type(self._inner).__name__}, first trial {self.first_trial})"

    def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        return self._inner.sample_independent(study, trial, name, dist)

    def before_trial(self, study: Any, trial: Any) -> None:
        if self.first_trial is None:
            self.first_trial = trial.number
            self._inner = self._build(process_seed(self._seed, trial.number))
        self._inner.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


# -- dying with the parent ------------------------------------------------------------------------
def stop_processes(procs: list[Any]) -> None:
    """Stop the still-running ``procs``: SIGTERM, then SIGKILL after 5 s (without it,
    multiprocessing's exit handler would join a worker that ignores SIGTERM forever)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(5)
        if p.is_alive():
            p.kill()
            p.join()


def die_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """End this process when ``parent`` (a pid) dies: the kernel's parent-death signal on Linux,
    and a daemon thread that polls ``os.getppid()`` (other systems, and a parent that died before
    the signal was armed)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


# -- a global trial target ------------------------------------------------------------------------
ATTEMPTS_PER_TRIAL = 10  # the cap on sampled trials: this many times the target (module docstring)


class SurplusTrial(RuntimeError):
    """This trial is beyond the study's target: lower-numbered trials already claim it."""


class _HideSurplus(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SurplusTrial" not in record.getMessage()


def _ends_the_search(exc: type[BaseException] | None) -> bool:
    """Whether a trial's exception ends the whole search with its own one-line message: Ctrl-C
    (exit 130) or the storage failing (exit 2, :func:`scaling.search.storage.storage_failure`)."""
    import sqlite3

    from optuna.exceptions import StorageInternalError
    from sqlalchemy.exc import SQLAlchemyError

    return exc is not None and issubclass(exc, (KeyboardInterrupt, SQLAlchemyError, sqlite3.Error,
                                                StorageInternalError))


class _HideFatal(logging.Filter):
    """Optuna's "Trial N failed ... because of ..." warning, its traceback and its "failed with
    value" line are not shown for an exception that ends the search with one line anyway
    (:func:`_ends_the_search`); the trial is still marked failed."""

    hidden: float | None = None  # when such a warning was hidden

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if _ends_the_search(record.exc_info[0] if record.exc_info else None) \
                or "KeyboardInterrupt" in text:
            self.hidden = record.created
            return False
        return not (self.hidden is not None and "failed with value" in text
                    and record.created - self.hidden < 5.0)


for _filter in (_HideSurplus(), _HideFatal()):
    logging.getLogger("optuna.study._optimize").addFilter(_filter)


def is_trained(trial: Any) -> bool:
    """Whether ``trial`` counts toward the target: finished (complete or pruned) and evaluated,
    not an over-budget sample."""
    return (trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and trial.user_attrs.get("status") not in INFEASIBLE)


def max_attempts(target: int) -> int:
    """The most trials a study with this target samples: :data:`ATTEMPTS_PER_TRIAL` x target."""
    return ATTEMPTS_PER_TRIAL * target


@dataclass(frozen=True)
class Census:
    """A study's trials, all processes together: ``trained`` (:func:`is_trained`), ``running``,
    ``attempts`` (finished or failed, over-budget ones included, surplus ones not), ``over``
    (over-budget samples)."""

    trained: int
    running: int
    attempts: int
    over: int

    @classmethod
    def of(cls, trials: Any) -> Census:
        """The census of a study, or of a list of its trials."""
        if hasattr(trials, "get_trials"):
            trials = trials.get_trials(deepcopy=False)
        done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        return cls(trained=sum(map(is_trained, trials)),
                   running=sum(t.state == TrialState.RUNNING for t in trials),
                   attempts=sum(t.state in done and not t.user_attrs.get("surplus")
                                for t in trials),
                   over=sum(t.user_attrs.get("status") in INFEASIBLE for t in trials))

    def done(self, target: int, cap: int) -> bool:
        """Whether no trial should start any more: the target is trained or the cap reached."""
        return self.trained >= target or self.attempts >= cap

    def claimed(self, target: int, cap: int) -> bool:
        """Whether the running trials could finish the target or reach the cap."""
        return self.trained + self.running >= target or self.attempts + self.running >= cap


def _surplus(trial: Any, target: int, cap: int) -> bool:
    """Whether lower-numbered trials already claim the target or the cap (a same-instant
    start)."""
    ahead = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    return Census.of(ahead).claimed(target, cap)


class TargetCallback:
    """An Optuna callback that stops ``study.optimize`` (``study.stop()``) once the running and
    trained trials of all processes could finish ``target``, the attempts reach ``cap``, or this
    process failed ``failures`` trials; like :class:`optuna.study.MaxTrialsCallback`, but
    counting trained trials only (over-budget samples are COMPLETE too)."""

    def __init__(self, target: int, cap: int, failures: int,
                 fail_stale: Callable[[Any], None]) -> None:
        self.target, self.cap, self.failures_allowed = target, cap, failures
        self.fail_stale = fail_stale
        self.ran = self.failures = 0

    def __call__(self, study: Any, trial: Any) -> None:
        if not trial.user_attrs.get("surplus"):
            self.ran += 1
            self.failures += trial.state == TrialState.FAIL
        self.fail_stale(study)
        if self.failures >= self.failures_allowed \
                or Census.of(study).claimed(self.target, self.cap):
            study.stop()


def run_trials(study: Any, objective: Callable[[Any], Any], target: int, *,
               timeout: float | None, fail_stale: Callable[[Any], None],
               callbacks: list[Callable[[Any, Any], None]], catch: tuple[type, ...],
               cap: int | None = None) -> int:
    """Run trials until ``study`` has ``target`` trained trials (all processes counted), it has
    ``cap`` attempts (default :func:`max_attempts`), this process failed as many trials (in
    ``catch``) as the study lacked when it started, or ``timeout`` seconds passed. While others'
    running trials could reach the target or the cap it waits (one whose process dies is failed
    by ``fail_stale``, then run here). Returns the trials this process ran (surplus ones not
    counted)."""
    cap = max_attempts(target) if cap is None else cap

    def guarded(trial: Any) -> Any:
        if _surplus(trial, target, cap):
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"the target of {target} trials is claimed by other workers")
        return objective(trial)

    stop = TargetCallback(target, cap, max(1, target - Census.of(study).trained), fail_stale)
    deadline = None if timeout is None else time.monotonic() + timeout
    while stop.failures < stop.failures_allowed:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            break
        fail_stale(study)
        census = Census.of(study)
        if census.done(target, cap):
            break
        if census.claimed(target, cap):
            time.sleep(POLL_S)
            continue
        study.optimize(guarded, timeout=left, callbacks=[*callbacks, stop],
                       catch=(*catch, SurplusTrial))
    return stop.ran
