"""Every command with bad input (issue 14): exit code 2, exactly one line on stderr, no
traceback, no hang. Commands run in-process through ``main(argv)``; a per-case alarm turns a
hang into a failure (a guard, not a timing assertion)."""

from __future__ import annotations

import atexit
import importlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

HANG_S = 20
MAINS = {"train": "scaling.train.cli", "search": "scaling.search.cli",
         "compound": "scaling.compound.cli", "zoo": "scaling.zoo.cli",
         "profile": "scaling.cost.profile", "analysis": "scaling.study.analysis",
         "bench": "scaling.bench"}


class Hang(BaseException):
    """Raised by the alarm: not caught by any command's error handling."""


def _spec_files(root: Path) -> dict[str, Path]:
    """Hostile spec files, by name."""
    good = {"stages": [{"block": "mbconv", "repeats": 1, "out_channels": 16}],
            "resolution": 32, "num_classes": 10}

    def spec(**stage) -> str:
        return json.dumps({**good, "stages": [{**good["stages"][0], **stage}]})

    texts = {
        "python_tag.yaml": "!!python/object/apply:os.system ['echo pwned']\n",
        "python_name.yaml": "stages: !!python/name:os.system\n",
        "bad_syntax.yaml": "stages: [\n  - {block: mbconv\n",
        "deep.json": "[" * 200_000 + "]" * 200_000,
        "deep.yaml": "[" * 5_000 + "]" * 5_000,
        "huge_repeats.json": spec(repeats=2 ** 63),
        "huge_repeats.yaml": f"stages:\n- block: mbconv\n  repeats: {10 ** 14}\n"
                             "  out_channels: 16\n",
        "huge_expansion.json": spec(expansion=1e300),
        "huge_channels.json": spec(out_channels=10 ** 12),
        "inf_expansion.json": spec(expansion=1e400),  # json reads 1e400 as inf
        "nan_expansion.json": spec(expansion=float("nan")),
        "huge_resolution.json": json.dumps({**good, "resolution": 10 ** 9}),
        "empty.json": "",
        "empty.yaml": "",
        "scalar.yaml": "42\n",
        "list.json": "[1, 2]",
        "unknown_key.json": json.dumps({**good, "bogus": 1}),
        "int_keys.yaml": "1: 2\nstages: []\n",
        "norm_list.json": json.dumps({**good, "norm": {"type": ["BN"]}}),
        "wrong_type.json": json.dumps({**good, "stem": {"channels": "abc"}}),
        "dup.json": spec(kernel=3)[:-2] + ', "repeats": 1}]}',
    }
    out = {}
    for name, text in texts.items():
        out[name] = root / name
        out[name].write_text(text, encoding="utf-8")
    out["binary.json"] = root / "binary.json"
    out["binary.json"].write_bytes(b"\xff\xfe\x00garbage\x80")
    out["folder.json"] = root / "folder.json"
    out["folder.json"].mkdir()
    out["missing.json"] = root / "missing.json"
    return out


ROOT = Path(tempfile.mkdtemp(prefix="scaling-bad-input-"))  # the cases are built at collection
atexit.register(shutil.rmtree, ROOT, ignore_errors=True)
FILES = _spec_files(ROOT)
A_FILE = FILES["empty.json"]
UNWRITABLE = [str(A_FILE / "x" / "out.json"), "/proc/version/x.json", str(ROOT)]

SPEC_CASES = [(cmd, [*prefix, str(path)])
              for name, path in sorted(FILES.items())
              for cmd, prefix in (("compound", ["--phi", "1", "--base"]), ("profile", []),
                                  ("train", ["--data", "mnist"]))
              if not (cmd == "train" and name.startswith(("deep", "huge_resolution")))] + \
    [("train", ["--data", "mnist", str(FILES[n])]) for n in ("deep.json",)]

ARG_CASES = [
    # compound
    ("compound", ["--phi", "nan"]), ("compound", ["--phi", "1e400"]),
    ("compound", ["--phi", "-1"]), ("compound", ["--phi", "1e6"]),
    ("compound", ["--phi", "1", "--alpha", "inf"]), ("compound", ["--phi", "1", "--divisor", "0"]),
    ("compound", ["--phi", "1", "--base", "no_such_model"]),
    ("compound", ["--phi", "1", "--out", UNWRITABLE[0]]),
    ("compound", ["--phi", "1", "--out", UNWRITABLE[1]]),
    ("compound", ["--phi", "0:1e9:1e-9"]), ("compound", ["grid", "--phi", "nan"]),
    ("compound", ["grid", "--bogus"]),
    ("compound", ["grid", "--phi", "1", "--evaluate", "proxy", "--out", UNWRITABLE[0]]),
    ("compound", ["grid", "--phi", "1", "--out", UNWRITABLE[2]]),
    # profile
    ("profile", ["resnet18", "--res", "0"]), ("profile", ["resnet18", "--res", "-5"]),
    ("profile", ["resnet18", "--res", "1000000"]), ("profile", ["no_such_model"]),
    ("profile", ["resnet18", "--latency", "--batch", "0"]),
    ("profile", ["resnet18", "--latency", "--batch", "100000000"]),
    ("profile", ["resnet18", "--latency", "--threads", "-1"]),
    ("profile", ["resnet18", "--latency", "--repeats", "0"]),
    ("profile", ["resnet18", "--latency", "--device", "bogus"]),
    # zoo
    ("zoo", ["no_such_model"]), ("zoo", ["--family", "bogus"]),
    # train
    ("train", ["resnet18", "--epochs", "inf"]), ("train", ["resnet18", "--epochs", "nan"]),
    ("train", ["resnet18", "--epochs", "-1"]), ("train", ["resnet18", "--seconds", "nan"]),
    ("train", ["resnet18", "--samples", "-3"]), ("train", ["resnet18", "--lr", "inf"]),
    ("train", ["resnet18", "--subset", "-1"]), ("train", ["resnet18", "--val-size", "-1"]),
    ("train", ["resnet18", "--test-size", "-1"]), ("train", ["resnet18", "--resolution", "0"]),
    ("train", ["resnet18", "--resolution", "100000"]),
    ("train", ["resnet18", "--batch-size", "0"]),
    ("train", ["resnet18", "--batch-size", "1000000000"]),
    ("train", ["resnet18", "--seed", "-1"]), ("train", ["resnet18", "--data", "bogus"]),
    ("train", ["resnet18", "--device", "bogus"]), ("train", ["no_such_model"]),
    ("train", ["resnet18", "--save", UNWRITABLE[0]]),
    ("train", ["resnet18", "--save", UNWRITABLE[1]]),
    ("train", ["resnet18", "--save", UNWRITABLE[2]]),
    ("compound", ["--phi", "1", "--out", UNWRITABLE[2]]),
    ("train", ["resnet18", "--data-root", "/nonexistent/folder"]),
    # search
    ("search", ["--budget", "1e400"]), ("search", ["--budget", "nan"]),
    ("search", ["--budget", "-5M"]), ("search", ["--budget", "0"]),
    ("search", ["--seed", "-1"]), ("search", ["--timeout", "nan"]),
    ("search", ["--timeout", "-1"]), ("search", ["--epochs", "nan"]),
    ("search", ["--epochs", "inf"]), ("search", ["--trial-seconds", "nan"]),
    ("search", ["--subset", "-1"]), ("search", ["--in-channels", "0"]),
    ("search", ["--resolution", "0"]), ("search", ["--resolution", "100000"]),
    ("search", ["--trials", "0"]), ("search", ["--workers", "0"]), ("search", ["--lr", "nan"]),
    ("search", ["--reward-w", "inf"]), ("search", ["--val-size", "-1"]),
    ("search", ["--max-retry", "-1"]), ("search", ["--hybrid-samples", "0"]),
    ("search", ["--startup-trials", "-1"]), ("search", ["--objective", "bogus"]),
    ("search", ["--data", "bogus"]), ("search", ["--budget", "10Q"]),
    ("search", ["--trials", "1e3"]), ("search", ["--seed", str(2 ** 40)]),
    ("search", ["--space", str(FILES["python_tag.yaml"])]),
    ("search", ["--space", str(FILES["deep.json"])]),
    ("search", ["--space", str(FILES["binary.json"])]),
    ("search", ["--space", str(FILES["missing.json"])]),
    ("search", ["--out", UNWRITABLE[1]]),
    # analysis
    ("analysis", [str(FILES["missing.json"])]), ("analysis", [str(FILES["empty.json"])]),
    # bench
    ("bench", ["complexity", "--res", "0"]), ("bench", ["complexity", "--res", "-1"]),
    ("bench", ["complexity", "--res", "abc"]), ("bench", ["complexity", "--res", "100000"]),
    ("bench", ["complexity", "--repeats", "0"]),
    ("bench", ["complexity", "--models", "no_such_model"]),
    ("bench", ["train", "--threads", "-1"]), ("bench", ["train", "--threads", "0"]),
    ("bench", ["train", "--batch-size", "0"]), ("bench", ["train", "--steps", "0"]),
    ("bench", ["train", "--repeats", "0"]), ("bench", ["train", "--models", "no_such_model"]),
    ("bench", ["bogus"]),
]
CASES = SPEC_CASES + ARG_CASES


def _case_id(arg: str) -> str:
    """A test id that is the same in every process (pytest-xdist compares them): no temp name."""
    arg = arg.replace(str(ROOT), "tmp")
    return Path(arg).name if "/" in arg else arg


def _alarm(signum, frame):
    raise Hang(f"no exit within {HANG_S} s")


@pytest.mark.parametrize(("cmd", "argv"), CASES,
                         ids=[f"{i}-{c}-{_case_id(a[-1])}" for i, (c, a) in enumerate(CASES)])
def test_bad_input_is_one_line_and_exit_2(cmd, argv, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_DATA", str(tmp_path / "no-data"))
    if cmd == "search" and "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "search")]
    main = importlib.import_module(MAINS[cmd]).main
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(HANG_S)
    try:
        code = main(argv)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("python -m scaling."), err
    assert not any(p.name.startswith("tmp") for p in tmp_path.rglob("*"))


def test_the_case_count_covers_every_command():
    assert {c for c, _ in CASES} == set(MAINS)
    assert len(CASES) >= 150


def test_sigkill_while_saving_leaves_only_a_hidden_temp_file_that_a_later_write_removes(tmp_path):
    import subprocess
    import sys
    import time

    from scaling.files import STALE_SECONDS, atomic_write_text

    target = tmp_path / "model.pt"
    code = ("import sys, time\nfrom scaling.files import atomic_write\n"
            "def slow(fh):\n    fh.write(b'x' * 1000); fh.flush(); print('writing', flush=True);"
            " time.sleep(60)\n"
            f"atomic_write({str(target)!r}, slow)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.kill()
        proc.wait()
    left = list(tmp_path.iterdir())
    assert len(left) == 1 and left[0].name.startswith(".model.pt.") and not target.exists()
    old = time.time() - STALE_SECONDS - 1
    os.utime(left[0], (old, old))
    atomic_write_text(target, "done")
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
