"""timm's ``FeatureInfo`` for the feature levels of a :class:`~scaling.ir.NetworkSpec` (torch-free).

A level is one place a backbone can hand out a feature map: a dict with ``num_chs`` (channels),
``reduction`` (the input's stride there), ``module`` (the module whose output it is) and
``index`` (its place among all levels). :class:`FeatureInfo` holds every level and the selected
``out_indices``; the accessors ``channels()``, ``reduction()``, ``module_name()``, ``get()`` and
``get_dicts()`` answer as timm's do (no index: the selected levels; an int or a list: those
levels, counted over all of them). Iterating, indexing and ``len`` walk the *selected* levels, as
the plain list this object replaces did (timm's walk all levels; they are the same when every
level is selected). The levels are timm's (:func:`feature_levels`): the last output at each
reduction; negative ``out_indices`` count from the end, as timm's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from scaling.ir import NetworkSpec
from scaling.ir.base import is_int

__all__ = ["FeatureInfo", "feature_levels"]

_REQUIRED = ("num_chs", "reduction", "module")


def feature_levels(spec: NetworkSpec) -> list[dict[str, Any]]:
    """timm's feature levels of ``spec``: the last output at each reduction, in order.

    A place ends a level when the next module strides (or at the end): the stem's convs (before
    the stem's max pool; module ``stem.{n-1}``, or ``stem`` without a pool), a stage output
    (``stages.{i}``) and, when the head pools into a hidden linear layer (MobileNetV3: timm
    counts the 1x1 conv before the pool as its last block), the head conv (``head.conv``). So
    ResNet and RegNet get reductions 2, 4, 8, 16, 32, EfficientNet, MNASNet and MobileNetV2/V3
    the last block of each reduction, as timm's ``features_only``. ``stage`` counts the modules
    run up to the level (0: the stem; i + 1: stage i; n + 1: the head conv).
    """
    stem = spec.stem
    reduction = 1
    for s in stem.strides:
        reduction *= s
    places = [("stem" if stem.pool is None else f"stem.{len(stem.channels) - 1}",
               stem.channels[-1], reduction, 0)]
    if stem.pool == "max":
        places.append(("", 0, 0, 0))  # the pool: it strides, so the stem convs end a level
        reduction *= 2
    for i, stage in enumerate(spec.stages):
        if stage.stride > 1:
            places.append(("", 0, 0, 0))
        reduction *= stage.stride
        places.append((f"stages.{i}", stage.out_channels, reduction, i + 1))
    head = spec.head
    if head.channels is not None and head.hidden is not None:
        places.append(("head.conv", head.channels, reduction, len(spec.stages) + 1))
    levels: list[dict[str, Any]] = []
    for (module, chs, red, stage), nxt in zip(places, places[1:] + [("", 0, 0, 0)]):
        if module and not nxt[0]:
            levels.append({"num_chs": chs, "reduction": red, "module": module, "stage": stage,
                           "index": len(levels)})
    return levels


class FeatureInfo(Sequence):
    """The feature levels of a model and which of them it outputs (timm's ``FeatureInfo``)."""

    def __init__(self, levels: Iterable[dict[str, Any]],
                 out_indices: Iterable[int] | None = None) -> None:
        self.info = [dict(level) for level in levels]
        for i, level in enumerate(self.info):
            missing = [k for k in _REQUIRED if k not in level]
            if missing:
                raise ValueError(f"feature level {i} lacks {missing}; a level needs "
                                 f"{list(_REQUIRED)}, got {level}")
            level.setdefault("index", i)
        n = len(self.info)
        idx = tuple(range(n)) if out_indices is None else tuple(out_indices)
        bad = [i for i in idx if not is_int(i) or not -n <= i < n]
        if bad:
            raise ValueError(f"out_indices={idx!r} is not allowed; expected level indices in "
                             f"[{-n}, {n - 1}] ({n} levels)")
        self.out_indices = tuple(i % n for i in idx)

    def from_other(self, out_indices: Iterable[int]) -> FeatureInfo:
        """The same levels with other ``out_indices``."""
        return FeatureInfo(self.info, out_indices)

    def _at(self, idx: int | Sequence[int] | None) -> list[int] | int:
        n = len(self.info)
        if idx is None:
            return list(self.out_indices)
        many = isinstance(idx, (list, tuple))
        for i in (idx if many else (idx,)):
            if not is_int(i) or not -n <= i < n:
                raise IndexError(f"feature level {i!r} is out of range; the model has {n} "
                                 f"levels (0..{n - 1})")
        return list(idx) if many else idx

    def get(self, key: str, idx: int | Sequence[int] | None = None) -> Any:
        """``key`` of the selected levels (``idx`` None), of level ``idx`` or of each listed."""
        at = self._at(idx)
        if isinstance(at, list):
            return [self.info[i][key] for i in at]
        return self.info[at][key]

    def get_dicts(self, keys: Sequence[str] | None = None,
                  idx: int | Sequence[int] | None = None) -> Any:
        """The level dicts (restricted to ``keys`` when given), selected as in :meth:`get`."""
        def pick(i: int) -> dict[str, Any]:
            return self.info[i] if keys is None else {k: self.info[i][k] for k in keys}
        at = self._at(idx)
        return [pick(i) for i in at] if isinstance(at, list) else pick(at)

    def channels(self, idx: int | Sequence[int] | None = None) -> Any:
        """Channels (``num_chs``) of the selected levels, or of level(s) ``idx``."""
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None) -> Any:
        """Output stride of the selected levels, or of level(s) ``idx``."""
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None) -> Any:
        """Name of the module whose output each selected level (or level ``idx``) is."""
        return self.get("module", idx)

    # -- the list of selected level dicts, as before -------------------------------------------
    def __getitem__(self, item: Any) -> Any:
        return self.get_dicts()[item]

    def __len__(self) -> int:
        return len(self.out_indices)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.get_dicts())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FeatureInfo):
            return self.info == other.info and self.out_indices == other.out_indices
        return isinstance(other, list) and self.get_dicts() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FeatureInfo({self.get_dicts()!r}, out_indices={self.out_indices})"
