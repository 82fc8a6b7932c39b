"""Random members of a search space at a MAC budget, and the empirical distribution of their errors.

Radosavovic et al. 2019 ("On network design spaces for visual recognition", Sec. 3) compare
design spaces, not single nets: draw N nets uniformly from a space within a complexity range, train
each once by one protocol, and plot the error EDF ``F(e) = (1/N) sum_i 1[e_i < e]`` (their
Eq. 1; here ``<=``, the usual right-continuous EDF). A space whose EDF rises earlier holds more good
nets at that budget, whatever a search then finds in it.

:func:`random_members` draws through Optuna's ``RandomSampler`` and the very sampling code a search
trial runs (:func:`scaling.search.space.sample_spec`, the ``budget_fraction`` range clipped to the
window as the ``window`` objective clips it, :func:`scaling.search.evaluators.window_space`), so a
member's params are exactly what a search trial records and
:func:`scaling.search.members.spec_from_params` rebuilds its spec. Samples whose MACs fall outside
the window are rejected and drawn again, as the search rejects them unbuilt; the rejections are
counted, since they are part of what the space is at that budget.
"""

from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping
from typing import Any

from scaling.ir.base import is_int, is_number

__all__ = ["Members", "check_members_window", "edf", "random_members"]

#: the most draws per accepted member before :func:`random_members` gives up on the window
MAX_DRAWS_PER_MEMBER = 200


class Members(list):
    """A list of ``(params, spec)``; ``drawn`` samples were drawn to get them, ``rejected`` of
    which lay outside the MAC window; ``attrs[i]`` holds member i's trial user attrs (the
    realised ``width_multiplier`` and ``channel_divisor``)."""

    def __init__(self, members: Iterable[tuple[dict[str, Any], Any]] = ()) -> None:
        super().__init__(members)
        self.drawn = 0
        self.rejected = 0
        self.attrs: list[dict[str, Any]] = []


def check_members_window(window: Any) -> tuple[float, float]:
    """``window`` as ``(lo, hi)``, fractions of the budget with ``0 < lo < hi`` (``hi`` may exceed
    1: the study's band around a MAC point is ``(0.95, 1.05)``); ValueError naming it otherwise."""
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window={window!r} is not allowed; expected two fractions of the "
                         "budget (lo, hi) with 0 < lo < hi, e.g. (0.95, 1.05)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"window=({lo:g}, {hi:g}) is not allowed; expected 0 < lo < hi "
                         "(fractions of the budget)")
    return lo, hi


def random_members(n: int, budget: float, window: Any = (0.95, 1.05),
                   space: Mapping[str, Any] | None = None, seed: int = 0, resolution: int = 28,
                   in_channels: int = 1, num_classes: int = 10) -> Members:
    """``n`` members of ``space`` (default :data:`~scaling.search.space.DEFAULT_SPACE`) drawn
    uniformly by Optuna's ``RandomSampler(seed)`` on an in-memory study, each with MACs in
    ``[lo * budget, hi * budget]``; samples outside are rejected and drawn again (counted in
    ``Members.rejected``). The same ``seed`` gives the same members."""
    import optuna

    from scaling.cost import complexity
    from scaling.search.evaluators import window_space
    from scaling.search.space import load_space, sample_spec

    if not is_int(n) or n < 1:
        raise ValueError(f"n={n!r} is not allowed; expected an int >= 1")
    if not is_number(budget) or not math.isfinite(budget) or budget <= 0:
        raise ValueError(f"budget={budget!r} is not allowed; expected MACs > 0")
    if not is_int(seed):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    lo, hi = check_members_window(window)
    space = window_space(load_space(space), types.SimpleNamespace(
        objective="window", window=(lo, hi)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    members = Members()
    while len(members) < n:
        if members.drawn >= MAX_DRAWS_PER_MEMBER * n:
            raise ValueError(f"window=({lo:g}, {hi:g}) x budget {budget:,.0f} MACs: only "
                             f"{len(members)} of {members.drawn} samples landed in it; expected "
                             f"a window the space can reach at this budget")
        trial = study.ask()
        spec = sample_spec(trial, space, resolution, in_channels, num_classes, budget=budget)
        members.drawn += 1
        macs = complexity(spec).macs
        if not lo * budget <= macs <= hi * budget:
            members.rejected += 1
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        study.tell(trial, float(macs))
        members.append((dict(trial.params), spec))
        members.attrs.append(dict(trial.user_attrs))
    return members


def edf(values: Iterable[float]) -> Any:
    """The empirical distribution function of ``values`` as a pandas DataFrame, one row per
    distinct finite value, ascending: ``value``, ``count`` (how many equal it) and ``fraction``
    (the share of all values <= it). Missing values (NaN: a run that failed) count in the
    denominator and sit above every finite value, so ``fraction`` then ends below 1."""
    import pandas as pd

    series = pd.Series(list(values), dtype=float)
    if series.empty:
        raise ValueError("values is empty; expected at least one value")
    finite = series[series.notna() & series.abs().ne(math.inf)]
    table = finite.value_counts().sort_index().rename_axis("value").reset_index(name="count")
    table["fraction"] = table["count"].cumsum() / len(series)
    return table

