"""Checkpoints of the package's own training: ``python -m scaling.train --save run.pt`` writes
``{'spec': NetworkSpec.to_dict(), 'state_dict': ...}`` (:mod:`scaling.train.cli`).

timm's convention, ``create_model(name, checkpoint_path=...)``, loads a checkpoint in the model's
own layout strictly after the model is built; here ``create_model('run.pt')`` also works, because
the checkpoint stores its spec. Files are read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from scaling.ir import NetworkSpec


def _read(path: str | os.PathLike) -> Any:
    import pickle

    import torch

    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ValueError(f"checkpoint {name!r}: no such file")
    try:
        return torch.load(name, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        message = " ".join(str(exc).split())[:200]
        raise ValueError(f"checkpoint {name!r} is not a torch checkpoint: {message}") from None


def checkpoint_spec(path: str | os.PathLike) -> NetworkSpec:
    """The spec a ``train --save`` checkpoint stores; ValueError naming the file if it has
    none (a bare state dict: pass its spec or zoo name with ``checkpoint_path=``)."""
    obj = _read(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("spec"), Mapping):
        raise ValueError(f"checkpoint {os.fspath(path)!r} stores no 'spec' (only what "
                         "'python -m scaling.train --save' writes does); build the model from its "
                         "spec or name with create_model(..., checkpoint_path=PATH)")
    try:
        return NetworkSpec.from_dict(dict(obj["spec"]))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"checkpoint {os.fspath(path)!r}: {exc}") from None


def load_checkpoint_state(path: str | os.PathLike) -> Mapping[str, Any]:
    """The state dict of a checkpoint file (bare, or under ``'state_dict'`` / ``'model'``)."""
    from scaling.zoo.state_files import unwrap

    name = os.fspath(path)
    return unwrap(_read(name), f"checkpoint {name!r}")


def load_checkpoint(model: Any, path: str | os.PathLike) -> Any:
    """Load a checkpoint in ``model``'s own layout into it, strictly (timm's
    ``load_checkpoint``): a state dict, or one under ``'state_dict'`` / ``'model'``; a key or
    shape that differs is a ValueError naming the file and the first differences."""
    name = os.fspath(path)
    state = load_checkpoint_state(name)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and state[k].shape != v.shape]
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", extra),
                                     ("shape", shapes)) if keys]
        raise ValueError(f"checkpoint {name!r} does not fit the model ({'; '.join(parts)}); "
                         "a checkpoint of another architecture or class count: build the model "
                         "of its spec (create_model(PATH)), or load other layouts with "
                         "pretrained=PATH")
    model.load_state_dict(dict(state))
    return model
