"""A study run by several worker processes that share one Optuna storage
(``python -m scaling.study run CONFIG --storage URL``, issue 30): every planned run trained
exactly once, every worker writing the same ``plan.json`` and ``runs.csv``, and a worker
SIGKILLed mid-run leaving its run to another. SQLite always; PostgreSQL when
``SCALING_TEST_POSTGRES`` names a throwaway database. Each worker is a real process running the
CLI; its trainer is wrapped to log ``spec_key seed pid`` per finished run (so duplicates and
losses are counted) and, where the test asks, to hang in the first run one worker takes."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest

from scaling.study.cli import main
from scaling.study.config import resolve
from scaling.study.distributed import results
from scaling.study.shared import study_names

ROOT = Path(__file__).resolve().parent.parent
POSTGRES = os.environ.get("SCALING_TEST_POSTGRES")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
needs_data = pytest.mark.skipif(not os.path.isdir(FASHION_DIR),
                                reason=f"Fashion-MNIST absent from {FASHION_DIR}")
TIMEOUT_S = 1800  # a worker's whole study: ~20 CPU seconds, far longer on a loaded machine
optuna.logging.set_verbosity(optuna.logging.WARNING)

CONFIG = ROOT / "tests" / "data" / "study_workers.yaml"  # 12 runs of a fraction of a second

# One worker "on another machine": the CLI, its trainer wrapped to log (and maybe hang once).
WORKER = """
import os, sys, time
from scaling.study import plan, protocol
real, log, hang = protocol.train_seeds, os.environ["RUN_LOG"], os.environ.get("HANG")

def logged(spec, proto, seeds, device, threads):
    if hang:
        try:
            os.close(os.open(hang, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:  # the first run any worker takes: hang in it until killed
            with open(hang, "w") as f:
                f.write(str(os.getpid()))
            time.sleep(3600)
    outs = real(spec, proto, seeds, device, threads)
    with open(log, "a") as f:
        f.writelines(f"{plan.spec_key(spec)} {seed} {os.getpid()}\\n" for seed in seeds)
    return outs

protocol.train_seeds = logged
from scaling.study.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(params=["postgres" if POSTGRES else "sqlite"])
def url(request, tmp_path):
    """A storage URL: the PostgreSQL test database where one is given (as CI gives it: the
    several-machine case; each test's config has a name of its own, so its studies are new
    there), else a new SQLite file. One backend per run keeps the suite's time: each of these
    tests runs two or three worker processes; the README test runs the SQLite command, and
    SQLite's one-pop-per-trial has its own test (test_study_distributed.py)."""
    if request.param == "postgres":
        return POSTGRES
    return f"sqlite:///{tmp_path / 'study.db'}"


def _config(folder: Path) -> Path:
    """The test config under a name of its own (its studies are new in a shared database)."""
    path = folder / "workers.yaml"
    path.write_text(CONFIG.read_text().replace("name: workers",
                                               f"name: workers-{uuid.uuid4().hex[:8]}"))
    return path


def _start(config: Path, url: str, out: Path, log: Path, hang: Path | None = None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg",
           "RUN_LOG": str(log), **({"HANG": str(hang)} if hang else {})}
    argv = ["run", str(config), "--out", str(out), "--storage", url, "--device", "cpu",
            "--threads", "1", "--heartbeat", "1", "--grace", "2"]
    return subprocess.Popen([sys.executable, "-c", WORKER, *argv], cwd=out.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _planned(out: Path) -> list[tuple[str, int]]:
    """(spec_key, seed) of every run that ``out/plan.json`` plans (seed 0 only here)."""
    from scaling.ir import NetworkSpec
    from scaling.study.plan import spec_key

    models = json.loads((out / "plan.json").read_text())["models"]
    return sorted({(spec_key(NetworkSpec.from_dict(m["spec"])), 0) for m in models})


def _trained(log: Path) -> list[tuple[str, int]]:
    return sorted((k, int(s)) for k, s, _ in (line.split() for line in
                                              log.read_text().splitlines()))


@pytest.mark.slow
@pytest.mark.data
@needs_data
def test_two_workers_share_a_study_and_train_each_planned_run_once(tmp_path, url):
    config, log = _config(tmp_path), tmp_path / "trained.log"
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]  # --out differs per machine
    procs = [_start(config, url, out, log) for out in outs]
    try:
        for p in procs:
            stdout, stderr = p.communicate(timeout=TIMEOUT_S)
            assert p.returncode == 0, stderr[-2000:]
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    a, b = outs
    assert _trained(log) == _planned(a)  # each planned run trained once, by one of them
    assert (a / "plan.json").read_text() == (b / "plan.json").read_text()
    assert (a / "runs.csv").read_bytes() == (b / "runs.csv").read_bytes()
    runs = pd.read_csv(a / "runs.csv")
    assert sorted(zip(runs["spec_key"], runs["seed"])) == _planned(a)
    assert (a / "README.md").is_file() and (b / "README.md").is_file()
    names = study_names(resolve(config))
    grid = results(url, names["grid"])
    planned_grid = [m for m in json.loads((a / "plan.json").read_text())["models"]
                    if m["experiment"] == "grid"]
    assert (grid["attempts"] == 1).all() and len(grid) == len(planned_grid)


@pytest.mark.slow
@pytest.mark.data
@needs_data
def test_a_killed_workers_run_is_trained_by_the_other_and_a_restart_trains_nothing(tmp_path,
                                                                                    url):
    config, log, hang = _config(tmp_path), tmp_path / "trained.log", tmp_path / "hung"
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    procs = [_start(config, url, out, log, hang) for out in outs]
    try:
        deadline = time.time() + TIMEOUT_S
        while not (hang.is_file() and hang.read_text()) and time.time() < deadline:
            time.sleep(0.2)
        victim = int(hang.read_text())
        os.kill(victim, signal.SIGKILL)
        survivor = next(p for p in procs if p.pid != victim)
        stdout, stderr = survivor.communicate(timeout=TIMEOUT_S)
        assert survivor.returncode == 0, stderr[-2000:]
    finally:
        for p in procs:
            p.kill()
            p.communicate()
    done = next(out for out, p in zip(outs, procs) if p.pid != victim)
    killed = next(out for out in outs if out != done)
    assert _trained(log) == _planned(done)  # the hung run once, by the survivor
    names = study_names(resolve(config))
    grid = results(url, names["grid"]).set_index("key")
    # the killed worker's run (its first, in the grid) took a second try; the others one
    assert sorted(grid["attempts"]) == [1] * (len(grid) - 1) + [2]
    assert (grid["worker"].str.endswith(f":{survivor.pid}")).all()
    # The killed machine's worker again: everything is done, it trains nothing and writes the
    # same runs.csv.
    again = _start(config, url, killed, log)
    stdout, stderr = again.communicate(timeout=TIMEOUT_S)
    assert again.returncode == 0, stderr[-2000:]
    assert _trained(log) == _planned(done)
    assert (killed / "runs.csv").read_bytes() == (done / "runs.csv").read_bytes()


@pytest.mark.parametrize("argv, error", [
    (["--storage", "sqlite:///x.db", "--heartbeat", "0"], "--heartbeat=0"),
    (["--storage", "sqlite:///x.db", "--grace", "5", "--heartbeat", "5"],
     "--grace=5 is not allowed; expected more than --heartbeat=5"),
    (["--storage", "sqlite:///x.db", "--jobs", "2"], "--jobs=2 is not allowed with --storage"),
    (["--storage", "runs.db"], "storage='runs.db' is not an Optuna RDB URL"),
], ids=["heartbeat", "grace", "jobs", "not-a-url"])
def test_bad_worker_options_are_one_line(tmp_path, capsys, monkeypatch, argv, error):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "tiny", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1 and err.startswith("python -m scaling.study: ")


def test_the_storage_study_names_derive_from_the_config():
    preset = resolve("tiny")
    key = preset.protocol.key()
    stages = ("search", "pick", "grid", "confirm", "runs")
    assert study_names(preset) == {s: f"tiny-{key}-{s}" for s in stages}
