"""The one atomic file writer of the package (no torch, no pandas: any layer may import it).

A reader never sees a half-written file: the data goes to a temporary file in the target's
folder (same file system, so the rename is atomic), is flushed and fsync'ed, gets the mode of
an ordinary new file (0o666 less the umask, not ``mkstemp``'s private 0o600) and replaces the
target with :func:`os.replace`. On any failure the temporary file is removed and the target is
left as it was. A symlink is written through: its target is replaced, the link kept. The
temporary file is hidden (``.NAME.XXXXXXXX.tmp``); one that a killed writer
(SIGKILL) left behind is removed by the next write of the same target once it is
:data:`STALE_SECONDS` old (a younger one may belong to a concurrent writer).
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: age after which a leftover temporary file of a target is removed (a writer died)
STALE_SECONDS = 3600.0


def _remove_stale(path: Path) -> None:
    """Remove ``path``'s leftover temporary files older than :data:`STALE_SECONDS`."""
    cutoff = time.time() - STALE_SECONDS
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
        except OSError:
            pass  # removed by another writer, or not ours to remove


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fh)`` on a binary temp file beside ``path``, then move it onto ``path``.

    ``write`` may be any writer taking a file object, e.g. ``lambda fh: torch.save(obj, fh)``.
    Missing parent folders are created. Returns ``path`` as a :class:`~pathlib.Path`.
    """
    if not callable(write):
        raise TypeError(f"atomic_write: write must be a callable taking a file, got {write!r}")
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise ValueError(f"atomic_write: path {os.fspath(path)!r} does not name a file")
    if path.is_symlink():  # write the link's target and keep the link
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write_bytes: data must be bytes, got {type(data).__name__}")
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    if not isinstance(text, str):
        raise TypeError(f"atomic_write_text: text must be a str, got {type(text).__name__}")
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON (non-JSON values through ``str``) atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
