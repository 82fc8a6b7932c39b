"""A latency table: measured milliseconds per entry (a block, a stem, a head) on one environment.

The environment is what a time depends on besides the module: the device (its name), the torch
version, CPU threads, batch size and dtype (:data:`ENVIRONMENT`). Two tables of the same
environment merge; tables of different ones are refused, since their times do not compare. The
file is JSON, written atomically (:mod:`scaling.files`), and names its format
(:data:`FORMAT`) so that a file of another kind is refused on load with one line. Torch-free.

The predictor (:mod:`scaling.latency.predict`) is ``scale * sum(entries) + per_part_ms * parts +
overhead_ms``; the three constants are fitted on whole models by ``profile --calibrate K``
(:func:`scaling.latency.predict.calibrate`); uncalibrated: 1, 0 and 0. ``harness_ms``: the
timing loop's own cost per call, already subtracted from the entries (None: not subtracted).
A file of the first format (``scaling.latency/1``: entries with the harness in, one
``overhead_ms``) still reads, as scale 1 and no per-part term.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scaling.files import atomic_write_json

__all__ = ["ENVIRONMENT", "FORMAT", "LatencyTable", "load_table", "parse_latency"]

FORMAT = "scaling.latency/2"
#: older formats that still read (their missing fields take the uncalibrated values)
OLD_FORMATS = ("scaling.latency/1",)
_FIELDS = ("format", "environment", "scale", "per_part_ms", "overhead_ms", "harness_ms",
           "entries")
#: the fields a table's environment names, all required
ENVIRONMENT = ("device", "torch", "threads", "batch", "dtype")


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_latency(text: str | float) -> float:
    """A latency in ms from ``'5ms'``, ``'800us'``, ``'0.2s'`` or a bare number (ms); a
    ValueError naming the value unless it is finite and > 0."""
    value = str(text).strip().lower()
    scale = 1.0
    for unit in ("us", "ms", "s"):  # "ms" and "us" before "s"
        if value.endswith(unit):
            value, scale = value[:-len(unit)].strip(), _UNITS[unit]
            break
    try:
        ms = float(value) * scale
    except ValueError:
        ms = float("nan")
    if not math.isfinite(ms) or ms <= 0:
        raise ValueError(f"latency budget {text!r} is not allowed; expected a time > 0 such as "
                         "5ms, 800us or 0.2s (a bare number: ms)")
    return ms


def _check_environment(env: Any) -> dict[str, Any]:
    if not isinstance(env, Mapping):
        raise TypeError(f"latency table environment must be a mapping, got {type(env).__name__}")
    missing = [k for k in ENVIRONMENT if k not in env]
    if missing:
        raise ValueError(f"latency table environment lacks {missing}; expected the keys "
                         f"{list(ENVIRONMENT)}")
    for k in ("threads", "batch"):
        if isinstance(env[k], bool) or not isinstance(env[k], int) or env[k] < 1:
            raise ValueError(f"latency table environment {k}={env[k]!r} is not allowed; "
                             "expected an int >= 1")
    return dict(env)


def _check_ms(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{where}={value!r} is not allowed; expected a finite number >= 0 (ms)")
    return float(value)


@dataclass(frozen=True)
class LatencyTable:
    """Milliseconds per entry key (:func:`scaling.latency.predict.parts` makes the keys) measured
    in ``environment``; ``scale``, ``per_part_ms``, ``overhead_ms`` the predictor's fitted
    constants (see the module docstring; ``overhead_ms`` None: not calibrated)."""

    environment: dict[str, Any]
    entries: dict[str, float] = field(default_factory=dict)
    overhead_ms: float | None = None
    scale: float = 1.0
    per_part_ms: float = 0.0
    harness_ms: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "environment", _check_environment(self.environment))
        if not isinstance(self.entries, Mapping):
            raise TypeError("latency table entries must be a mapping of key to ms, got "
                            f"{type(self.entries).__name__}")
        object.__setattr__(self, "entries", {str(k): _check_ms(f"entry {k!r}", v)
                                             for k, v in self.entries.items()})
        if self.overhead_ms is not None:
            # the overhead may be negative: the entries, timed apart, may sum above the model
            value = self.overhead_ms
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"overhead_ms={self.overhead_ms!r} is not allowed; expected a "
                                 "finite number (ms) or None")
        for name in ("scale", "per_part_ms"):  # per_part_ms may be < 0, like the overhead
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or (name == "scale" and value <= 0):
                allowed = "a finite number > 0" if name == "scale" else "a finite number (ms)"
                raise ValueError(f"{name}={value!r} is not allowed; expected {allowed}")
        if self.harness_ms is not None:
            _check_ms("harness_ms", self.harness_ms)

    @property
    def calibrated(self) -> bool:
        """Whether the predictor's constants were fitted on whole models."""
        return self.overhead_ms is not None

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def describe(self) -> str:
        """The environment on one line: ``cpu 'AMD EPYC' torch 2.x, 1 thread, batch 1, float32``."""
        e = self.environment
        return (f"{e['device']}, torch {e['torch']}, {e['threads']} thread(s), batch "
                f"{e['batch']}, {e['dtype']}")

    def check_environment(self, other: Mapping[str, Any], what: str = "table") -> None:
        """ValueError naming the first field where ``other`` differs from this environment."""
        for k in ENVIRONMENT:
            if other.get(k) != self.environment[k]:
                raise ValueError(f"latency {what} was measured with {k}={other.get(k)!r}, this "
                                 f"table with {k}={self.environment[k]!r}: times of different "
                                 "environments do not compare")

    def with_entries(self, entries: Mapping[str, float]) -> LatencyTable:
        """This table with ``entries`` added (a key already present takes the new time)."""
        return replace(self, entries={**self.entries, **entries})

    def merge(self, other: LatencyTable) -> LatencyTable:
        """Both tables' entries (``other``'s time where both have a key); refused unless the
        environments are equal, and unless both or neither subtracted the harness. The fitted
        constants are this table's if calibrated, else ``other``'s."""
        if not isinstance(other, LatencyTable):
            raise TypeError(f"merge takes a LatencyTable, got {type(other).__name__}")
        self.check_environment(other.environment)
        if (self.harness_ms is None) != (other.harness_ms is None):
            raise ValueError("latency tables do not merge: one has the timing harness subtracted "
                             "from its entries (format 2), the other not (format 1); profile "
                             "the old one again")
        fit = self if self.calibrated or not other.calibrated else other
        return replace(self.with_entries(other.entries), overhead_ms=fit.overhead_ms,
                       scale=fit.scale, per_part_ms=fit.per_part_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "environment": self.environment, "scale": self.scale,
                "per_part_ms": self.per_part_ms, "overhead_ms": self.overhead_ms,
                "harness_ms": self.harness_ms, "entries": dict(sorted(self.entries.items()))}

    @classmethod
    def from_dict(cls, data: Any, source: str = "latency table") -> LatencyTable:
        if not isinstance(data, Mapping) or data.get("format") not in (FORMAT, *OLD_FORMATS):
            got = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"{source} is not a latency table: format={got!r}, expected "
                             f"{FORMAT!r} or {OLD_FORMATS} (python -m scaling.latency profile "
                             "writes one)")
        allowed = _FIELDS if data["format"] == FORMAT else ("format", "environment",
                                                            "overhead_ms", "entries")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"{source}: unknown key(s) {unknown} for format {data['format']!r}")
        return cls(data.get("environment"), data.get("entries", {}), data.get("overhead_ms"),
                   data.get("scale", 1.0), data.get("per_part_ms", 0.0), data.get("harness_ms"))

    def save(self, path: str | os.PathLike) -> None:
        """Write the table as JSON, atomically."""
        atomic_write_json(path, self.to_dict())


def load_table(path: str | os.PathLike) -> LatencyTable:
    """Read a table file; a missing file, bad JSON or another kind of file is one ValueError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"latency table {os.fspath(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"latency table {os.fspath(path)!r} does not read: {exc}") from None
    return LatencyTable.from_dict(data, source=f"latency table {os.fspath(path)!r}")
