"""Validation helpers and the serialisation base shared by the IR's spec dataclasses."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any, TypeVar

from scaling.ir.registry import ACTIVATION, check_choice

T = TypeVar("T", bound="_Spec")


def _check_int(field_name: str, value: Any, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field_name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field_name}={value!r} is not allowed; expected an int >= {minimum}")


def _check_number(field_name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field_name} must be a number, got {type(value).__name__} {value!r}")


def _check_kernel(field_name: str, value: Any) -> None:
    _check_int(field_name, value, 1)
    if value % 2 == 0:
        raise ValueError(f"{field_name}={value} is not allowed; expected an odd kernel size")


def _check_stride(field_name: str, value: Any) -> None:
    _check_int(field_name, value)
    check_choice(field_name, value, (1, 2))


def _check_activation(field_name: str, value: Any) -> None:
    check_choice(field_name, value, ACTIVATION.names)


class _Spec:
    """Shared behaviour of the spec dataclasses: derivation and dict round trip."""

    def replace(self: T, **changes: Any) -> T:
        """A new spec with ``changes`` applied; validated like any other."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            out[f.name] = _to_plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls: type[T], data: Any, where: str = "") -> T:
        where = where or cls.__name__
        if not isinstance(data, dict):
            raise TypeError(f"{where} must be a mapping, got {type(data).__name__}")
        known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
        kwargs = {k: _from_plain(cls, k, v, f"{where}.{k}") for k, v in data.items()}
        return cls(**kwargs)


def _to_plain(value: Any) -> Any:
    if isinstance(value, _Spec):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


# (class name, field) -> nested spec class, and fields stored as tuples; filled by scaling.ir.spec
_NESTED: dict[tuple[str, str], type] = {}
_TUPLES: set[tuple[str, str]] = set()


def _from_plain(cls: type, name: str, value: Any, where: str) -> Any:
    nested = _NESTED.get((cls.__name__, name))
    if nested is not None and value is not None:
        if name == "stages":
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"{where} must be a list of stages, got {type(value).__name__}")
            return tuple(nested.from_dict(v, f"{where}[{i}]") for i, v in enumerate(value))
        return nested.from_dict(value, where)
    if (cls.__name__, name) in _TUPLES and isinstance(value, list):
        return tuple(value)
    return value
