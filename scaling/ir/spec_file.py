"""Spec files: a spec, or any file the package writes that holds one.

:func:`load_spec` takes what the package's commands write, so that a found net is one step from
a model, a profile or a scaled family:

- a spec (``NetworkSpec.to_json`` / ``to_yaml``; ``compound --out``);
- a search's ``<study>.best.json``: a list of trial records, each with the trial's ``number`` and
  ``spec``. One record (the reward objective's best trial) is taken as it is; a Pareto front of
  several records needs a choice, ``found.best.json#N`` for trial ``N`` (the number the search
  prints as ``# trial N``), because no record of a front is "the" best;
- a search's ``--json`` report (its ``best`` list: as above);
- one trial record, or any mapping with a ``spec`` (``scaling.study.runner``'s
  ``search/baseline.json``, ``experiments/search_baseline.py``'s report).

Checkpoints (``train --save``: ``{'spec', 'state_dict'}``) need torch and are read by
:func:`scaling.zoo.create_model`. Every error names the file.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from scaling.ir.spec import NetworkSpec, _unique_key_loader, _unique_keys

_PICK = re.compile(r"^(?P<path>.+)#(?P<trial>\d+)$")
SPEC_SUFFIXES = (".json", ".yaml", ".yml")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_checkpoint_path(name: str) -> bool:
    """Whether ``name`` names a checkpoint file (``train --save``), by its suffix."""
    return name.endswith(CHECKPOINT_SUFFIXES)


def is_spec_path(name: str) -> bool:
    """Whether ``name`` names a spec file (``found.best.json#3`` included) or a checkpoint
    rather than a zoo model: by its suffix, a path separator, or an existing file."""
    file = parse_spec_path(name)[0]
    return (file.endswith(SPEC_SUFFIXES) or is_checkpoint_path(file) or os.sep in name
            or os.path.isfile(name))


def parse_spec_path(path: str | os.PathLike) -> tuple[str, int | None]:
    """``'found.best.json#3'`` -> ``('found.best.json', 3)``; a path without ``#N`` (or an
    existing file whose name has one) -> ``(path, None)``."""
    path = os.fspath(path)
    match = _PICK.match(path)
    if match is None or os.path.exists(path):
        return path, None
    return match["path"], int(match["trial"])


def _describe(record: dict[str, Any]) -> str:
    """``'trial 4: 1.23M MACs, values (0.81, 1.2e+06)'`` for a choice list."""
    parts = [f"trial {record.get('number', '?')}"]
    if isinstance(record.get("macs"), (int, float)):
        parts.append(f": {record['macs'] / 1e6:.3g}M MACs")
    values = record.get("values")
    if isinstance(values, list) and values:
        parts.append(", values (" + ", ".join(
            f"{v:.4g}" if isinstance(v, (int, float)) else str(v) for v in values) + ")")
    return "".join(parts)


def _pick_record(records: list[Any], trial: int | None, where: str,
                 file: str | None) -> dict[str, Any]:
    """The record of trial ``trial`` (None: the only one) among a search's best records."""
    records = [r for r in records if isinstance(r, dict) and isinstance(r.get("spec"), dict)]
    if not records:
        raise ValueError(f"{where} holds no trial record with a 'spec' (a search that found no "
                         "feasible trial writes an empty list)")
    if trial is not None:
        for record in records:
            if record.get("number") == trial:
                return record
        raise ValueError(f"{where} has no trial {trial}; it holds "
                         + "; ".join(_describe(r) for r in records))
    if len(records) == 1:
        return records[0]
    pick = f"'{file}#N'" if file else "'FILE#N'"
    raise ValueError(f"{where} holds {len(records)} trials (a Pareto front); choose one as "
                     f"{pick}, N one of: " + "; ".join(_describe(r) for r in records))


def spec_from_document(data: Any, where: str = "spec", trial: int | None = None,
                       file: str | None = None) -> NetworkSpec:
    """The spec held by parsed JSON/YAML ``data``: a spec mapping, a list of trial records, a
    search report (``best``) or a mapping with a ``spec``; ``trial`` picks a record by its
    number; ``where`` names the source in errors, ``file`` its path."""
    if isinstance(data, dict) and "stages" not in data:
        if isinstance(data.get("best"), list):
            data = data["best"]
        elif isinstance(data.get("spec"), dict):
            if trial is not None and data.get("number") not in (None, trial):
                raise ValueError(f"{where} holds trial {data.get('number')}, not trial {trial}")
            data = data["spec"]
    if isinstance(data, list):
        data = _pick_record(data, trial, where, file)["spec"]
    elif trial is not None:
        raise ValueError(f"{where} holds a spec, not a search's trial records: drop '#{trial}'")
    return NetworkSpec.from_dict(data)


def _parse(text: str, yaml_file: bool) -> Any:
    """JSON or YAML text as data; a syntax error, a duplicate key, a YAML tag or too deep a
    nesting is a ValueError."""
    kind = "YAML" if yaml_file else "JSON"
    try:
        if yaml_file:
            import yaml

            try:
                return yaml.load(text, Loader=_unique_key_loader())  # noqa: S506 (SafeLoader)
            except yaml.YAMLError as exc:
                raise ValueError(f"spec YAML does not parse: {exc}") from None
        try:
            return json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise ValueError(f"spec JSON does not parse: {exc}") from None
    except RecursionError:
        raise ValueError(f"spec {kind} is nested too deeply") from None


def load_spec(path: str | os.PathLike) -> NetworkSpec:
    """Read a spec from a .json, .yaml or .yml file, or from a file the package wrote that holds
    one (see the module docstring; ``path#N`` picks trial ``N`` of a search's records).
    Unreadable or bad content is a ValueError (TypeError for a wrong field type) naming the
    file; a missing file stays a FileNotFoundError."""
    file, trial = parse_spec_path(path)
    where = f"spec file {os.fspath(path)!r}"
    try:
        with open(file, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text: {exc.reason}") from None
    except IsADirectoryError:
        raise ValueError(f"{where} is a folder") from None
    try:
        data = _parse(text, file.endswith((".yaml", ".yml")))
        return spec_from_document(data, where, trial, file)
    except (ValueError, TypeError) as exc:
        message = str(exc)
        if message.startswith(where):
            raise
        raise type(exc)(f"{where}: {message}") from None
