"""The study's runs on many workers (scaling.study.distributed): each run trained exactly once,
a killed worker's run retrained by another, enqueuing idempotent; on SQLite always and on
PostgreSQL when ``SCALING_TEST_POSTGRES`` names a throwaway database. The training is a stand-in
that sleeps and logs ``key pid`` to a file, so that duplicates and losses are counted."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scaling.study.distributed import enqueue_runs, results, work

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("SCALING_TEST_POSTGRES")
optuna.logging.set_verbosity(optuna.logging.WARNING)

# A worker on "another machine": it knows the storage URL, the study name and the plan only.
WORKER = """
import json, os, sys, time
import optuna
from scaling.study.distributed import enqueue_runs, work
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, study, folder = sys.argv[1:4]
log = os.path.join(folder, "done.log")

def train(payload):
    if payload.get("hang") and not os.path.exists(os.path.join(folder, "hung")):
        with open(os.path.join(folder, "hung"), "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)  # killed here
    time.sleep(payload["sleep"])
    with open(log, "a") as f:
        f.write(f"{payload['key']} {os.getpid()}\\n")
    return {"acc": payload["i"] / 10, "pid": os.getpid()}

enqueue_runs(url, study, json.load(open(os.path.join(folder, "plan.json"))))
work(url, study, train, heartbeat_interval=1, grace=2)
"""


@pytest.fixture(scope="module")
def shared_url(tmp_path_factory):
    """One SQLite storage for the module (creating the schema takes a second)."""
    return f"sqlite:///{tmp_path_factory.mktemp('runs')}/runs.db"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, shared_url):
    """A storage URL: this module's SQLite file, or the PostgreSQL test database; every test
    uses study names of its own."""
    if request.param == "postgres":
        if not POSTGRES:
            pytest.skip("SCALING_TEST_POSTGRES is not set")
        return POSTGRES
    return shared_url


def _plan(n, sleep=0.0, **first):
    return [{"key": f"run-{i}", "payload": {"key": f"run-{i}", "i": i, "sleep": sleep,
                                            **(first if i == 0 else {})}} for i in range(n)]


def _trials(url, study):
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


@pytest.mark.slow
def test_two_workers_train_each_run_once_and_retrain_a_killed_workers_run(tmp_path, url):
    """Both workers enqueue the same plan at once and share it; the one that takes run-0 hangs
    and is SIGKILLed; the other finishes the rest, waits, and retrains run-0 once its heartbeat
    is stale."""
    study, plan = f"d-{uuid.uuid4().hex[:8]}", _plan(6, sleep=0.1, hang=True)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert enqueue_runs(url, study, plan[:1]) == 1  # the schema exists before workers race
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, study, str(tmp_path)],
                              cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        hung, deadline = tmp_path / "hung", time.time() + 60
        while not (hung.exists() and hung.read_text()) and time.time() < deadline:
            time.sleep(0.1)
        victim = int(hung.read_text())
        os.kill(victim, signal.SIGKILL)
        survivor = next(p for p in procs if p.pid != victim)
        assert survivor.wait(timeout=60) == 0, survivor.stderr.read()
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    done = [line.split() for line in (tmp_path / "done.log").read_text().splitlines()]
    assert sorted(key for key, _ in done) == sorted(r["key"] for r in plan)  # each run once
    table = results(url, study).set_index("key")
    assert sorted(table.index) == sorted(r["key"] for r in plan)
    assert table.loc["run-0", "attempts"] == 2 and table.loc["run-0", "pid"] == survivor.pid
    assert table.loc["run-3", "acc"] == pytest.approx(0.3)
    assert (table.drop("run-0")["attempts"] == 1).all()
    failed = [t for t in _trials(url, study) if t.state == TrialState.FAIL]
    assert [t.user_attrs["key"] for t in failed] == ["run-0"]


def test_enqueue_is_idempotent_and_a_duplicate_or_retried_copy_is_never_trained(url):
    study, plan = f"e-{uuid.uuid4().hex[:8]}", _plan(3)
    assert enqueue_runs(url, study, plan) == 3
    assert enqueue_runs(url, study, plan) == 0  # a second worker, a restart
    assert enqueue_runs(url, study, _plan(4)) == 1  # a run added to the plan
    # Two processes enqueuing at the same instant: a second WAITING copy of run-1.
    opt = optuna.load_study(study_name=study, storage=url)
    opt.enqueue_trial({}, user_attrs={"key": "run-1", "payload": plan[1]["payload"]})
    seen = []
    assert work(url, study, lambda p: seen.append(p["key"]) or {"acc": 1.0},
                heartbeat_interval=1, grace=2) == 4
    assert sorted(seen) == ["run-0", "run-1", "run-2", "run-3"]
    # A retried copy of a key that completed meanwhile: skipped, not trained.
    opt.enqueue_trial({}, user_attrs={"key": "run-2", "payload": plan[2]["payload"]})
    assert work(url, study, lambda p: seen.append(p["key"]) or {}, heartbeat_interval=1,
                grace=2) == 0 and len(seen) == 4
    skipped = [t for t in _trials(url, study) if "skipped" in t.user_attrs]
    assert [t.state for t in skipped] == [TrialState.PRUNED] * 2
    table = results(url, study)
    assert sorted(table["key"]) == ["run-0", "run-1", "run-2", "run-3"]
    assert list(table.columns[:2]) == ["key", "acc"] and (table["attempts"] == 1).all()
    assert enqueue_runs(url, study, plan) == 0  # completed keys are not enqueued again


def test_a_failed_run_fails_its_worker_and_is_enqueued_again(shared_url):
    url, study = shared_url, "f"
    enqueue_runs(url, study, _plan(2))

    def broken(payload):
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        work(url, study, broken, heartbeat_interval=1, grace=2)
    assert results(url, study).empty
    assert enqueue_runs(url, study, _plan(2)) == 1  # run-0 failed: back in the queue
    assert work(url, study, lambda p: {"acc": 0.5}, heartbeat_interval=1, grace=2) == 2
    assert results(url, study).set_index("key")["attempts"].to_dict() == {"run-0": 2, "run-1": 1}


@pytest.mark.parametrize("call, error", [
    (lambda u: enqueue_runs(u, "s", [{"payload": {}}]), "runs\\[0\\].*non-empty string 'key'"),
    (lambda u: enqueue_runs(u, "s", [{"key": "a"}, {"key": "a"}]), "runs\\[1\\].key='a'.*twice"),
    (lambda u: enqueue_runs(u, "s", [{"key": "a", "payload": {"x": {1, 2}}}]),
     "runs\\[0\\].payload of key 'a'.*JSON"),
    (lambda u: enqueue_runs(u, "", []), "study_name=''"),
    (lambda u: enqueue_runs(42, "s", []), "storage=42"),
    (lambda u: work(u, "absent", dict), "study_name='absent' is not in the storage"),
    (lambda u: work(u, "s", dict, heartbeat_interval=2, grace=2), "grace=2.*heartbeat_interval=2"),
    (lambda u: work(u, "s", dict, heartbeat_interval=0), "heartbeat_interval=0"),
    (lambda u: work(u, "s", dict, max_retry=-1), "max_retry=-1"),
    (lambda u: work(u, "s", "train"), "train_fn='train'"),
    (lambda u: work(u, "s", lambda p: [1], grace=2, heartbeat_interval=1), "returned list"),
    (lambda u: work(u, "s", lambda p: {"key": 1}, grace=2, heartbeat_interval=1),
     "field\\(s\\) \\['key'\\]"),
], ids=["no-key", "duplicate-key", "payload-not-json", "empty-name", "storage-type",
        "absent-study", "grace", "heartbeat", "max-retry", "train-fn", "result-type",
        "result-reserved"])
def test_bad_input_is_one_clear_error(shared_url, call, error):
    url = shared_url
    enqueue_runs(url, "s", _plan(1))  # run-0 waiting again after a case that failed it
    with pytest.raises((ValueError, TypeError), match=error):
        call(url)


def test_a_search_study_is_not_taken_for_a_run_queue(shared_url):
    url = shared_url
    search = optuna.create_study(study_name="search", storage=url)
    search.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(ValueError, match="study_name='search' holds trials that are not"):
        enqueue_runs(url, "search", _plan(1))
    optuna.create_study(study_name="made-empty", storage=url)  # e.g. by `optuna create-study`
    assert enqueue_runs(url, "made-empty", _plan(1)) == 1
    assert optuna.load_study(study_name="made-empty", storage=url).metric_names == ["seconds"]


def test_two_processes_never_pop_one_waiting_trial_on_sqlite(tmp_path):
    """SQLite ignores SELECT ... FOR UPDATE, so Optuna's pop (read WAITING, set RUNNING) raced
    between connections: two workers ran one enqueued run. Every transaction now takes the write
    lock first (scaling.search.storage._sqlite_wal). Four connections in threads pop 40 trials."""
    from concurrent.futures import ThreadPoolExecutor

    from scaling.search.storage import open_rdb

    url = f"sqlite:///{tmp_path / 'pop.db'}"
    queue = optuna.create_study(study_name="q", storage=open_rdb(url, heartbeat=5, grace=10,
                                                                   max_retry=0))
    for i in range(40):
        queue.enqueue_trial({"x": i})
    ran: list[int] = []

    def pop_all(_):
        study = optuna.load_study(study_name="q", storage=open_rdb(url, heartbeat=5, grace=10,
                                                                   max_retry=0))
        while study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            study.optimize(lambda t: ran.append(t.number) or 0.0, n_trials=1)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(pop_all, range(4)))  # a double pop raised "Cannot tell a COMPLETE trial"
    assert len(ran) == len(set(ran)) and set(range(40)) <= set(ran)
