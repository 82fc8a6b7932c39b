"""Search objectives and the MAC budget.

- ``reward`` (single objective, maximise): the MnasNet reward (Tan et al. 2019, eq. 2)
  ``ACC * (MACs / T) ** w`` with ``w = -0.07`` and the target T = the budget.
- ``pareto`` (two objectives): maximise validation accuracy, minimise MACs; the report is the
  Pareto front (``study.best_trials``).

The budget is a hard constraint on analytic MACs (:func:`scaling.cost.complexity.complexity`),
computed before anything is built. An over-budget sample is never built or trained: the trial
records the constraint ``MACs - budget > 0`` (``trial.set_constraint``, Optuna >= 5; older Optuna
gets it through the sampler's ``constraints_func``) and completes with the penalty value (reward
0, or accuracy 0 at its MACs). TPE and NSGA-II rank infeasible trials below every feasible one,
and ``study.best_trial`` / ``best_trials`` consider feasible trials only, so the penalty never
wins; we chose this over pruning because it tells the sampler *why* the point is bad.

With the zero-cost evaluator a proxy score takes accuracy's place in both objectives.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MNAS_W = -0.07
CONSTRAINT = "macs_over_budget"
_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:e(\d+))?\s*([kmgt]?)\s*(?:macs?)?\s*$",
                        re.IGNORECASE)


def parse_budget(text: Any) -> int:
    """'10M' -> 10_000_000, '1.5G' -> 1_500_000_000, '400000000' -> 400_000_000 (MACs)."""
    if isinstance(text, bool):
        raise ValueError(f"budget={text!r} is not a MAC count")
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        m = _BUDGET_RE.match(str(text))
        if not m:
            raise ValueError(f"budget={text!r} is not a MAC count; expected e.g. 10M, 1.5G or "
                             "400000000")
        value = float(m.group(1)) * 10 ** int(m.group(2) or 0) * _UNITS[m.group(3).lower()]
    if not math.isfinite(value) or value < 1:
        raise ValueError(f"budget={text!r} is not allowed; expected at least 1 MAC")
    return int(round(value))


def format_macs(macs: float) -> str:
    """A short human form: 7.52M, 1.23G, 950K."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(macs) >= scale:
            return f"{macs / scale:.3g}{unit}"
    return f"{macs:.0f}"


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
        return (float(score), float(macs))

    def penalty(self, macs: int) -> float | tuple[float, float]:
        """The value(s) of a sample that is not evaluated (over budget, or diverged)."""
        return 0.0 if self.name == "reward" else (0.0, float(macs))

    def intermediate(self, score: float, macs: int, budget: int, w: float = MNAS_W) -> float:
        """What an epoch reports to the pruner (single objective only)."""
        return float(self.values(score, macs, budget, w))  # type: ignore[arg-type]


OBJECTIVES: dict[str, Objective] = {
    "reward": Objective("reward", ("maximize",),
                        "MnasNet reward ACC*(MACs/T)^w, w=-0.07, T=budget"),
    "pareto": Objective("pareto", ("maximize", "minimize"),
                        "Pareto front of (validation accuracy, MACs)"),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective={name!r} is not allowed; expected one of {tuple(OBJECTIVES)}")
    return OBJECTIVES[name]


def set_budget_constraint(trial: Any, macs: int, budget: int) -> None:
    """Record ``macs - budget`` (feasible when <= 0) for the sampler and best_trial(s).

    A retried trial (Optuna's ``RetryFailedTrialCallback``) inherits its failed original's
    attributes, the constraint among them; Optuna keeps the first constraint value and warns
    on a second, so a trial whose user attrs already hold this value sets nothing again."""
    value = float(macs - budget)
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
