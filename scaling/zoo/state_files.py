"""State-dict files: read with ``torch.load(..., weights_only=True)`` (a checkpoint holding the
state dict under 'state_dict' or 'model' is unwrapped), written atomically."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from scaling.files import atomic_write

__all__ = ["load_file", "save_file", "unwrap"]


def unwrap(obj: object, where: str) -> dict[str, torch.Tensor]:
    """The state dict in a loaded object: itself, or the one under 'state_dict' or 'model'; a
    ValueError naming ``where`` when it holds none."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"{where} does not hold a state dict (str -> tensor)")
    return dict(obj)


def load_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a file (``torch.load(..., weights_only=True)``; :func:`unwrap`)."""
    obj = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    return unwrap(obj, repr(os.fspath(path)))


def save_file(state_dict: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write ``state_dict`` atomically (:func:`scaling.files.atomic_write`)."""
    state = dict(state_dict)
    atomic_write(path, lambda fh: torch.save(state, fh))
