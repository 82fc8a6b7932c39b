"""Provenance records and atomic writes for everything that lands in ``results/``.

Every result file is written by a committed script; its provenance (command, git commit, seeds,
device, library versions, date, wall time) goes beside it as ``<name>.provenance.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and os.replace."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` atomically, with the usual mode of a new file (0666 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The HEAD commit, with ``+dirty`` when tracked files differ from it; 'unknown' outside git."""
    cwd = cwd or Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def device_description(device: str | None = None) -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return f"cpu ({platform.processor() or platform.machine()})"
    if (device or "").startswith("cuda") or (device in (None, "auto")
                                             and torch.cuda.is_available()):
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _command_line(argv: list[str]) -> str:
    """The command as a user would retype it from the repository root."""
    if not argv:
        return ""
    root = Path(__file__).resolve().parent.parent
    script = Path(argv[0]).resolve()
    try:
        rel = script.relative_to(root)
    except ValueError:
        return "python " + shlex.join(argv)
    if rel.parts[0] == "scaling":  # run as python -m scaling.x
        module = ".".join(rel.with_suffix("").parts)
        module = module.removesuffix(".__main__")
        return "python -m " + shlex.join([module, *argv[1:]])
    return "python " + shlex.join([str(rel), *argv[1:]])


class Provenance:
    """Collects a run's provenance; ``record()`` returns the dict written beside results.

    >>> prov = Provenance(seeds=[0, 1, 2], device="cpu")
    >>> ...  # run the experiment
    >>> prov.write("results/study/compare.csv")  # -> results/study/compare.provenance.json
    """

    def __init__(self, seeds: Iterable[int] = (), device: str | None = None,
                 argv: list[str] | None = None, **extra: Any) -> None:
        self.argv = list(sys.argv if argv is None else argv)
        self.seeds = list(seeds)
        self.device = device
        self.extra = extra
        self.started = time.time()
        self.commit = git_commit()  # at the start: the code that ran, not what landed meanwhile
        self.date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def record(self, **more: Any) -> dict[str, Any]:
        try:
            import torch

            torch_version = torch.__version__
        except ImportError:  # pragma: no cover
            torch_version = None
        return {
            "command": _command_line(self.argv),
            "git_commit": self.commit,
            "seeds": self.seeds,
            "device": device_description(self.device),
            "torch": torch_version,
            "python": platform.python_version(),
            "date": self.date,
            "wall_time_s": round(time.time() - self.started, 2),
            **self.extra,
            **more,
        }

    def write(self, result_path: str | os.PathLike, **more: Any) -> Path:
        """Write ``<result stem>.provenance.json`` beside ``result_path``."""
        result_path = Path(result_path)
        target = result_path.with_name(result_path.stem + ".provenance.json")
        record = self.record(**more)
        record["result"] = result_path.name
        return atomic_write_json(target, record)
