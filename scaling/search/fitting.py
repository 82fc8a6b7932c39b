"""Fitting a sampled architecture to the MAC budget: the width multiplier, and the shrink ladder
that lowers the floor when even the narrowest width is over the budget.

Width (MnasNet's latency-aware search, Tan et al. 2019, fills its target through the reward;
we fit it): :func:`fit_multiplier` bisects for the largest multiplier whose analytic MACs are
<= the sampled fraction of the budget; MACs are non-decreasing in the multiplier because channel
rounding (``make_divisible``) is.

Floor: channels never go below the divisor (8), so at small budgets (1M MACs at 28x28) the MACs
of the narrowest width are set by everything else -- repeats, kernels, expansion, the map sizes
(the stride pattern). When they exceed the budget, :func:`fit_floor` applies the rungs of the
space's ``shrink`` ladder cumulatively, first rung first, and stops at the first rung whose
floor fits the budget; a sample whose floor fits is never changed (larger budgets sample what
they did before). A rung is a mapping of caps (:data:`SHRINK_KEYS`):

- ``repeats``, ``kernel``, ``expansion`` (mbconv / fused-MBConv only), ``se`` (ratio; 0: off),
  ``head`` (head ratio; 0: no head conv): each stage's sampled value becomes ``min(sampled,
  cap)``; a later rung's cap never loosens an earlier one;
- ``early_strides: n``: move the n last stride-2 steps of the pattern (stem convs first, then one
  per stage) to its n first stride-1 positions: the same total stride, so the same final map,
  reached sooner (every stride-2 acts on the same map size as before: the spec stays valid at
  every resolution).

:data:`DEFAULT_SHRINK` is used when the space has no ``shrink`` key (so that studies stored with
an older space keep their identity); ``shrink: []`` turns the ladder off. The trial records the
rungs it applied (user attr ``shrink``, 0: none) and the caps in force (``shrink_caps``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from scaling.ir.base import is_int, is_number

#: the keys a rung may hold, with the least each may be
SHRINK_KEYS: dict[str, float] = {"repeats": 1, "kernel": 1, "expansion": 1, "se": 0, "head": 0,
                                 "early_strides": 0}
#: Depth first (the cheapest to give up: in short trainings depth did not pay, results/study), then
#: kernel and expansion, then earlier downsampling. The worst floor of 300 random samples of the
#: default space at 28x28 after 0..5 rungs: 9.2M, 5.2M, 2.4M, 0.90M, 0.35M, 0.16M MACs.
DEFAULT_SHRINK: list[dict[str, Any]] = [
    {"repeats": 2, "kernel": 5},
    {"repeats": 1, "expansion": 4},
    {"kernel": 3, "expansion": 3, "se": 0, "head": 0},
    {"early_strides": 1},
    {"early_strides": 8, "expansion": 1},
]


def check_entry(where: str, entry: Any, allowed: Sequence[str]) -> None:
    """Raise TypeError unless ``entry`` is a mapping, ValueError if it has a key not in
    ``allowed`` (both naming ``where``)."""
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(allowed)}")


def validate_shrink(ladder: Any) -> None:
    """Raise ValueError/TypeError naming the rung and key unless ``ladder`` is a shrink ladder."""
    if not isinstance(ladder, list):
        raise TypeError(f"space.shrink must be a list of rungs (mappings), got "
                        f"{type(ladder).__name__}")
    for i, rung in enumerate(ladder):
        check_entry(f"space.shrink[{i}]", rung, SHRINK_KEYS)
        for key, value in rung.items():
            least = SHRINK_KEYS[key]
            whole = key in ("repeats", "kernel", "early_strides")
            if not (is_int(value) if whole else is_number(value)) or value < least:
                raise ValueError(f"space.shrink[{i}].{key}={value!r} is not allowed; expected "
                                 f"{'an int' if whole else 'a number'} >= {least}")


def ladder_of(space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The space's shrink ladder (:data:`DEFAULT_SHRINK` when it has none)."""
    ladder = space.get("shrink")
    return DEFAULT_SHRINK if ladder is None else list(ladder)


def caps_of(ladder: Sequence[Mapping[str, Any]], rungs: int) -> dict[str, Any]:
    """The caps in force after the first ``rungs`` rungs (the smallest of each key)."""
    caps: dict[str, Any] = {}
    for rung in ladder[:rungs]:
        for key, value in rung.items():
            caps[key] = value if key not in caps else min(caps[key], value)
    return caps


def early_strides(pattern: str, n: int) -> str:
    """``pattern`` with its ``n`` last stride-2 steps moved to its ``n`` first stride-1 positions
    (stem first): ``early_strides("1:1,2,2,2,1,2,1", 1) == "2:1,2,2,2,1,1,1"``."""
    stem, stages = str(pattern).split(":")
    steps = [int(s) for s in stem.split(",")] + [int(s) for s in stages.split(",")]
    for _ in range(n):
        ones = [i for i, s in enumerate(steps) if s == 1]
        twos = [i for i, s in enumerate(steps) if s == 2]
        if not ones or not twos or ones[0] > twos[-1]:
            break  # every stride-2 already precedes every stride-1
        steps[ones[0]], steps[twos[-1]] = 2, 1
    n_stem = len(stem.split(","))
    return (",".join(map(str, steps[:n_stem])) + ":" + ",".join(map(str, steps[n_stem:])))


def shrink(arch: list[dict[str, Any]], pattern: str, head_ratio: float, caps: Mapping[str, Any]
           ) -> tuple[list[dict[str, Any]], str, float]:
    """The stage choices, stride pattern and head ratio of a sample under ``caps``."""
    out = []
    for a in arch:
        a = dict(a)
        for key in ("repeats", "kernel"):
            if key in caps:
                a[key] = min(a[key], caps[key])
        if a["block"] != "ds":
            if "expansion" in caps:
                a["expansion"] = min(a["expansion"], caps["expansion"])
            if "se" in caps:
                a["se"] = min(a["se"], caps["se"])
        out.append(a)
    if "head" in caps:
        head_ratio = min(head_ratio, caps["head"])
    if caps.get("early_strides"):
        pattern = early_strides(pattern, int(caps["early_strides"]))
    return out, pattern, head_ratio


def analytic_macs(spec: Any) -> int:
    from scaling.cost import complexity

    return complexity(spec).macs


def fit_multiplier(make: Callable[[float], Any], target: float, low: float, high: float,
                   tol: float = 1e-3, macs: Callable[[Any], int] | None = None) -> float:
    """The largest multiplier m in [low, high] with ``macs(make(m)) <= target`` (bisection; MACs
    are non-decreasing in m). Returns ``low`` when even that is over ``target``."""
    macs = macs or analytic_macs
    if macs(make(low)) > target:
        return low
    if macs(make(high)) <= target:
        return high
    lo, hi = low, high
    while hi - lo > tol * lo:
        mid = (lo + hi) / 2
        if macs(make(mid)) <= target:
            lo = mid
        else:
            hi = mid
    return lo


def fit_floor(make: Callable[[list[dict[str, Any]], str, float, float], Any],
              arch: list[dict[str, Any]], pattern: str, head_ratio: float, budget: float,
              low: float, ladder: Sequence[Mapping[str, Any]],
              macs: Callable[[Any], int] | None = None
              ) -> tuple[int, dict[str, Any], tuple[list[dict[str, Any]], str, float]]:
    """(rungs applied, caps, shrunk choices): the fewest rungs of ``ladder`` after which
    ``make(arch, pattern, head_ratio, low)`` is within ``budget`` (all of them when none is)."""
    macs = macs or analytic_macs
    for rungs in range(len(ladder) + 1):
        caps = caps_of(ladder, rungs)
        choices = shrink(arch, pattern, head_ratio, caps) if rungs else (arch, pattern, head_ratio)
        if macs(make(*choices, low)) <= budget:
            break
    return rungs, caps, choices
