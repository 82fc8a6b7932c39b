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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scaling.cost.units import format_macs, parse_budget  # noqa: F401 (the search's API)

MNAS_W = -0.07
CONSTRAINT = "macs_over_budget"
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
