"""Fitting a sampled root spec to the MAC budget, by the rule the study fits its families with.

A sample of the space is a width-1 root spec; its width is then fitted exactly as the study fits
a hand-designed family to a MAC point (:func:`scaling.compound.match.fit_width`): for each channel
divisor of the space's ``channel_divisor`` in turn (default 8, 4, 2, 1: at 8-16 channels one
step of 8 is 50-100% of a layer), the multiplier in ``width_range`` whose realised MACs are
closest to the target in log ratio; the first divisor that lands within ``mac_tol`` wins, else
the closest of all. So a zoo family's root, sampled at ``budget_fraction`` 1, gives the study's
own base-point spec (:mod:`scaling.search.members`).

Nothing the trial sampled is changed here (the earlier shrink ladder overwrote repeats, kernel
and expansion of over-budget samples, so the sampler learnt from layouts it never trained): the
realised width and divisor are a function of the sampled parameters, and a sample that cannot
reach its target is rejected by the search's budget check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scaling.ir.base import is_int, is_number


def check_entry(where: str, entry: Any, allowed: Sequence[str]) -> None:
    """Raise TypeError unless ``entry`` is a mapping, ValueError if it has a key not in
    ``allowed`` (both naming ``where``)."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")


def divisors_of(space: Mapping[str, Any]) -> tuple[int, ...]:
    """The space's channel divisors in the order they are tried (an int: that one only)."""
    value = space.get("channel_divisor", 8)
    divisors = value if isinstance(value, list) else [value]
    if not divisors or not all(is_int(d) and d >= 1 for d in divisors):
        raise ValueError(f"space.channel_divisor={value!r} is not allowed; expected an int >= 1 "
                         "or a list of them (tried in order, e.g. [8, 4, 2, 1])")
    return tuple(int(d) for d in divisors)


def width_range(space: Mapping[str, Any]) -> tuple[float, float]:
    """The smallest and largest width multiplier the fitter may choose."""
    value = space.get("width_range", [0.02, 8.0])
    if (not isinstance(value, list) or len(value) != 2 or not all(is_number(v) for v in value)
            or not 0 < value[0] < value[1]):
        raise ValueError(f"space.width_range={value!r} is not allowed; expected [low, high] "
                         "with 0 < low < high")
    return float(value[0]), float(value[1])


def fit_to_budget(root: Any, target: float, space: Mapping[str, Any], name: str) -> Any:
    """``root`` with its width fitted to ``target`` MACs (a :class:`~scaling.compound.match.Fit`):
    the first divisor within ``mac_tol``, else the closest fit of all divisors."""
    from scaling.compound.match import fit_width

    lo, hi = width_range(space)
    kw = {"divisors": divisors_of(space), "lo": lo, "hi": hi, "name": name}
    try:
        return fit_width(root, target, tol=float(space.get("mac_tol", 0.05)), **kw)
    except ValueError:  # no divisor lands within mac_tol: the closest (the budget check judges it)
        return fit_width(root, target, tol=None, **kw)


def at_width(root: Any, multiplier: float, space: Mapping[str, Any], name: str) -> Any:
    """``root`` scaled to the width ``multiplier`` with the space's first channel divisor."""
    from scaling.compound.rule import scale

    return scale(root, width=multiplier, divisor=divisors_of(space)[0], name=name)


def fit_multiplier(make: Callable[[float], Any], target: float, low: float, high: float,
                   tol: float = 1e-3) -> float:
    """The largest multiplier m in [low, high] with ``make(m)``'s analytic MACs <= ``target``
    (bisection; MACs are non-decreasing in m); ``low`` when even that is over ``target``. Used
    to fill a budget from below (``experiments/search_baseline.py``)."""
    from scaling.compound.match import macs_of

    if macs_of(make(low)) > target:
        return low
    if macs_of(make(high)) <= target:
        return high
    lo, hi = low, high
    while hi - lo > tol * lo:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if macs_of(make(mid)) <= target else (lo, mid)
    return lo
