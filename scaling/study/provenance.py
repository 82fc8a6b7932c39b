"""Provenance records and atomic writes for everything that lands in ``results/``.

Every result file is written by a committed script; its provenance (command, git commit, seeds,
device, library versions, date, wall time) goes beside it as ``<name>.provenance.json``.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scaling.files import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text

__all__ = ["ROOT", "Provenance", "atomic_write", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "device_description", "git_commit", "repo_relative"]


ROOT = Path(__file__).resolve().parents[2]
_SQLITE = "sqlite:///"


def repo_relative(path: str | os.PathLike, root: str | os.PathLike | None = None) -> str:
    """``path`` as recorded in a committed file: never an absolute path of this machine.

    The rule (``root`` defaults to the repository, relative inputs are taken from the current
    folder, symlinks resolved):

    - inside ``root``: the POSIX path relative to it (``results/search/baseline.db``);
    - inside ``root``'s parent folder: relative to ``root`` through ``..``
      (``../shared/reference.csv`` for a folder beside the checkout);
    - anywhere else: the file name alone (``reference.csv``), which names the input without
      saying where it lived.

    An Optuna SQLite URL keeps its scheme: ``sqlite:////abs/repo/r.db`` -> ``sqlite:///r.db``
    (SQLite reads three slashes and a relative path from the current folder, i.e. run from the
    repository root). Other URLs (``postgresql://...``) are returned unchanged.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"repo_relative: path must be a str or path, got {type(path).__name__}")
    text = os.fspath(path)
    if text.startswith(_SQLITE):
        return _SQLITE + repo_relative(text[len(_SQLITE):], root)
    if "://" in text:
        return text
    if text == "":
        raise ValueError("repo_relative: path is empty")
    base = Path(root).resolve() if root is not None else ROOT
    target = Path(text).expanduser().resolve()
    if target.is_relative_to(base):
        return target.relative_to(base).as_posix() or "."
    if base.parent != base and target.is_relative_to(base.parent):
        return (Path("..") / target.relative_to(base.parent)).as_posix()
    return target.name


def _looks_like_path(value: str) -> bool:
    return value.startswith(_SQLITE) or (os.path.isabs(value) and "\n" not in value)


def _relative_values(value: Any) -> Any:
    """Every path in a record (Path objects, absolute path strings, SQLite URLs), made relative."""
    if isinstance(value, os.PathLike):
        return repo_relative(value)
    if isinstance(value, str):
        return repo_relative(value) if _looks_like_path(value) else value
    if isinstance(value, dict):
        return {k: _relative_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_relative_values(v) for v in value]
    return value


COMMIT_ENV = "SCALING_GIT_COMMIT"


def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The HEAD commit, with ``+dirty`` when tracked files outside ``results/`` differ from it;
    'unknown' outside git. A study that starts over (``--fresh``) deletes its own committed
    outputs first: that changes no code, so it leaves the commit clean.

    ``$SCALING_GIT_COMMIT`` names it for a copy of the tree without ``.git`` (a lent GPU machine
    receives the working tree only); it is recorded as given, with ``(declared)`` after it.
    """
    declared = os.environ.get(COMMIT_ENV)
    if declared:
        return f"{declared} (declared)"
    cwd = cwd or ROOT
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"], cwd=cwd,
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


def _argument(arg: str) -> str:
    """A command-line argument with any absolute path in it (``/x``, ``--out=/x``) made relative,
    and a URL's password (``--storage postgresql://user:secret@host/db``) written ``PASSWORD``."""
    arg = re.sub(r"(://[^/:@\s]+:)[^@/\s]+@", r"\1PASSWORD@", arg)
    key, sep, value = arg.partition("=")
    if sep and key.startswith("-") and _looks_like_path(value):
        return f"{key}={repo_relative(value)}"
    return repo_relative(arg) if _looks_like_path(arg) else arg


def _command_line(argv: list[str]) -> str:
    """The command as a user would retype it from the repository root, without absolute paths."""
    if not argv:
        return ""
    args = [_argument(a) for a in argv[1:]]
    script = Path(argv[0]).resolve()
    if not script.is_relative_to(ROOT):
        return "python " + shlex.join([repo_relative(argv[0]), *args])
    rel = script.relative_to(ROOT)
    if rel.parts[0] == "scaling":  # run as python -m scaling.x
        module = ".".join(rel.with_suffix("").parts)
        module = module.removesuffix(".__main__")
        return "python -m " + shlex.join([module, *args])
    return "python " + shlex.join([rel.as_posix(), *args])


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
            **_relative_values(self.extra),
            **_relative_values(more),
        }

    def write(self, result_path: str | os.PathLike, **more: Any) -> Path:
        """Write ``<result stem>.provenance.json`` beside ``result_path``."""
        result_path = Path(result_path)
        target = result_path.with_name(result_path.stem + ".provenance.json")
        record = self.record(**more)
        record["result"] = result_path.name
        return atomic_write_json(target, record)
