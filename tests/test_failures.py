"""Issue 28, "every failure one line, nothing lost": each case ends with exit code 2 (130 for
Ctrl-C) and one line on stderr, no traceback, nothing written outside what was asked, no
completed trial lost. In-process through ``main(argv)``; a subprocess only for a real signal
(the LayerNorm crash's subprocess test is in ``test_layers.py``)."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from idx_files import make_idx_dir

from scaling.search import cli as search_cli
from scaling.search import evaluators as ev

CHEAP = ["--evaluator", "zero-cost", "--proxies", "params", "--rank-proxy", "params",
         "--budget", "3M", "--heartbeat", "1", "--grace", "2", "--threads", "1", "--quiet"]


def _one_line(capfd, code: int, expected: int = 2, prog: str = "python -m scaling.") -> str:
    """The single stderr line of a command that returned ``code`` (``capfd``: Optuna's and the
    workers' output reach the file descriptors, not only sys.stderr)."""
    err = capfd.readouterr().err
    assert code == expected, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(prog), err
    return lines[0]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    return str(make_idx_dir(tmp_path_factory.mktemp("fm"), n_train=64, n_test=8))


def _search(tmp_path: Path, data_root: str, *argv: str) -> list[str]:
    return [*CHEAP, "--data-root", data_root, "--val-size", "16", "--out",
            str(tmp_path / "out"), *argv]


# -- search: bad names, storages, spaces and data are refused before anything is written ------
@pytest.mark.parametrize(("argv", "match"), [
    (["--study", "a\nb"], r"'\n'"), (["--study", "a\u202eb"], r"'\u202e'"),
    (["--study", "."], "study='.'"), (["--study", ".."], "study='..'"),
    (["--study", "a/b"], "'/'"), (["--study", "x" * 300], "at most 200"),
    (["--storage", "sqlite:///:memory:"], "in-memory"), (["--storage", "sqlite:///"], "in-memory"),
    (["--data", "cifar10"], "cifar-10"), (["--data-root", "/nonexistent/fm"], "not found"),
    (["--val-size", str(10 ** 9)], "val_size=1000000000"),
    (["--in-channels", "4"], "in_channels=4 is not allowed for 1-channel"),
])
def test_search_refuses_before_writing(argv, match, tmp_path, data_root, capfd):
    args = _search(tmp_path, data_root, "--trials", "1")
    if "--data-root" in argv:
        args = [a for a in args if a != data_root and a != "--data-root"]
    line = _one_line(capfd, search_cli.main([*args, *argv]))
    assert match in line, line
    assert not (tmp_path / "out").exists() and not list(Path.cwd().glob("*.db"))


def test_search_space_with_an_unknown_top_level_key(tmp_path, data_root, capfd):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"stages": [{"block": "mbconv", "kernel": 3, "expansion": 4,
                                             "se": None, "activation": "relu",
                                             "width_factor": 1.0, "repeats": 1, "stride": 1}],
                                 "stagse": []}))
    line = _one_line(capfd, search_cli.main([*_search(tmp_path, data_root), "--space",
                                             str(space)]))
    assert "unknown key(s) ['stagse']" in line


def _trials(tmp_path: Path, study: str) -> list[str]:
    s = optuna.load_study(study_name=study, storage=f"sqlite:///{tmp_path}/out/{study}.db")
    return [t.state.name for t in s.trials]


def test_resume_of_a_plain_optuna_study_is_refused(tmp_path, data_root, capfd):
    (tmp_path / "out").mkdir()
    plain = optuna.create_study(study_name="p", storage=f"sqlite:///{tmp_path}/out/p.db")
    plain.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    capfd.readouterr()
    line = _one_line(capfd, search_cli.main(_search(tmp_path, data_root, "--study", "p",
                                                    "--resume")))
    assert "not made by python -m scaling.search" in line
    assert _trials(tmp_path, "p") == ["COMPLETE", "COMPLETE"]


def test_corrupted_sqlite_file_is_one_line(tmp_path, data_root, capfd):
    argv = _search(tmp_path, data_root, "--study", "c", "--trials", "2")
    assert search_cli.main(argv) == 0
    db = tmp_path / "out" / "c.db"
    with open(db, "r+b") as fh:  # overwrite pages after the header
        fh.seek(4096)
        fh.write(b"\xde\xad" * 8192)
    capfd.readouterr()
    line = _one_line(capfd, search_cli.main([*argv, "--resume", "--trials", "3"]))
    assert "storage" in line and "DatabaseError: database disk image is malformed" in line


@pytest.mark.parametrize("failure", ["storage", "interrupt"])
def test_a_failure_mid_search_keeps_the_completed_trial(failure, tmp_path, data_root, capfd,
                                                         monkeypatch):
    """The database gone mid-search (what a stopped PostgreSQL raises through SQLAlchemy) is
    one line, exit 2; Ctrl-C one line, exit 130, without Optuna's "Trial N failed ...
    KeyboardInterrupt" traceback. The trial completed before stays complete."""
    from sqlalchemy.exc import OperationalError

    zero_cost, calls = ev.EVALUATORS["zero-cost"], []

    def flaky(ctx, trial, spec, cost):
        calls.append(trial.number)
        if len(calls) == 2:
            if failure == "interrupt":
                raise KeyboardInterrupt
            raise OperationalError("UPDATE trials", {}, Exception("server closed the connection"))
        return zero_cost(ctx, trial, spec, cost)

    monkeypatch.setitem(ev.EVALUATORS, "zero-cost", flaky)
    records: list[logging.LogRecord] = []
    seen = logging.Handler()
    seen.emit = records.append  # Optuna's own handler may hold a stream capfd does not see
    logging.getLogger("optuna").addHandler(seen)
    try:
        code = search_cli.main(_search(tmp_path, data_root, "--study", "m", "--trials", "3"))
    finally:
        logging.getLogger("optuna").removeHandler(seen)
    assert not [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    line = _one_line(capfd, code, 130 if failure == "interrupt" else 2)
    assert ("interrupted" if failure == "interrupt" else "server closed") in line
    assert _trials(tmp_path, "m")[0] == "COMPLETE"


@pytest.mark.slow
def _sigint_default() -> None:
    """Ctrl-C as a terminal's foreground job gets it: a test run started in the background of a
    non-interactive shell (``.ci/run &``) ignores SIGINT, its children inherit SIG_IGN, and
    Python then never installs its handler (seen: the search ran on, 180 s after the signal)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_with_workers_is_one_line_exit_130(tmp_path, data_root):
    """A real SIGINT to the process group (as a terminal sends it): the parent and both workers
    get it; no "Process search-worker-N: Traceback", no Optuna traceback."""
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scaling.search", "--evaluator", "train", "--budget", "3M",
         "--trials", "20", "--epochs", "100", "--threads", "1", "--workers", "2",
         "--data-root", data_root, "--val-size", "16", "--study", "w", "--out", str(out),
         "--heartbeat", "1", "--grace", "2", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True, preexec_fn=_sigint_default)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:  # until both train a trial
            time.sleep(0.5)
            try:
                if _trials(tmp_path, "w").count("RUNNING") == 2:
                    break
            except Exception:  # noqa: BLE001 - the study is not created yet
                pass
        else:  # the loop ran out: say where it stood, not a timeout later
            pytest.fail(f"both workers never trained a trial: {_trials(tmp_path, 'w')} "
                        f"(exit {proc.poll()})")
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:  # which process of the group still runs, and in what
            alive = subprocess.run(["ps", "-o", "pid,ppid,stat,etime,args", "-g", str(proc.pid)],
                                   capture_output=True, text=True).stdout
            pytest.fail(f"no exit 180 s after Ctrl-C; still running:\n{alive}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "RUNNING" not in _trials(tmp_path, "w")  # each worker failed its trial on the way out


# -- the other commands ------------------------------------------------------------------------
def test_train_bounds_and_an_uncreatable_save(capfd):
    from scaling.train.cli import main

    for argv, match in ((["--epochs", "1e308"], "--epochs=1e+308"),
                        (["--threads", "100000"], "<= 1024"),
                        (["--save", "/proc/nonexistent/x.pt"], "cannot be created")):
        assert match in _one_line(capfd, main(["resnet18", *argv]))


@pytest.mark.parametrize("module, argv", [
    ("scaling.search.cli", []), ("scaling.cost.profile", ["resnet18", "--latency"]),
    ("scaling.bench", ["train"])])
def test_threads_beyond_the_bound(module, argv, capfd, tmp_path):
    import importlib

    main = importlib.import_module(module).main
    out = ["--out", str(tmp_path / "out")] if module == "scaling.search.cli" else []
    assert "1024" in _one_line(capfd, main([*argv, *out, "--threads", "100000"]))


def test_train_save_on_a_full_disk_prints_the_result_first(tmp_path, data_root, capfd,
                                                           monkeypatch):
    from scaling.train import cli

    def full(path, spec, model):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(cli, "_save", full)
    spec = Path(__file__).parent / "data" / "ln64.json"
    code = cli.main([str(spec), "--data-root", data_root, "--samples", "16", "--batch-size",
                     "16", "--val-size", "16", "--no-test", "--resolution", "16",
                     "--save", str(tmp_path / "m.pt")])
    out = capfd.readouterr()
    assert code == 2 and "\nstatus ok" in out.out and "Traceback" not in out.err
    assert out.err.strip().endswith("No space left on device") and out.err.count("\n") == 1


def test_check_writable_creates_and_removes_a_probe(tmp_path):
    from scaling.cli import UsageError, check_writable

    check_writable("--out", str(tmp_path / "new" / "x.csv"))
    check_writable("--out", str(tmp_path / "figures"), folder=True)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for path, folder in ((tmp_path / "loop", False), (tmp_path / "loop" / "x", True),
                         ("/proc/nonexistent/x.pt", False)):
        with pytest.raises(UsageError, match="cannot be created"):
            check_writable("--out", str(path), folder=folder)


def test_analysis_out_that_cannot_be_a_folder(tmp_path, capfd):
    from scaling.study.analysis import main

    results = Path(__file__).parent / "data" / "experiments_tiny"
    (tmp_path / "afile").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for out, match in ((tmp_path / "afile", "is a file"), (tmp_path / "loop" / "f", "loop")):
        assert match in _one_line(capfd, main([str(results), "--out", str(out)]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "loop"]


def test_a_full_stdout_is_one_line(monkeypatch, capfd):
    from scaling.zoo.cli import main

    full = open("/dev/full", "w")  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", full)
    try:
        assert "No space left on device" in _one_line(capfd, main(["resnet18"]))
    finally:
        full.close()


def test_fifo_spec_and_grid_top(tmp_path, capfd):
    from scaling.compound.cli import main as compound
    from scaling.cost.profile import main as profile

    os.mkfifo(tmp_path / "net.json")
    assert "FIFO" in _one_line(capfd, profile([str(tmp_path / "net.json")]))
    assert "--top=-5" in _one_line(capfd, compound(["grid", "--phi", "1", "--top", "-5"]))


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path):
    from scaling.files import atomic_write_text

    (tmp_path / "real.json").write_text("old")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    atomic_write_text(tmp_path / "link.json", "new")
    assert (tmp_path / "link.json").is_symlink() and (tmp_path / "real.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]
