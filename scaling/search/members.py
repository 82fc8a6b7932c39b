"""Membership in a space: a given spec written as a trial's parameters, and back.

A space *contains* a net when some parameters, sampled through the space, rebuild it exactly
(Radosavovic et al. 2019 compare spaces by the nets they hold; a search can only beat the
hand-designed nets it compares with if it can express them). :func:`params_for` inverts
:func:`scaling.search.space.sample_spec`: the layout choices are read off the spec, the base
widths and the budget fraction are found by rebuilding; the params can be enqueued
(``study.enqueue_trial(params)``) or replayed (``optuna.trial.FixedTrial``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from scaling.ir import NetworkSpec
from scaling.ir.registry import BLOCK_TYPES
from scaling.search.space import (
    DEFAULT_SPACE,
    NET_KEYS,
    _choices,
    head_conv,
    patterns_for,
    sample_spec,
)


def same_spec(a: NetworkSpec, b: NetworkSpec) -> bool:
    """Whether ``a`` and ``b`` build the same net: every field but the labels name and family."""
    return a.replace(name="", family="").to_dict() == b.replace(name="", family="").to_dict()


def spec_from_params(params: Mapping[str, Any], space: Mapping[str, Any] | None = None, *,
                     resolution: int = 28, in_channels: int = 1, num_classes: int = 10,
                     budget: float | None = None) -> NetworkSpec:
    """The spec that a trial with ``params`` samples from ``space`` (Optuna's FixedTrial)."""
    import optuna

    return sample_spec(optuna.trial.FixedTrial(dict(params)), space, resolution, in_channels,
                       num_classes, budget=budget)


def _entry_values(entry: Any) -> list[Any] | None:
    """The finite values of a space entry (None: a range without a step)."""
    if isinstance(entry, Mapping):
        lo, hi, step = entry["low"], entry["high"], entry.get("step")
        if step is None:
            return list(range(lo, hi + 1)) if all(isinstance(v, int) for v in (lo, hi)) else None
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        return [round(lo + k * step, 10) for k in range(n)]
    return list(_choices(entry))


def _put(params: dict[str, Any], name: str, value: Any, entry: Any) -> None:
    """Record ``value`` as param ``name`` if ``entry`` lets the sampler choose it; ValueError
    naming the param when the space cannot take it."""
    values = _entry_values(entry)
    if values is None:
        if not entry["low"] <= value <= entry["high"]:
            raise ValueError(f"the space cannot express {name}={value!r}: its range is "
                             f"[{entry['low']}, {entry['high']}]")
    elif value not in values:
        raise ValueError(f"the space cannot express {name}={value!r}: its choices are {values}")
    else:
        value = values[values.index(value)]  # the space's own spelling (6, not 6.0)
    if isinstance(entry, Mapping) or (isinstance(entry, list) and len(entry) > 1):
        params[name] = value


def _layout_params(spec: NetworkSpec, space: Mapping[str, Any]) -> dict[str, Any]:
    """The params read off ``spec`` (all but the stage widths and the width fit)."""
    if len(spec.stages) != len(space["stages"]):
        raise ValueError(f"the space cannot express a net of {len(spec.stages)} stages; it has "
                         f"{len(space['stages'])}")
    params: dict[str, Any] = {}
    pattern = (",".join(map(str, spec.stem.strides)) + ":"
               + ",".join(str(s.stride) for s in spec.stages))
    _put(params, "strides", pattern, patterns_for(space, spec.resolution))
    acts = {spec.stem.activation, spec.head.activation, *(s.activation for s in spec.stages)}
    expanding = [s for s in spec.stages if BLOCK_TYPES[s.block].expansion_conv]  # not 'ds'
    ses = {s.se.ratio if s.se else 0 for s in expanding} or {0}
    mids = {s.mid_divisor for s in expanding} or {8}
    for key, values in (("activation", acts), ("se", ses), ("mid_divisor", mids)):
        if len(values) != 1:
            raise ValueError(f"the space cannot express a net with {key} {sorted(values)}: it "
                             "takes one per net")
    head = spec.head
    label = ("none" if head.channels is None else f"{head.channels_ratio:g}x"
             if head.channels_ratio else str(head.channels))
    net = space.get("net", {})
    found = {"activation": acts.pop(), "se": ses.pop(), "mid_divisor": mids.pop(),
             "head": label, "dropout": head.dropout}
    for key in NET_KEYS:
        entry = net.get(key)
        if key == "head" and entry is not None:  # labels compare by meaning: '4x' == '4.0x'
            entry = [str(v) for v in _choices(entry)]
            same = [v for v in entry if head_conv(v) == head_conv(label)]
            found[key] = same[0] if same else label
        if entry is not None:
            _put(params, key, found[key], entry)
    for i, (s, cfg) in enumerate(zip(spec.stages, space["stages"])):
        cfg = {**space.get("defaults", {}), **cfg}
        for key in ("block", "kernel", "repeats"):
            _put(params, f"s{i}_{key}", getattr(s, key), cfg[key])
        if BLOCK_TYPES[s.block].expansion_conv:
            _put(params, f"s{i}_expansion", s.expansion, cfg["expansion"])
    return params


def params_for(spec: NetworkSpec, space: Mapping[str, Any] | None = None, *,
               budget: float | None = None) -> dict[str, Any]:
    """Trial params with which ``space`` (default: :data:`DEFAULT_SPACE`) samples ``spec``
    (compared by :func:`same_spec`) at ``budget`` MACs (needed with ``fit_budget``); ValueError
    naming what the space cannot express. The widths and the budget fraction are searched by
    rebuilding, the fractions nearest to ``MACs / budget`` first."""
    from scaling.cost import complexity

    space = DEFAULT_SPACE if space is None else space
    params = _layout_params(spec, space)
    kw = {"resolution": spec.resolution, "in_channels": spec.in_channels,
          "num_classes": spec.num_classes, "budget": budget}
    fit = bool(space.get("fit_budget", False))
    if fit and not budget:
        raise ValueError("budget is required: the space fits the width to a fraction of it")
    key = "budget_fraction" if fit else "width_multiplier"
    entry = space.get(key, 1.0)
    values = _entry_values(entry)
    if fit:
        share = complexity(spec).macs / float(budget)  # type: ignore[arg-type]
        values = sorted(values or [share], key=lambda f: abs(math.log(f / share)))[:3]
    widths = [_entry_values({**space.get("defaults", {}), **s}["width"]) or []
              for s in space["stages"]]
    scale_guess = spec.stem.channels[0] / float(space.get("stem", {}).get("width", 32))

    def distance(combo: tuple[int, ...]) -> float:  # the likeliest base widths first
        return sum(abs(math.log(max(s.out_channels, 1) / max(w * scale_guess, 1e-9)))
                   for s, w in zip(spec.stages, combo))

    for combo in sorted(itertools.product(*widths), key=distance):
        trial = dict(params)
        for i, w in enumerate(combo):
            if len(widths[i]) > 1:
                trial[f"s{i}_width"] = w
        for value in values or []:
            if isinstance(entry, Mapping) or (isinstance(entry, list) and len(entry) > 1):
                trial[key] = value
            if same_spec(spec_from_params(trial, space, **kw), spec):
                return trial
    raise ValueError(f"the space cannot express the widths of {spec.name or 'the spec'}: no "
                     f"base widths of {widths} and {key} of {_entry_values(entry)} rebuild its "
                     f"channels {[s.out_channels for s in spec.stages]}")


def space_size(space: Mapping[str, Any], resolution: int = 28) -> float:
    """How many architectures the space holds at ``resolution``: the product of every choice,
    a ``ds`` stage without its expansion; the budget fraction or width multiplier not counted
    (inf where a range has no step)."""
    def count(entry: Any) -> float:
        values = _entry_values(entry)
        return math.inf if values is None else len(values)

    total = float(len(patterns_for(space, resolution)))
    net = space.get("net", {})
    for key in NET_KEYS:
        total *= count(net.get(key, 0))
    for stage in space["stages"]:
        cfg = {**space.get("defaults", {}), **stage}
        per_block = count(cfg["kernel"]) * count(cfg["repeats"]) * count(cfg["width"])
        total *= sum(per_block * (1 if b == "ds" else count(cfg["expansion"]))
                     for b in _choices(cfg["block"]))
    return total
