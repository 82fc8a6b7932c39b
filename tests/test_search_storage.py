"""Many processes, one search: new samples on every resume and in every process, a global trial
target, workers that die with their parent, safe concurrent creation, kill/resume; on SQLite
always and on PostgreSQL when ``SCALING_TEST_POSTGRES`` names a throwaway database (``.ci/run``
starts one). Zero-cost trials on tiny budgets: the sampler's chance of drawing one architecture
twice in this space is ~0 (0 of 1,000 random samples under 40 seeds), so any duplicate is the
search repeating its own work."""

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

from scaling.search import storage as st
from scaling.search.config import ConfigError, SearchConfig, StorageError
from scaling.search.study import open_storage, open_study, run_search

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("SCALING_TEST_POSTGRES")
optuna.logging.set_verbosity(optuna.logging.WARNING)
CHEAP = ["--evaluator", "zero-cost", "--proxies", "params", "--rank-proxy", "params",
         "--budget", "30M", "--heartbeat", "1", "--grace", "2", "--threads", "1", "--quiet"]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    """A storage URL: a new SQLite file, or the PostgreSQL test database (unique study names)."""
    if request.param == "postgres":
        if not POSTGRES:
            pytest.skip("SCALING_TEST_POSTGRES is not set")
        return POSTGRES
    return f"sqlite:///{tmp_path}/s.db"


def _search(tmp_path, url, study, trials, *extra):
    return [sys.executable, "-m", "scaling.search", *CHEAP, "--trials", str(trials), "--study",
            study, "--out", str(tmp_path), "--storage", url, *extra]


def _trials(url, study):
    return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)


def _done(trials):
    """The trials that were evaluated (an over-budget sample is never built and not counted)."""
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and t.user_attrs.get("status") != "over_budget"]


def _duplicates(trials):
    keys = [json.dumps(t.params, sort_keys=True) for t in _done(trials)]
    return len(keys) - len(set(keys))


def _children(pid):
    """Live (not zombie) processes whose parent is ``pid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_resume_draws_new_samples_and_a_fresh_run_repeats_itself(tmp_path):
    def cfg(out, trials, resume=False):
        return SearchConfig(study="r", evaluator="zero-cost", proxies=("params",),
                            rank_proxy="params", budget=30_000_000, sampler="random",
                            trials=trials, resume=resume, out_dir=str(out), quiet=True)

    run_search(cfg(tmp_path / "a", 4))
    info = run_search(cfg(tmp_path / "a", 8, resume=True))
    trials = info.study.get_trials(deepcopy=False)
    assert len(_done(trials)) == 8 and _duplicates(trials) == 0
    again = run_search(cfg(tmp_path / "b", 4)).study.get_trials(deepcopy=False)
    assert [t.params for t in again] == [t.params for t in trials[:4]]  # same seed, same draws


@pytest.mark.slow
def test_separate_processes_share_the_target_and_create_the_study_at_once(tmp_path, url):
    """Processes started together on a new storage/study: none fails, the target is global."""
    study, target, n = f"p-{uuid.uuid4().hex[:8]}", 12, 2
    procs = [subprocess.Popen(_search(tmp_path, url, study, target, "--resume"), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(n)]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * n, errors
    trials = _trials(url, study)
    assert len(_done(trials)) == target and _duplicates(trials) == 0
    extra = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL and t.user_attrs.get("surplus") for t in extra)


@pytest.mark.slow
def test_killing_the_parent_stops_its_workers_and_resume_loses_nothing(tmp_path, url):
    study, target = f"k-{uuid.uuid4().hex[:8]}", 16
    args = _search(tmp_path, url, study, target, "--workers", "2", "--proxies", "synflow,params",
                   "--resolution", "32")
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers, deadline = [], time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                done = _done(_trials(url, study))
            except Exception:  # noqa: BLE001 - the storage or study does not exist yet
                done = []
            if len(done) >= 4 and {t.user_attrs.get("worker") for t in done} == {0, 1}:
                workers = _children(proc.pid)  # both workers run (and spawn's tracker)
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.1)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the search ended before it could be killed"
    deadline = time.time() + 10
    while any(_alive(w) for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    assert not [w for w in workers if _alive(w)], "orphan worker processes"
    before = {t.number: t.values for t in _trials(url, study) if t.state == TrialState.COMPLETE}
    time.sleep(2.5)  # past the grace period: a trial the kill interrupted is stale
    run_search(SearchConfig(study=study, storage=url, evaluator="zero-cost",
                            proxies=("synflow", "params"), rank_proxy="params", resolution=32,
                            budget=30_000_000, heartbeat=1, grace=2, threads=1, trials=target,
                            resume=True, out_dir=str(tmp_path), quiet=True))
    after = {t.number: t for t in _trials(url, study)}
    assert len(_done(after.values())) == target
    assert not [t for t in after.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(after[n].values == v for n, v in before.items())  # no completed trial lost
    assert _duplicates(list(after.values())) == 0


def test_study_names_its_metrics_and_stores_blocks_and_small_attrs(tmp_path):
    from scaling.ir import NetworkSpec, encode_stages

    cfg = SearchConfig(study="h", evaluator="zero-cost", proxies=("params",), rank_proxy="params",
                       objective="pareto", budget=30_000_000, trials=3, out_dir=str(tmp_path),
                       quiet=True)
    study = run_search(cfg).study
    assert study.metric_names == ["params", "macs"]
    for t in study.trials:
        spec = NetworkSpec.from_dict(json.loads(t.user_attrs["spec"]))
        assert t.user_attrs["blocks"].split() == encode_stages(spec)
    assert list(study.user_attrs) == ["search"] and len(str(study.user_attrs)) < 200
    stored = study._storage.get_study_system_attrs(study._study_id)[st.CONFIG_ATTR]
    assert stored["space"] == json.loads(json.dumps(cfg.space)) and stored["budget"] == cfg.budget
    # optuna's CLI in this interpreter (its console script need not be on PATH)
    cli = ("import sys; from optuna.cli import main; "
           f"sys.argv = ['optuna', 'studies', '--storage', {cfg.storage_url!r}]; sys.exit(main())")
    out = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert max(map(len, out.stdout.splitlines())) < 250


def test_a_study_of_the_older_layout_loads_resumes_and_checks_its_identity(tmp_path):
    cfg = SearchConfig(study="old", evaluator="zero-cost", proxies=("params",),
                       rank_proxy="params", budget=30_000_000, out_dir=str(tmp_path)).validate()
    storage = open_storage(cfg)
    study = optuna.create_study(study_name="old", storage=storage)
    older = {k: v for k, v in cfg.to_dict().items() if k != "zero_init_last"}  # before the flag
    study.set_user_attr("identity", {k: v for k, v in st._identity(older).items()
                                     if k != "zero_init_last"})
    study.set_user_attr("config", older)
    with pytest.raises(ConfigError, match="--resume"):
        open_study(cfg, storage, create=True)
    cfg.resume = True
    assert sorted(open_study(cfg, storage, create=True).user_attrs) == ["config", "identity"]
    cfg.zero_init_last = True  # a study stored before the flag trained without it
    with pytest.raises(ConfigError, match="zero_init_last"):
        open_study(cfg, storage, create=True)
    cfg.zero_init_last, cfg.budget = False, 40_000_000
    with pytest.raises(ConfigError, match="budget"):
        open_study(cfg, storage, create=True)


def test_a_study_stored_before_zero_init_last_resumes_without_it(tmp_path):
    cfg = SearchConfig(study="pre", evaluator="zero-cost", proxies=("params",),
                       rank_proxy="params", budget=30_000_000, out_dir=str(tmp_path)).validate()
    storage = open_storage(cfg)
    open_study(cfg, storage, create=True)
    study_id = storage.get_study_id_from_name("pre")
    older = {k: v for k, v in cfg.to_dict().items() if k != "zero_init_last"}
    storage.set_study_system_attr(study_id, st.CONFIG_ATTR, older)
    cfg.resume = True
    assert open_study(cfg, storage, create=True).study_name == "pre"
    cfg.zero_init_last = True
    with pytest.raises(ConfigError,
                       match=r"settings: zero_init_last \(stored False, given True\); resume"):
        open_study(cfg, storage, create=True)


def test_postgres_urls_name_the_driver_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("psycopg") else real(name, *a))
    with pytest.raises(StorageError, match=r"pip install 'psycopg2-binary'"):
        st._postgres_url("postgresql+psycopg2://u@h/db")
    with pytest.raises(StorageError, match=r"psycopg\[binary\]"):
        st._postgres_url("postgresql://u@h/db")
    installed = object()  # psycopg2 present, psycopg absent, whatever this machine has
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg"
                        else installed if name == "psycopg2" else real(name, *a))
    assert st._postgres_url("postgresql://u@h/db") == "postgresql+psycopg2://u@h/db"


@pytest.mark.skipif(not POSTGRES, reason="SCALING_TEST_POSTGRES is not set")
def test_plain_postgresql_url_works_with_the_installed_driver(tmp_path):
    plain = "postgresql://" + POSTGRES.split("://", 1)[1]
    cfg = SearchConfig(study=f"u-{uuid.uuid4().hex[:8]}", evaluator="zero-cost",
                       proxies=("params",), rank_proxy="params", budget=30_000_000, trials=2,
                       storage=plain, out_dir=str(tmp_path), quiet=True)
    assert len(_done(run_search(cfg).study.trials)) == 2


def test_a_study_stored_before_the_new_window_and_evaluation_points_resumes(tmp_path):
    """A reward study stored with the old default window and no evals_per_epoch resumes: the
    window decides nothing outside the window objective, one look an epoch is what it did; a
    window study stored with the old window is refused under the new default."""
    for objective, ok in (("reward", True), ("window", False)):
        cfg = SearchConfig(study=objective, evaluator="zero-cost", proxies=("params",),
                           rank_proxy="params", budget=30_000_000, objective=objective,
                           out_dir=str(tmp_path)).validate()
        storage = open_storage(cfg)
        open_study(cfg, storage, create=True)
        older = {k: v for k, v in cfg.to_dict().items() if k != "evals_per_epoch"}
        older["window"] = [0.9, 1.0]
        storage.set_study_system_attr(storage.get_study_id_from_name(objective), st.CONFIG_ATTR,
                                      older)
        cfg.resume = True
        if ok:
            assert open_study(cfg, storage, create=True).study_name == objective
            cfg.evals_per_epoch = 3.0  # other looks: another search
            with pytest.raises(ConfigError, match=r"evals_per_epoch \(stored 1, given 3.0\)"):
                open_study(cfg, storage, create=True)
        else:
            with pytest.raises(ConfigError, match=r"window \(stored \[0.9, 1.0\], given"):
                open_study(cfg, storage, create=True)
