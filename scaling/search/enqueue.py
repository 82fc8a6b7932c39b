"""Start from the known: zoo families fitted to the search's budget and evaluated as its first
trials (``--enqueue NAME[,NAME]``), so the search can only improve on the best hand-designed net
it was given.

Each family is adapted to the search's input as the study adapts its hand families (a stem with
a pool loses the pool, one without one runs at stride 1, below :data:`SMALL_INPUT` pixels), then
its width is fitted to the budget by :func:`scaling.compound.match.fit_width` (channel divisors
8, 4, 2, 1, then diffused rounding: the study's fitter) at the middle of the feasible MAC range
(:func:`fit_target`). The fitted spec enters the study through ``study.enqueue_trial``:

- when the space can express it (:func:`scaling.search.members.params_for`
  whose parameters rebuild exactly that spec), as those parameters: the sampler learns from it
  like from any trial;
- otherwise with no parameters and the spec in the user attr ``fixed_spec``: the objective
  evaluates that spec (:func:`scaling.search.evaluators.make_objective`), the trial records its
  real spec and MACs, and the sampler, which models parameters, learns nothing from it (TPE
  samples each parameter from the trials that hold it; NSGA-II's intersection space becomes
  empty, so prefer TPE or random with fixed-spec trials). ``study.best_trial`` and the
  re-evaluation include it like any other trial.

Either way the trial carries the user attr ``enqueued`` (the zoo name) and counts toward
``--trials``; a resumed study does not enqueue a name twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from scaling.search.objectives import get_objective

#: inputs below this many pixels get the small-input stem (as the study's hand families)
SMALL_INPUT = 64
#: relative MAC tolerance of the fit for objectives without a window (the target is 5% below
#: the budget, so a fit within it stays within the budget)
FIT_TOL = 0.05


def family_root(name: str, resolution: int, in_channels: int, num_classes: int) -> Any:
    """The width-1 spec of zoo model ``name`` at the search's input: a small input
    (< :data:`SMALL_INPUT`) drops a stem pool (ResNet, ShuffleNet) or, with none, makes the stem
    stride 1 (MobileNet, EfficientNet), as ``scaling/study/plan.py``'s roots; no drop path."""
    from scaling.zoo import get_spec

    kw: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_channels,
                          "resolution": resolution, "drop_path_rate": 0.0}
    if resolution < SMALL_INPUT:
        if get_spec(name).stem.pool:
            kw["stem_pool"] = None
        else:
            kw["small_input"] = True
    return get_spec(name, **kw)


def fit_target(cfg: Any) -> tuple[float, float]:
    """``(target MACs, tolerance)`` of the fit: the window's middle and half its width (window
    objective), else 5% below the budget within :data:`FIT_TOL`."""
    if get_objective(cfg.objective).name == "window":
        lo, hi = cfg.window
        return cfg.budget * (lo + hi) / 2, (hi - lo) / (hi + lo)
    return cfg.budget * (1 - FIT_TOL), FIT_TOL


def fit_family(name: str, cfg: Any, in_channels: int, num_classes: int) -> Any:
    """``name``'s root (:func:`family_root`) with its width fitted to :func:`fit_target`: the
    first channel divisor landing within the tolerance, else the closest fit (a
    :class:`scaling.compound.match.Fit`; its MACs may then fall outside the feasible range, and
    the trial says so)."""
    from scaling.compound.match import fit_width

    root = family_root(name, cfg.resolution, in_channels, num_classes)
    target, tol = fit_target(cfg)
    label = f"{name} (enqueued)"
    try:
        return fit_width(root, target, tol=tol, diffuse=True, name=label)
    except ValueError:
        return fit_width(root, target, tol=None, diffuse=True, name=label)


def space_params(spec: Any, cfg: Any, in_channels: int, num_classes: int) -> dict[str, Any] | None:
    """The trial parameters of ``cfg.space`` that rebuild ``spec`` exactly, or None:
    :func:`scaling.search.members.params_for`, checked by rebuilding the spec from them
    (``optuna.trial.FixedTrial``); None when the space cannot express the spec or its parameters
    build another net."""
    import optuna

    from scaling.search.members import params_for, same_spec
    from scaling.search.space import sample_spec

    try:
        params = params_for(spec, cfg.space, budget=cfg.budget)
        rebuilt = sample_spec(optuna.trial.FixedTrial(dict(params)), cfg.space, cfg.resolution,
                              in_channels, num_classes, budget=cfg.budget)
    except (ValueError, TypeError, KeyError):
        return None
    return dict(params) if same_spec(rebuilt, spec) else None


def enqueue_families(study: Any, cfg: Any, in_channels: int, num_classes: int,
                     emit: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
    """Enqueue each of ``cfg.enqueue`` not yet in ``study`` (module docstring); returns one
    record per family enqueued now: name, width, divisor, MACs, and ``how`` (``params`` or
    ``fixed_spec``)."""
    from scaling.cost.units import format_macs

    present = {t.user_attrs.get("enqueued") for t in study.get_trials(deepcopy=False)}
    done = []
    for name in cfg.enqueue:
        if name in present:
            continue
        fit = fit_family(name, cfg, in_channels, num_classes)
        params = space_params(fit.spec, cfg, in_channels, num_classes)
        attrs: dict[str, Any] = {"enqueued": name, "enqueued_width": fit.knob,
                                 "enqueued_divisor": fit.divisor}
        if params is None:
            attrs["fixed_spec"] = fit.spec.to_json(indent=None)
        study.enqueue_trial(params or {}, user_attrs=attrs)
        how = "params" if params is not None else "fixed_spec"
        emit(f"enqueued {name}: width x{fit.knob:g} (divisor {fit.divisor}, {fit.rounding} "
             f"rounding), {format_macs(fit.macs)} MACs, as "
             f"{'the space parameters' if params is not None else 'a fixed spec'}")
        if params is None and cfg.sampler == "nsga2":
            emit(f"warning: NSGA-II learns nothing from the fixed-spec trial of {name}, and its "
                 "shared search space becomes empty (every parameter sampled independently); "
                 "prefer --sampler tpe")
        done.append({"name": name, "width": fit.knob, "divisor": fit.divisor, "macs": fit.macs,
                     "how": how})
    return done
