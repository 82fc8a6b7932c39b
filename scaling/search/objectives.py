"""Search objectives and the MAC budget.

- ``window`` (single objective, maximise): plain validation accuracy among nets whose MACs lie in
  ``[lo, hi] x budget`` (``--window``, default 0.9,1.0), a hard window: the honest objective for a
  fixed MAC point, where any exchange rate between accuracy and MACs would be a guess.
- ``reward`` (single objective, maximise): the MnasNet reward (Tan et al. 2019, eq. 2)
  ``ACC * (MACs / T) ** w`` with the target T = the budget and ``w`` (``--reward-w``, default
  -0.07). Halving the MACs multiplies the reward by ``2 ** -w``: w = -0.07 pays 4.97% relative
  accuracy per halving of MACs (about 4 points at 85%); a task that gains ``g`` relative accuracy
  per doubling is matched by ``w = -log2(1 + g)`` (1% per doubling: w = -0.014).
- ``pareto`` (two objectives): maximise validation accuracy, minimise MACs; the report is the
  Pareto front (``study.best_trials``).

The budget is a hard constraint on analytic MACs (:func:`scaling.cost.complexity.complexity`),
computed before anything is built. A sample outside it (over the budget; for ``window`` also
below ``lo x budget``) is never built or trained: the trial records the constraint (``MACs -
budget``, or the distance to the window, > 0 when infeasible; ``trial.set_constraint``, Optuna
>= 5; older Optuna gets it through the sampler's ``constraints_func``) and completes with the
penalty value (0, or accuracy 0 at its MACs), status ``over_budget`` or ``below_window``. TPE
and NSGA-II rank infeasible trials below every feasible one, and ``study.best_trial`` /
``best_trials`` consider feasible trials only, so the penalty never wins; we chose this over
pruning because it tells the sampler *why* the point is bad.

With the zero-cost evaluator a proxy score takes accuracy's place in every objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scaling.cost.units import format_macs, parse_budget  # noqa: F401 (the search's API)

MNAS_W = -0.07
CONSTRAINT = "macs_over_budget"
#: the default MAC window of the ``window`` objective, as fractions of the budget
WINDOW = (0.9, 1.0)
#: statuses of samples that were never evaluated (outside the budget or the window)
INFEASIBLE = ("over_budget", "below_window", "over_latency")


def check_window(window: Any) -> tuple[float, float]:
    """``window`` as ``(lo, hi)`` floats with ``0 < lo < hi <= 1`` (fractions of the budget: the
    budget stays the hard cap); a ValueError naming the value otherwise."""
    import math

    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window={window!r} is not allowed; expected two fractions of the "
                         "budget, LO,HI with 0 < LO < HI <= 1 (e.g. 0.9,1.0)") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi <= 1):
        raise ValueError(f"window={lo:g},{hi:g} is not allowed; expected 0 < LO < HI <= 1 "
                         "(fractions of the budget)")
    return lo, hi


def parse_window(text: str) -> tuple[float, float]:
    """CLI text ``'0.9,1.0'`` -> ``(0.9, 1.0)`` (:func:`check_window`)."""
    return check_window([part.strip() for part in str(text).split(",")] if "," in str(text)
                        else text)


def macs_status(objective: str, macs: int, budget: int,
                window: Any = WINDOW) -> tuple[str | None, float]:
    """``(status, constraint)`` of a net of ``macs``: status None when it may be evaluated, else
    ``over_budget`` / ``below_window``; the constraint is > 0 exactly when it may not (its
    distance in MACs to the feasible range)."""
    if objective != "window":
        return (None if macs <= budget else "over_budget"), float(macs - budget)
    lo, hi = check_window(window)
    value = max(lo * budget - macs, macs - hi * budget)
    if value <= 0:
        return None, float(value)
    return ("over_budget" if macs > hi * budget else "below_window"), float(value)


def latency_status(latency_ms: float, latency_budget: float | None, budget: int
                   ) -> tuple[str | None, float]:
    """``(status, constraint)`` of a net predicted to take ``latency_ms`` under the hard
    ``latency_budget`` (ms; None: no latency budget): ``over_latency`` and a constraint > 0 when
    over it. The constraint is the relative excess times the MAC ``budget``, so that it shares
    one scale with the MAC constraint of :func:`macs_status` (Optuna compares one value)."""
    if latency_budget is None or latency_ms <= latency_budget:
        return None, 0.0
    return "over_latency", float((latency_ms / latency_budget - 1.0) * budget)


def mnas_reward(accuracy: float, macs: float, target: float, w: float = MNAS_W) -> float:
    """MnasNet's soft-constraint reward ``ACC * (MACs / T) ** w`` (Tan et al. 2019, eq. 2)."""
    if macs <= 0 or target <= 0:
        raise ValueError(f"macs={macs!r} and target={target!r} must be > 0")
    return accuracy * (macs / target) ** w


@dataclass(frozen=True)
class Objective:
    """An objective: study directions, trial values, penalty for infeasible samples."""

    name: str
    directions: tuple[str, ...]
    description: str

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    def values(self, score: float, macs: int, budget: int, w: float = MNAS_W
               ) -> float | tuple[float, float]:
        """The trial's value(s) from its accuracy (or proxy) ``score`` and ``macs``."""
        if self.name == "reward":
            return mnas_reward(score, macs, budget, w)
        if self.name == "window":
            return float(score)
        return (float(score), float(macs))

    def penalty(self, macs: int) -> float | tuple[float, float]:
        """The value(s) of a sample that is not evaluated (outside the budget, or diverged)."""
        return (0.0, float(macs)) if self.multi else 0.0

    def intermediate(self, score: float, macs: int, budget: int, w: float = MNAS_W) -> float:
        """What an epoch reports to the pruner (single objective only)."""
        return float(self.values(score, macs, budget, w))  # type: ignore[arg-type]


OBJECTIVES: dict[str, Objective] = {
    "window": Objective("window", ("maximize",),
                        "validation accuracy of nets with MACs in [lo, hi] x budget (hard)"),
    "reward": Objective("reward", ("maximize",),
                        "MnasNet reward ACC*(MACs/T)^w, T=budget"),
    "pareto": Objective("pareto", ("maximize", "minimize"),
                        "Pareto front of (validation accuracy, MACs)"),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective={name!r} is not allowed; expected one of {tuple(OBJECTIVES)}")
    return OBJECTIVES[name]


def set_budget_constraint(trial: Any, macs: int, budget: int, value: float | None = None
                          ) -> None:
    """Record ``value`` (default ``macs - budget``; feasible when <= 0, :func:`macs_status`) for
    the sampler and best_trial(s).

    A retried trial (Optuna's ``RetryFailedTrialCallback``) inherits its failed original's
    attributes, the constraint among them; Optuna keeps the first constraint value and warns
    on a second, so a trial whose user attrs already hold this value sets nothing again."""
    value = float(macs - budget) if value is None else float(value)
    if trial.user_attrs.get(CONSTRAINT) == value:
        return
    trial.set_user_attr(CONSTRAINT, value)
    if hasattr(trial, "set_constraint"):
        trial.set_constraint(CONSTRAINT, value)


def constraints_func(trial: Any) -> Sequence[float]:
    """For samplers of Optuna < 5, which read constraints through ``constraints_func``."""
    return (float(trial.user_attrs.get(CONSTRAINT, 0.0)),)


def needs_constraints_func() -> bool:
    import optuna

    return not hasattr(optuna.trial.Trial, "set_constraint")
