"""timm's ``FeatureInfo`` for the feature levels of a :class:`~scaling.ir.NetworkSpec` (torch-free).

A level is one place a backbone can hand out a feature map: a dict with ``num_chs`` (channels),
``reduction`` (the input's stride there), ``module`` (the module whose output it is) and
``index`` (its place among all levels). :class:`FeatureInfo` holds every level and the selected
``out_indices``; the accessors ``channels()``, ``reduction()``, ``module_name()``, ``get()`` and
``get_dicts()`` answer as timm's do (no index: the selected levels; an int or a list: those
levels, counted over all of them). Iterating, indexing and ``len`` walk the *selected* levels, as
the plain list this object replaces did (timm's walk all levels; they are the same when every
level is selected). The levels are the stages' outputs; a stem level would be one more entry of
:func:`feature_levels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from scaling.ir import NetworkSpec
from scaling.ir.base import is_int

__all__ = ["FeatureInfo", "feature_levels"]

_REQUIRED = ("num_chs", "reduction", "module")


def feature_levels(spec: NetworkSpec) -> list[dict[str, Any]]:
    """One level per stage output: channels, cumulative stride (stem strides, the stem's max
    pool, stage strides), the module ``stages.{i}`` and the stage index."""
    reduction = 1
    for s in spec.stem.strides:
        reduction *= s
    reduction *= 2 if spec.stem.pool == "max" else 1
    levels = []
    for i, stage in enumerate(spec.stages):
        reduction *= stage.stride
        levels.append({"num_chs": stage.out_channels, "reduction": reduction,
                       "module": f"stages.{i}", "stage": i, "index": i})
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
        bad = [i for i in idx if not is_int(i) or not 0 <= i < n]
        if bad:
            raise ValueError(f"out_indices={idx!r} is not allowed; expected level indices in "
                             f"[0, {n - 1}] ({n} levels)")
        self.out_indices = idx

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
