"""Provenance records and atomic writes."""

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest

from scaling.study.provenance import (
    ROOT,
    Provenance,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    repo_relative,
)


def test_atomic_write_leaves_no_temp_and_a_readable_file(tmp_path):
    target = atomic_write_text(tmp_path / "sub" / "a.txt", "hello")
    assert target.read_text() == "hello"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]
    assert target.stat().st_mode & stat.S_IRGRP  # not mkstemp's private 0600


def test_provenance_record_beside_result(tmp_path):
    prov = Provenance(seeds=[3, 4], device="cpu", argv=["experiments/x.py", "--quick"], budget="6M")
    result = tmp_path / "x.csv"
    atomic_write_json(result.with_suffix(".json"), {"a": 1})
    path = prov.write(result, rows=2)
    record = json.loads(path.read_text())
    assert path.name == "x.provenance.json"
    assert record["command"] == "python experiments/x.py --quick"
    assert record["seeds"] == [3, 4] and record["budget"] == "6M" and record["rows"] == 2
    assert record["result"] == "x.csv" and record["device"].startswith("cpu")
    assert len(record["git_commit"].split("+")[0]) in (40, 7) or record["git_commit"] == "unknown"
    for key in ("torch", "python", "date", "wall_time_s"):
        assert key in record


# The check, written so that this file does not match it itself.
ABSOLUTE = re.compile(r"/(work|farm|root|tmp)/|/home/[a-z]+/")


def test_repo_relative_inside_beside_and_outside_the_repository(tmp_path):
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    assert repo_relative(root / "results" / "a.csv", root=root) == "results/a.csv"
    assert repo_relative(tmp_path / "shared" / "ref.csv", root=root) == "../shared/ref.csv"
    assert repo_relative("/etc/hosts", root=root) == "hosts"
    url = f"sqlite:///{root}/results/s.db"
    assert repo_relative(url, root=root) == "sqlite:///results/s.db"
    assert repo_relative("postgresql://u@h/db", root=root) == "postgresql://u@h/db"
    assert repo_relative(ROOT / "results" / "x.json") == "results/x.json"
    with pytest.raises(TypeError, match="path"):
        repo_relative(3)


def test_provenance_records_no_absolute_path():
    prov = Provenance(argv=[str(ROOT / "experiments" / "x.py"), f"--out={ROOT / 'results'}",
                            str(ROOT / "results" / "a.csv")],
                      reference=ROOT / "tests" / "data" / "reference.csv",
                      nested={"storage": f"sqlite:///{ROOT}/results/search/b.db"})
    record = prov.record(paths=[str(ROOT / "results")])
    assert record["command"] == "python experiments/x.py --out=results results/a.csv"
    assert record["reference"] == "tests/data/reference.csv"
    assert record["nested"]["storage"] == "sqlite:///results/search/b.db"
    assert record["paths"] == ["results"]
    assert str(ROOT) not in json.dumps(record)


def test_provenance_records_no_password_of_a_storage_url():
    prov = Provenance(argv=[str(ROOT / "scaling" / "study" / "__main__.py"), "run", "medium",
                            "--storage", "postgresql://alice:s3cret@db:5432/scaling",
                            "--storage=postgresql+psycopg://bob:pw@db/x", "sqlite:///a.db"])
    command = prov.record()["command"]
    assert "s3cret" not in command and "pw@" not in command
    assert command == ("python -m scaling.study run medium --storage "
                       "postgresql://alice:PASSWORD@db:5432/scaling "
                       "--storage=postgresql+psycopg://bob:PASSWORD@db/x sqlite:///a.db")


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_bytes(tmp_path / "m.bin", b"\x00\x01")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_bytes() == b"\x00\x01"


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = atomic_write_text(tmp_path / "t.txt", "old")

    def broken(fh):
        fh.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.txt"]
    with pytest.raises(TypeError, match="text"):
        atomic_write_text(target, b"bytes")


def _committed_results() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z", "results"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout
        files = [ROOT / f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in (ROOT / "results").rglob("*") if p.is_file()]
    return [p for p in files if p.suffix in {".json", ".csv", ".md", ".txt", ".yaml"}]


def test_no_committed_result_names_a_machine_path():
    files = _committed_results()
    if not files:
        pytest.skip("no results/ in this checkout")
    offenders = [f"{p.relative_to(ROOT)}:{i}: {line.strip()[:80]}"
                 for p in files if p.is_file()
                 for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
                 if ABSOLUTE.search(line) or str(ROOT) in line]
    assert not offenders, "absolute paths in committed results:\n" + "\n".join(offenders)


def test_declared_commit_for_a_tree_without_git(monkeypatch):
    from scaling.study.provenance import COMMIT_ENV, git_commit

    monkeypatch.setenv(COMMIT_ENV, "abc123")
    assert git_commit() == "abc123 (declared)"
    monkeypatch.delenv(COMMIT_ENV)
    assert git_commit() != "abc123 (declared)"


def test_git_commit_is_dirty_for_changed_code_not_for_changed_results(tmp_path, monkeypatch):
    """A study that deletes its committed outputs to start over ran committed code."""
    from scaling.study.provenance import COMMIT_ENV, git_commit

    monkeypatch.delenv(COMMIT_ENV, raising=False)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.csv").write_text("a\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "m"], cwd=tmp_path, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()
    (tmp_path / "results" / "runs.csv").unlink()
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"
