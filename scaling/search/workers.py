"""What lets many processes share one search: per-trial seeding, a global trial target, and
worker processes that die with their parent.

- :class:`ProcessSeededSampler` creates the study's sampler at a process's first trial, seeded
  from the study's seed and that trial's number (:func:`process_seed`): a fresh search's first
  process draws exactly the stream of ``cfg.seed`` (the same trials as before this class
  existed), and every other process -- a resume, a spawned worker, a separate process sharing
  the storage -- starts at a different trial number (they are unique in a study), so it never
  replays another's random stream; each stays reproducible from (seed, first trial number).
- :func:`run_trials` runs trials until the study has ``target`` finished (complete + pruned)
  trials, counting every process's trials: a trial starts only while ``finished + running <
  target``; one that finds ``target`` lower-numbered trials alive (two processes starting at the
  same instant) raises :class:`SurplusTrial` and ends as FAIL with the user attr ``surplus``.
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
from typing import Any

import optuna
from optuna.trial import TrialState

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
class SurplusTrial(RuntimeError):
    """This trial is beyond the study's target: lower-numbered trials already claim it."""


class _HideSurplus(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "SurplusTrial" not in record.getMessage()


logging.getLogger("optuna.study._optimize").addFilter(_HideSurplus())


def _census(study: Any) -> tuple[int, int]:
    """(finished, running) trials of the study, all processes together."""
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                      TrialState.RUNNING))
    running = sum(t.state == TrialState.RUNNING for t in trials)
    return len(trials) - running, running


def _surplus(trial: Any, target: int) -> bool:
    """Whether ``target`` lower-numbered trials already finished or run (a same-instant start)."""
    ahead = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                          TrialState.RUNNING))
    return sum(t.number < trial.number for t in ahead) >= target


def run_trials(study: Any, objective: Callable[[Any], Any], target: int, *,
               timeout: float | None, fail_stale: Callable[[Any], None],
               callbacks: list[Callable[[Any, Any], None]], catch: tuple[type, ...]) -> int:
    """Run trials until ``study`` has ``target`` finished trials (all processes counted), this
    process made as many attempts as the study lacked when it started (trials that fail in
    ``catch`` count), or ``timeout`` seconds passed. While others' running trials could reach the
    target it waits (one whose process dies is failed by ``fail_stale``, then run here).
    Returns the trials this process ran (surplus ones not counted)."""
    surplus = [0]

    def guarded(trial: Any) -> Any:
        if _surplus(trial, target):
            surplus[0] += 1
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"the target of {target} trials is claimed by other workers")
        return objective(trial)

    deadline = None if timeout is None else time.monotonic() + timeout
    attempts = ran = target - _census(study)[0]
    while ran > 0 and (deadline is None or time.monotonic() < deadline):
        fail_stale(study)
        finished, running = _census(study)
        if finished >= target:
            break
        if finished + running >= target:
            time.sleep(POLL_S)
            continue
        before = surplus[0]
        study.optimize(guarded, n_trials=1, callbacks=callbacks, catch=(*catch, SurplusTrial))
        ran -= surplus[0] == before
    return attempts - ran
