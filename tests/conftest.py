"""Suite-wide settings, and a fresh copy of the repository for tests that run its commands."""

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def copy_of_repository(dest: Path) -> Path:
    """The repository's tracked files (``git ls-files``; every file where git is absent) copied
    to ``dest``: what a fresh clone holds, without the ignored runs and caches of this checkout."""
    try:
        files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                               check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".git", "__pycache__"))
        return dest
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Run the suite on one torch thread: the tests use tiny nets, where extra threads only add
    overhead, and on a shared 2-core machine two threads ran a small net up to 100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def pytest_collection_modifyitems(items):
    """Tests marked ``slow`` first (a stable sort): with two test processes (pytest-xdist) the
    long ones then run beside the many short ones instead of after them, so the suite's wall
    time is near half its CPU time rather than its tail."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
