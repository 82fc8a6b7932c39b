"""Every command that README.md and results/README.md give runs, as written or at a tiny size, on a
fresh copy of the repository and exits 0 (issue 28).

What counts as a command: each line of a ```bash block (split at ``&&``, comments dropped), each
inline code span that starts with ``python -m scaling.`` or ``python experiments/`` and names no
placeholder (``NAME``, ``[...]``, ``a|b``), and each ```python block (run as a script). A command
that this file does not list in :data:`RUNS` or :data:`NOT_RUN` fails the first test, so a README
edit cannot leave a command untested. Long commands run at a tiny size: :data:`RUNS` says how.
``python`` commands run in forks of one interpreter that imported torch and Optuna once
(``tests/forkserver.py``): the same argv, working directory, environment and exit status as a
fresh ``python``, without 3-7 CPU seconds of imports each.
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import copy_of_repository

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "results/README.md")
PLACEHOLDER = re.compile(r"NAME|\[|\||\.\.\.|^python -m$")
TINY_TRAIN = "--subset 256 --val-size 64 --test-size 64 --threads 1"
WORKERS_STUDY = "tests/data/study_workers.yaml"  # a study of 12 runs of a fraction of a second
TINY_SCALE = ("python experiments/scale_family.py --tiny --jobs 1 --out-dir scale-out --phis 1 "
              "--subset 256 --grid-tol 0.05")

#: README command -> the command this test runs (the same, or the same at a tiny size);
#: ``{postgres}`` is $SCALING_TEST_POSTGRES (CI starts a server; without it those commands are not
#: run), ``{run}`` a name new to this run (the database outlives it)
RUNS: dict[str, str] = {
    "python -m scaling.compound --phi 3": "python -m scaling.compound --phi 3",
    "python -m scaling.train mobilenet_v2_x0_5 --data fashion-mnist --seconds 1080 --threads 1":
        "python -m scaling.train mobilenet_v2_x0_5 --data fashion-mnist --samples 64 "
        f"{TINY_TRAIN}",
    "python -m scaling.search --budget 6M --trials 40 --data fashion-mnist --resolution 28 "
    "--threads 1":
        "python -m scaling.search --budget 6M --trials 1 --data fashion-mnist --resolution 28 "
        "--threads 1 --epochs 0.05 --subset 1024 --val-size 256",
    "python -m scaling.search --budget 6M --trials 40":
        "python -m scaling.search --budget 6M --trials 1 --epochs 0.05 --subset 1024 "
        "--val-size 256 --threads 1 --study inline --reevaluate 0",
    "python -m scaling.search --budget 2M --trials 20 --subset 4000 --val-size 2000 --epochs 2 "
    "--batch-size 64 --lr 0.05 --zero-init-last --threads 1":
        "python -m scaling.search --budget 2M --trials 1 --subset 256 --val-size 64 --epochs 1 "
        "--batch-size 64 --lr 0.05 --zero-init-last --threads 1 --reevaluate 0",
    "python -m scaling.search --budget 900k --objective window --enqueue "
    "mobilenet_v2,efficientnet_b0 --pruner sha --subset 4000 --val-size 2000 --epochs 2 "
    "--batch-size 64 --lr 0.05 --zero-init-last --trials 20 --reevaluate 3 --reevaluate-seeds 3 "
    "--threads 1":
        "python -m scaling.search --budget 900k --objective window --enqueue "
        "mobilenet_v2,efficientnet_b0 --pruner sha --subset 256 --val-size 64 --epochs 1 "
        "--batch-size 64 --lr 0.05 --zero-init-last --trials 2 --reevaluate 1 "
        "--reevaluate-seeds 1 --threads 1 --study window",
    "python -m scaling.search --budget 900k --objective window --window 0.95,1.05 --enqueue "
    "mobilenet_v2,efficientnet_b0 --pruner sha --subset 20000 --val-size 2000 --epochs 2 "
    "--batch-size 64 --lr 0.05 --zero-init-last --trials 100 --reevaluate 3 --reevaluate-seeds 3 "
    "--threads 1":
        "python -m scaling.search --budget 900k --objective window --window 0.95,1.05 --enqueue "
        "mobilenet_v2,efficientnet_b0 --pruner sha --subset 256 --val-size 64 --epochs 1 "
        "--batch-size 64 --lr 0.05 --zero-init-last --trials 2 --reevaluate 0 --threads 1 "
        "--study medium",
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
    "python -m scaling.analysis": "python -m scaling.analysis --help",
    "python -m scaling.analysis results --out results/figures":
        "python -m scaling.analysis results --out results/figures",
    "python -m scaling.analysis results --out results/figures/":
        "python -m scaling.analysis results --out results/figures",
    "optuna studies --storage sqlite:///runs/search/STUDY.db":
        "optuna studies --storage sqlite:///runs/search/found.db",
    "python -m scaling.search --storage $STORE --study fm-6M --budget 6M --trials 200 --threads 1":
        "python -m scaling.search --storage {postgres} --study fm-6M-{run} --budget 6M --trials 1 "
        "--threads 1 --evaluator zero-cost",
    "python -m scaling.search --storage $STORE --study fm-6M --budget 6M --trials 200 --threads 1 "
    "--resume":
        "python -m scaling.search --storage {postgres} --study fm-6M-{run} --budget 6M --trials 2 "
        "--threads 1 --evaluator zero-cost --resume",
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
        "--threads 1 --batch-size 32",
    "python -m scaling.study run tiny --storage sqlite:///runs/tiny-workers.db --out runs/tiny-a":
        f"python -m scaling.study run {WORKERS_STUDY} --storage sqlite:///runs/tiny-workers.db "
        "--out runs/tiny-a --device cpu",
    "python -m scaling.study plan full": "python -m scaling.study plan full",
    "python -m scaling.study report results/medium":
        "python -m scaling.study report results/medium",
    "python -m scaling.study --help": "python -m scaling.study --help",
    "python experiments/search_baseline.py":
        "python experiments/search_baseline.py --quick --trials 1 --subset 128 --val-size 64 "
        "--epochs 1 --test-size 128 --retrain-seeds 0 --out baseline-out",
    "python experiments/scale_family.py --quick --jobs 2": TINY_SCALE,
    "python experiments/scale_family.py": TINY_SCALE,
    "python experiments/compare_families.py --quick --jobs 2":
        "python experiments/compare_families.py --tiny --jobs 1 --out-dir compare-out "
        "--scale-csv scale-out/scale_family.csv --families MobileNetV2 --subset 256",
    "python experiments/reproduce_efficientnet.py": "python experiments/reproduce_efficientnet.py",
    "python experiments/study_latency.py":
        "python experiments/study_latency.py --quick --out latency-out",
}

#: a run -> the run whose files it reads (it starts once that one has ended)
NEEDS: dict[str, str] = {
    **{RUNS[c]: RUNS["python -m scaling.search --budget 3M --trials 20 --evaluator zero-cost "
                     "--study found --threads 1"]
       for c in RUNS if "runs/search/found" in RUNS[c] or "runs/search --out" in RUNS[c]},
    RUNS["python -m scaling.search --storage $STORE --study fm-6M --budget 6M --trials 200 "
         "--threads 1 --resume"]:
        RUNS["python -m scaling.search --storage $STORE --study fm-6M --budget 6M --trials 200 "
             "--threads 1"],
    RUNS["python experiments/compare_families.py --quick --jobs 2"]: TINY_SCALE,
}

#: README commands this test does not run, and why
NOT_RUN: dict[str, str] = {
    "pip install -e .": "the install: .ci/run runs it on a clean machine",
    'pip install -e ".[test]"': "the install: .ci/run runs it on a clean machine",
    "python -m pytest -q": "the test command itself: .ci/run runs it",
    'pip install -e ".[postgres]"': "an install: .ci/run runs it before the PostgreSQL tests",
    "pip install optuna-dashboard": "an install from PyPI, not a dependency",
    "python -m scaling.bench gpu": "run in-process at --tiny size on the CPU by "
                                   "tests/test_bench.py::test_gpu_bench_tiny_on_cpu_prints_every_field",
    "optuna-dashboard sqlite:///runs/search/STUDY.db": "a web server that runs until stopped",
    "STORE=postgresql://user:password@dbhost/scaling": "the server's URL: {postgres} here",
    "CUDA_VISIBLE_DEVICES=0 python -m scaling.study run medium --storage $STORE": "the same "
        "CLI on {postgres}: tests/test_study_workers.py runs two and three such workers there",
    "python -m scaling.bench latency": "31 min on this CPU; run at tiny size in-process by "
        "tests/test_latency.py::test_bench_latency_tiny_writes_what_the_package_reads",
    "python -m scaling.bench latency --seed 17": "the same benchmark with another seed",
    "python -m scaling.bench latency --res 28 --batch 32 --seed 13": "the same benchmark, one "
        "case, 4 min",
    "python experiments/look_cost.py": "four medium-protocol runs, about 8 min; what it relies "
        "on (the same run and accuracy whichever points validate) is "
        "tests/test_train_looks.py::test_eval_points_validate_only_there_and_leave_the_run_"
        "alone",
    "python experiments/depthwise_grad.py": "14 models timed in alternating rounds, 5 min; what "
        "it relies on (the same function and gradients) is tests/test_convs.py::test_conv2d_"
        "depthwise_is_the_padded_conv_on_small_and_large_maps",
    "python experiments/rank_fidelity.py --models 12": "40 min on 2 cores; run at tiny size by "
        "tests/test_rank_fidelity.py::test_tiny_rank_fidelity_trains_once_and_reports_tau",
}
TINY_STUDY_TEST = ("tests/test_study.py::test_tiny_study_reproduces_its_csvs_and_resumes_without_"
                   "retraining runs it in a fresh copy of the repository")
for _preset in ("tiny", "medium", "full"):  # medium and full at tiny size: the same run
    NOT_RUN[f"python -m scaling.study run {_preset}"] = TINY_STUDY_TEST
NOT_RUN_PREFIXES = {
    "python -m venv ../venv-compare": "the compare venv downloads torchvision and timm",
    "../venv-compare/": "runs in the compare venv (torchvision and timm)",
}
#: placeholders of the ```python blocks -> what this test puts there
PYTHON_BLOCK_VALUES = {'"STUDY"': '"found"', "STUDY.db": "found.db"}


def readme_commands() -> list[str]:
    """The commands of :data:`DOCS` (see the module docstring); ```python blocks as 'PYTHON:i'."""
    found: list[str] = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for kind, body in re.findall(r"```(bash|python)\n(.*?)```", text, re.S):
            if kind == "python":
                found.append(f"PYTHON:{doc}:{len(found)}")
                continue
            for line in body.replace("\\\n", " ").splitlines():
                line = " ".join(line.split(" #")[0].split())
                if line and not line.startswith("#"):
                    found += [part.strip() for part in line.split("&&")]
        for span in re.findall(r"`([^`\n]+)`", text):
            if (span.startswith(("python -m scaling.", "python experiments/"))
                    and not PLACEHOLDER.search(span)):
                found.append(span.strip())
    return list(dict.fromkeys(found))


def python_blocks() -> list[str]:
    """The ```python blocks, their placeholders filled (:data:`PYTHON_BLOCK_VALUES`)."""
    blocks = [body for doc in DOCS for kind, body in
              re.findall(r"```(bash|python)\n(.*?)```", (ROOT / doc).read_text(), re.S)
              if kind == "python"]
    for old, new in PYTHON_BLOCK_VALUES.items():
        blocks = [b.replace(old, new) for b in blocks]
    return blocks


def test_every_readme_command_is_run_or_said_why_not():
    commands = readme_commands()
    unknown = [c for c in commands if not c.startswith("PYTHON:") and c not in RUNS
               and c not in NOT_RUN and not c.startswith(tuple(NOT_RUN_PREFIXES))]
    assert not unknown, f"README commands this test neither runs nor excuses: {unknown}"
    stale = [c for c in [*RUNS, *NOT_RUN] if c not in commands]
    assert not stale, f"this test lists commands the READMEs no longer give: {stale}"
    assert set(NEEDS) <= set(RUNS.values()) and set(NEEDS.values()) <= set(RUNS.values())


def test_every_excuse_names_a_test_that_exists():
    """An excuse that points at a test ("tests/x.py::name") points at one that is there: a test
    moved to another file must take its excuses along."""
    named = [ref for why in NOT_RUN.values()
             for ref in re.findall(r"(tests/\w+\.py)::(\w+)", why)]
    assert named
    missing = [f"{f}::{name}" for f, name in named
               if not re.search(rf"^def {name}\(", (ROOT / f).read_text(), re.M)]
    assert not missing, f"excuses name tests that are not there: {missing}"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The repository's tracked files, as a fresh clone has them."""
    return copy_of_repository(tmp_path_factory.mktemp("fresh") / "repo")


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> str | None:
    """Run one command; None when it exits 0, else what went wrong."""
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return None if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-800:]}"


class ForkServer:
    """``tests/forkserver.py`` in ``cwd``: runs ``python -m ...`` and ``python SCRIPT ...``
    commands in forks of one interpreter that imported torch and Optuna once."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.logs = cwd.parent / "logs"
        self.logs.mkdir(exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "forkserver.py")],
                                     cwd=cwd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline()) == {"ready": True}

    def run(self, argv: list[str]) -> str | None:
        out, err = (self.logs / f"run-{uuid.uuid4().hex[:8]}.{s}" for s in ("out", "err"))
        self.proc.stdin.write(json.dumps({"argv": argv, "out": str(out), "err": str(err)}) + "\n")
        self.proc.stdin.flush()
        status = json.loads(self.proc.stdout.readline())["status"]
        return None if status == 0 else f"exit {status}: {err.read_text()[-800:]}"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.mark.slow
@pytest.mark.data
def test_readme_commands_exit_0_on_a_fresh_copy(fresh_copy):
    """Every run of :data:`RUNS` (then the ```python blocks) in the fresh copy, two at a time
    on this 2-core machine, each after the run whose files it reads (:data:`NEEDS`)."""
    if not Path("/usr/share/datasets/fashion-mnist").is_dir() and not os.environ.get(
            "SCALING_DATA"):
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    env = {**os.environ, "PYTHONPATH": str(fresh_copy), "CUDA_VISIBLE_DEVICES": "",
           "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    postgres = os.environ.get("SCALING_TEST_POSTGRES")
    runs = [RUNS[c] for c in readme_commands() if c in RUNS]
    runs = [r for r in dict.fromkeys(runs) if postgres or "{postgres}" not in r]
    futures: dict[str, Future] = {}
    run_id = uuid.uuid4().hex[:8]

    servers: queue.Queue[ForkServer] = queue.Queue()

    def run(command: str) -> str | None:
        if command in NEEDS and futures[NEEDS[command]].result() is not None:
            return f"not run: {NEEDS[command]!r} failed"
        argv = command.replace("{postgres}", postgres or "").replace("{run}", run_id).split()
        if argv[0] != "python":
            return _run(argv, fresh_copy, env)
        server = servers.get()
        try:
            return server.run(argv[1:])
        finally:
            servers.put(server)

    lanes = [ForkServer(fresh_copy, env) for _ in range(2)]  # two at a time on 2 cores
    for server in lanes:
        servers.put(server)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:  # prerequisites are submitted first
            for command in runs:
                futures[command] = pool.submit(run, command)
            failures = [f"{c}: {f.result()}" for c, f in futures.items() if f.result()]
    finally:
        for server in lanes:
            server.close()
    for i, body in enumerate(python_blocks()):  # the last reads the found search's study
        script = fresh_copy / f"readme_block_{i}.py"
        script.write_text(body)
        error = _run([sys.executable, str(script)], fresh_copy, env)
        if error:
            failures.append(f"python block {i}: {error}")
    assert not failures, "\n\n".join(failures)
