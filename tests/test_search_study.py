"""Studies on SQLite: resume after SIGKILL (heartbeat, stale trials); several workers and
processes: tests/test_search_storage.py."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _cmd(tmp_path, study, trials, *extra):
    return [sys.executable, "-m", "scaling.search", "--evaluator", "zero-cost", "--trials",
            str(trials), "--study", study, "--out", str(tmp_path), "--heartbeat", "1", "--grace",
            "2", "--quiet", "--threads", "1", *(extra or ("--budget", "3M"))]


def _trials(tmp_path, study):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/{study}.db")
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _raw_states(path):
    """Trial states straight from the SQLite file: cheap enough to poll every 10 ms."""
    if not path.exists():
        return []
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as con:
            return [row[0] for row in con.execute("SELECT state FROM trials")]
    except sqlite3.Error:  # tables not created yet, or a writer holds the lock
        return []


def _states(trials, *states):
    return [t for t in trials if t.state in states]


@pytest.mark.slow
def test_resume_after_sigkill_mid_trial(tmp_path):
    """Kill the search while a trial runs; the resumed search fails the stale trial (heartbeat),
    retries its parameters, and ends with every trial finished once, none RUNNING."""
    target = 6
    # synflow at 64x64: each trial builds and runs a model, a window to kill it in
    args = _cmd(tmp_path, "r", target, "--proxies", "synflow,params", "--resolution", "64",
                "--budget", "30M")
    killed_mid_trial = False
    for attempt in range(3):
        cmd = args + (["--resume"] if attempt else [])
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.time() + 90
        try:
            while time.time() < deadline and proc.poll() is None:
                states = _raw_states(tmp_path / "r.db")
                if states.count("COMPLETE") >= 2 and "RUNNING" in states:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.01)
        finally:
            proc.wait(timeout=30)
        assert proc.returncode in (-signal.SIGKILL, 0)
        if _states(_trials(tmp_path, "r"), TrialState.RUNNING):
            killed_mid_trial = True
            break
    assert killed_mid_trial, "could not stop the search inside a trial in three attempts"
    before = _trials(tmp_path, "r")
    done_before = {t.number: t.values for t in _states(before, TrialState.COMPLETE)}
    stale = [t.number for t in _states(before, TrialState.RUNNING)]
    time.sleep(2.5)  # past the grace period: the dead worker's heartbeat is stale

    proc = subprocess.run(args + ["--resume"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    after = _trials(tmp_path, "r")
    assert not _states(after, TrialState.RUNNING, TrialState.WAITING)
    complete = [t for t in _states(after, TrialState.COMPLETE)  # the target counts evaluated
                if t.user_attrs.get("status") != "over_budget"]  # trials, not rejected samples
    assert len(complete) == target
    numbers = [t.number for t in after]
    assert len(numbers) == len(set(numbers))
    for number, values in done_before.items():  # completed before the kill: kept, once
        assert after[number].state == TrialState.COMPLETE and after[number].values == values
    for number in stale:
        assert after[number].state == TrialState.FAIL
        retried = [t for t in complete if t.system_attrs.get("failed_trial") == number]
        # the retry starts from every parameter the killed trial had sampled
        assert len(retried) == 1
        assert after[number].params.items() <= retried[0].params.items()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_trial_killed_before_its_first_heartbeat_is_failed_too(tmp_path):
    """Optuna skips RUNNING trials without any heartbeat; fail_stale catches them."""
    from scaling.search.study import SearchConfig, fail_stale, open_storage, open_study

    cfg = SearchConfig(study="hb", heartbeat=1, grace=2, out_dir=str(tmp_path)).validate()
    study = open_study(cfg, open_storage(cfg), create=True)
    orphan = study.ask()  # RUNNING, never heartbeats: as if killed right after creation
    fail_stale(study, cfg.grace)
    assert study.trials[orphan.number].state == TrialState.RUNNING  # within the grace period
    time.sleep(2.2)
    fail_stale(study, cfg.grace)
    trials = study.get_trials(deepcopy=False)
    assert trials[orphan.number].state == TrialState.FAIL
    assert [t.state for t in trials[orphan.number + 1:]] == [TrialState.WAITING]  # retried
