"""Name registries shared by the IR (torch-free) and the layer builders.

The IR validates names against these registries without importing torch; :mod:`scaling.nn`
attaches the torch builders. Registering a new type is one call: ``NORM.register("XN", cls)``.
Block types are records (:class:`Records`), registered once by :mod:`scaling.ir.blocks`, which the
package's ``__init__`` imports; a record names its torch module class itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

# The one place that knows where the torch builders live: importing it registers every norm,
# activation, conv and block builder. The IR never imports it; Registry.get loads it on first use.
BUILDERS_MODULE = "scaling.nn"


class Registry:
    """A mapping from type names to builders; names may be declared before their builder.

    Declared names let the torch-free IR accept e.g. ``"BN"`` before :mod:`scaling.nn` has been
    imported; ``get`` imports ``scaling.nn.layers`` on demand so that every declared builder exists.
    """

    def __init__(self, kind: str, declared: Iterable[str] = ()) -> None:
        self.kind = kind
        self._declared: dict[str, None] = dict.fromkeys(declared)
        self._builders: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None, *, force: bool = False) -> Any:
        """Register ``obj`` under ``name``; used bare or as a decorator."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} name must be a non-empty str, got {name!r}")

        def _add(target: Any) -> Any:
            if name in self._builders and not force:
                raise KeyError(f"{self.kind} type {name!r} is already registered")
            self._builders[name] = target
            self._declared[name] = None
            return target

        return _add if obj is None else _add(obj)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._declared)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._declared

    def get(self, name: str) -> Any:
        if name not in self._builders:
            importlib.import_module(BUILDERS_MODULE)
        if name not in self._builders:
            raise KeyError(f"unknown {self.kind} type {name!r}; known: {', '.join(self.names)}")
        return self._builders[name]


# Norm layer types, with the seed's (mmcv) names.
NORM = Registry("norm", ["BN", "BN1d", "BN2d", "BN3d", "SyncBN", "GN", "LN", "IN", "IN1d", "IN2d",
                         "IN3d"])
# Norm types that can normalise (N, C, H, W) conv features; the others are for other ranks.
NORM_2D = {"BN", "BN2d", "SyncBN", "GN", "LN", "IN", "IN2d"}
ACTIVATION = Registry("activation", ["relu", "relu6", "leaky_relu", "prelu", "hswish", "hsigmoid",
                                     "sigmoid", "silu", "swish", "gelu", "identity"])
CONV = Registry("conv", ["Conv2d", "Conv2dSame"])


class Records:
    """Named, frozen records, each registered once; ``unique`` fields may not repeat either."""

    def __init__(self, kind: str, unique: tuple[str, ...] = ("name",)) -> None:
        self.kind = kind
        self.unique = unique
        self._records: dict[str, Any] = {}

    def register(self, record: Any) -> Any:
        """Add ``record`` (keyed by its ``name``); a second record with a used name is refused."""
        for key in self.unique:
            value = getattr(record, key)
            if any(getattr(r, key) == value for r in self._records.values()):
                raise KeyError(f"{self.kind} {key} {value!r} is already registered")
        self._records[record.name] = record
        return record

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._records)

    def __contains__(self, name: object) -> bool:
        return name in self._records

    def __iter__(self) -> Iterator[Any]:
        return iter(tuple(self._records.values()))

    def __getitem__(self, name: str) -> Any:
        if name not in self._records:
            raise KeyError(f"unknown {self.kind} type {name!r}; known: {', '.join(self.names)}")
        return self._records[name]


# Block types (scaling.ir.blocks.BlockType), filled by scaling.ir.blocks.
BLOCK_TYPES = Records("block", unique=("name", "code"))


def check_choice(field: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise ValueError naming ``field``, ``value`` and the allowed values, unless allowed."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not allowed; expected one of {allowed}")


BuilderFn = Callable[..., Any]
