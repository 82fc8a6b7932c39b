"""Validation helpers and the serialisation base shared by the IR's spec dataclasses.

One helper per check kind: :func:`is_int` / :func:`is_number` (an int or a number, never a bool)
for callers that raise their own error, and :func:`check_int`, :func:`check_number`,
:func:`check_bool`, :func:`check_str`, :func:`check_kernel`, :func:`check_stride`,
:func:`check_activation` that raise a :class:`~scaling.ir.limits.SpecTypeError` (wrong type) or
ValueError (wrong value) naming the field, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import fields
from functools import cache
from typing import Any, TypeVar

from scaling.ir.limits import SpecTypeError
from scaling.ir.registry import ACTIVATION, check_choice

T = TypeVar("T", bound="_Spec")


def is_int(value: Any) -> bool:
    """Whether ``value`` is an int (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """Whether ``value`` is an int or a float (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(field_name: str, value: Any, minimum: int | None = None,
              maximum: int | None = None) -> None:
    if not is_int(value):
        raise SpecTypeError(f"{field_name} must be an int, got {type(value).__name__} {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f" >= {minimum}"
        high = "" if maximum is None else f" <= {maximum:_}"
        raise ValueError(f"{field_name}={value!r} is not allowed; expected an int"
                         f"{low}{' and' if low and high else ''}{high}")


def check_number(field_name: str, value: Any) -> None:
    """A finite int or float (NaN, infinities and ints beyond the float range, e.g.
    ``10**400``, are refused with a ValueError, not an OverflowError)."""
    if not is_number(value):
        raise SpecTypeError(f"{field_name} must be a number, got {type(value).__name__} {value!r}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"{field_name}=<an int of {value.bit_length()} bits> is not allowed; "
                         "expected a finite number within the float range") from None
    if not finite:
        raise ValueError(f"{field_name}={value!r} is not allowed; expected a finite number")


def check_bool(field_name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise SpecTypeError(f"{field_name} must be a bool, got {type(value).__name__} {value!r}")


def check_str(field_name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise SpecTypeError(f"{field_name} must be a str, got {type(value).__name__} {value!r}")


def check_kernel(field_name: str, value: Any) -> None:
    check_int(field_name, value, 1)
    if value % 2 == 0:
        raise ValueError(f"{field_name}={value} is not allowed; expected an odd kernel size")


def check_stride(field_name: str, value: Any) -> None:
    check_int(field_name, value)
    check_choice(field_name, value, (1, 2))


def check_activation(field_name: str, value: Any) -> None:
    check_choice(field_name, value, ACTIVATION.names)


class _Spec:
    """Shared behaviour of the spec dataclasses: derivation and dict round trip.

    ``from_dict`` reads nested specs and tuples from the field annotations
    (``typing.get_type_hints``): a ``_Spec`` field, ``_Spec | None``, ``tuple[_Spec, ...]``, and
    ``tuple[int, ...]`` (a JSON list becomes a tuple).
    """

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
            raise SpecTypeError(f"{where} must be a mapping, got {type(data).__name__}")
        hints = _field_types(cls)
        unknown = sorted(set(data) - set(hints), key=repr)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(hints)}")
        kwargs = {k: _from_plain(hints[k], v, f"{where}.{k}") for k, v in data.items()}
        return cls(**kwargs)


@cache
def _field_types(cls: type) -> dict[str, Any]:
    """The resolved annotation of every dataclass field of ``cls``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _to_plain(value: Any) -> Any:
    if isinstance(value, _Spec):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _spec_class(hint: Any) -> type[_Spec] | None:
    return hint if isinstance(hint, type) and issubclass(hint, _Spec) else None


def _from_plain(hint: Any, value: Any, where: str) -> Any:
    """``value`` read as annotation ``hint``: nested specs from mappings, tuples from lists."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_plain(inner[0], value, where) if len(inner) == 1 else value
    nested = _spec_class(hint)
    if nested is not None:
        return nested.from_dict(value, where)
    if origin is tuple:
        item = _spec_class(args[0]) if args else None
        if item is not None:
            if not isinstance(value, (list, tuple)):
                raise SpecTypeError(f"{where} must be a list of {item.__name__} mappings, "
                                f"got {type(value).__name__}")
            return tuple(item.from_dict(v, f"{where}[{i}]") for i, v in enumerate(value))
        if isinstance(value, list):
            return tuple(value)
    return value
