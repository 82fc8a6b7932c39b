"""Every command that README.md and results/README.md give runs, as written or at a tiny size, on a
fresh copy of the repository and exits 0 (issue 28).

What counts as a command: each line of a ```bash block (split at ``&&``, comments dropped), each
inline code span that starts with ``python -m scaling.`` or ``python experiments/`` and names no
placeholder (``NAME``, ``[...]``, ``a|b``), and each ```python block (run as a script). A command
that this file does not list in :data:`RUNS` or :data:`NOT_RUN` fails the first test, so a README
edit cannot leave a command untested. Long commands run at a tiny size: :data:`RUNS` says how.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "results/README.md")
PLACEHOLDER = re.compile(r"NAME|\[|\||\.\.\.|^python -m$")
TINY_TRAIN = "--subset 512 --val-size 128 --test-size 128 --threads 1"
TINY_STUDY = "python experiments/run_study.py --preset tiny --out tiny-study --jobs 1"

#: README command -> the command this test runs (the same, or the same at a tiny size)
RUNS: dict[str, str] = {
    "python -m scaling.compound --phi 3": "python -m scaling.compound --phi 3",
    "python -m scaling.train mobilenet_v2_x0_5 --data fashion-mnist --seconds 1080 --threads 1":
        "python -m scaling.train mobilenet_v2_x0_5 --data fashion-mnist --samples 256 "
        f"{TINY_TRAIN}",
    "python -m scaling.search --budget 6M --trials 40 --data fashion-mnist --resolution 28 "
    "--threads 1":
        "python -m scaling.search --budget 6M --trials 2 --data fashion-mnist --resolution 28 "
        "--threads 1 --epochs 0.05 --subset 1024 --val-size 256",
    "python -m scaling.search --budget 6M --trials 40":
        "python -m scaling.search --budget 6M --trials 2 --epochs 0.05 --subset 1024 "
        "--val-size 256 --threads 1 --study inline",
    "python -m scaling.search --budget 3M --trials 20 --evaluator zero-cost --study found "
    "--threads 1":
        "python -m scaling.search --budget 3M --trials 4 --evaluator zero-cost --study found "
        "--threads 1",
    "python -m scaling.profile runs/search/found.best.json":
        "python -m scaling.profile runs/search/found.best.json",
    "python -m scaling.train runs/search/found.best.json --subset 2000 --epochs 1 --save found.pt "
    "--threads 1":
        "python -m scaling.train runs/search/found.best.json --subset 512 --val-size 128 "
        "--test-size 128 --epochs 1 --save found.pt --threads 1",
    "python -m scaling.compound --base runs/search/found.best.json --phi 1":
        "python -m scaling.compound --base runs/search/found.best.json --phi 1",
    "python -m scaling.compound match --base found.best.json --phi 1 --ratio 1.92":
        "python -m scaling.compound match --base runs/search/found.best.json --phi 1 "
        "--ratio 1.92",
    "python -m scaling.compound grid --help": "python -m scaling.compound grid --help",
    "python -m scaling.analysis runs/search --out /tmp/figs":
        "python -m scaling.analysis runs/search --out figs-search",
    "python -m scaling.analysis results --out results/figures":
        "python -m scaling.analysis results --out results/figures",
    "python -m scaling.analysis results --out results/figures/":
        "python -m scaling.analysis results --out results/figures/",
    "python -m scaling.zoo": "python -m scaling.zoo",
    "python -m scaling.train": "python -m scaling.train --help",
    "python -m scaling.profile efficientnet_b0 --trace":
        "python -m scaling.profile efficientnet_b0 --trace",
    "python -m scaling.bench complexity":
        "python -m scaling.bench complexity --models resnet18 mobilenet_v2",
    "python -m scaling.bench deploy --rounds 31 7":
        "python -m scaling.bench deploy --rounds 2 1 --models resnet18 --res 64",
    "python -m scaling.bench train":
        "python -m scaling.bench train --models mobilenet_v2_x0_5 --steps 1 --repeats 1 "
        "--threads 1",
    "python -m scaling.bench gpu":
        "python -m scaling.bench gpu --device cpu --data synthetic --models mobilenet_v2_x0_5 "
        "--subset 256 --epochs 1 --trials 1 --trial-epochs 1 --trial-subset 256",
    "python experiments/run_study.py --preset tiny": TINY_STUDY,
    "python experiments/run_study.py --preset medium": TINY_STUDY,
    "python experiments/run_study.py --preset full": TINY_STUDY,
    "python experiments/run_study.py --preset full --plan-only":
        "python experiments/run_study.py --preset full --plan-only",
    "python experiments/search_baseline.py":
        "python experiments/search_baseline.py --quick --trials 2 --subset 512 --val-size 128 "
        "--epochs 1 --test-size 128 --retrain-seeds 0 --out baseline-out",
    "python experiments/scale_family.py --quick --jobs 2":
        "python experiments/scale_family.py --tiny --jobs 1 --out-dir scale-out",
    "python experiments/scale_family.py":
        "python experiments/scale_family.py --tiny --jobs 1 --out-dir scale-out",
    "python experiments/compare_families.py --quick --jobs 2":
        "python experiments/compare_families.py --tiny --jobs 1 --out-dir compare-out "
        "--scale-csv scale-out/scale_family.csv",
    "python experiments/reproduce_efficientnet.py": "python experiments/reproduce_efficientnet.py",
}

#: README commands this test does not run, and why
NOT_RUN: dict[str, str] = {
    "pip install -e .": "the install: .ci/run runs it on a clean machine",
    'pip install -e ".[test]"': "the install: .ci/run runs it on a clean machine",
    "python -m pytest -q": "the test command itself: .ci/run runs it",
    "pip install torch==2.13.0": "an install from this machine's disk: .ci/run runs it",
    'pip install -e ".[postgres]"': "an install: .ci/run runs it before the PostgreSQL tests",
}
NOT_RUN_PREFIXES = {
    "python -m venv ../venv-compare": "the compare venv downloads torchvision and timm",
    "../venv-compare/": "runs in the compare venv (torchvision and timm)",
}


def readme_commands() -> list[str]:
    """The commands of :data:`DOCS` (see the module docstring); ```python blocks as 'PYTHON:i'."""
    found: list[str] = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for kind, body in re.findall(r"```(bash|python)\n(.*?)```", text, re.S):
            if kind == "python":
                found.append(f"PYTHON:{doc}:{len(found)}")
                continue
            for line in body.splitlines():
                line = line.split(" #")[0].strip()
                if line and not line.startswith("#"):
                    found += [part.strip() for part in line.split("&&")]
        for span in re.findall(r"`([^`\n]+)`", text):
            if (span.startswith(("python -m scaling.", "python experiments/"))
                    and not PLACEHOLDER.search(span)):
                found.append(span.strip())
    return list(dict.fromkeys(found))


def python_blocks() -> list[str]:
    return [body for doc in DOCS
            for kind, body in re.findall(r"```(bash|python)\n(.*?)```", (ROOT / doc).read_text(),
                                         re.S) if kind == "python"]


def test_every_readme_command_is_run_or_said_why_not():
    unknown = [c for c in readme_commands() if not c.startswith("PYTHON:") and c not in RUNS
               and c not in NOT_RUN and not c.startswith(tuple(NOT_RUN_PREFIXES))]
    assert not unknown, f"README commands this test neither runs nor excuses: {unknown}"
    stale = [c for c in RUNS if c not in readme_commands()]
    assert not stale, f"RUNS lists commands the READMEs no longer give: {stale}"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The repository's tracked files (git ls-files; every file where git is absent)."""
    dest = tmp_path_factory.mktemp("fresh") / "repo"
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


def ordered_runs() -> list[str]:
    """The distinct commands to run, in README order (a search before what reads its output)."""
    runs = [RUNS[c] for c in readme_commands() if c in RUNS]
    return list(dict.fromkeys(runs))


@pytest.mark.slow
@pytest.mark.data
def test_readme_commands_exit_0_on_a_fresh_copy(fresh_copy):
    if not Path("/usr/share/datasets/fashion-mnist").is_dir() and not os.environ.get(
            "SCALING_DATA"):
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    env = {**os.environ, "PYTHONPATH": str(fresh_copy), "CUDA_VISIBLE_DEVICES": "",
           "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    failures = []
    for i, body in enumerate(python_blocks()):
        script = fresh_copy / f"readme_block_{i}.py"
        script.write_text(body)
        done = subprocess.run([sys.executable, str(script)], cwd=fresh_copy, env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode:
            failures.append(f"python block {i}: exit {done.returncode}: {done.stderr[-800:]}")
    for command in ordered_runs():
        argv = command.split()
        argv[0] = sys.executable
        done = subprocess.run(argv, cwd=fresh_copy, env=env, capture_output=True, text=True,
                              timeout=600)
        if done.returncode:
            failures.append(f"{command}: exit {done.returncode}: {done.stderr[-800:]}")
    assert not failures, "\n\n".join(failures)
