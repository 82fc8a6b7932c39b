"""The search space as data: a factorized per-stage space over the IR (Tan et al. 2019, MnasNet;
Tan & Le 2019, EfficientNet), sampled by an Optuna trial into a
:class:`~scaling.ir.spec.NetworkSpec`.

A space is a plain mapping (YAML/JSON-editable; ``python -m scaling.search --print-space`` dumps
the default). Every value is one of:

- a scalar: fixed, not searched;
- a list: a categorical choice (``trial.suggest_categorical``);
- a mapping ``{low, high[, step][, log]}``: an int or float range.

Keys: ``defaults`` holds the per-stage choices (block type, kernel, expansion, SE ratio with 0 =
off, activation, MnasNet's per-stage ``width_factor``, repeats); each entry of ``stages`` gives a
stage's base ``width`` (channels at multiplier 1) and may override any default. ``strides`` maps
an input resolution to the candidate stride patterns ``"stem strides:stage strides"``, e.g.
``"1:1,2,2,2,1,2,1"`` (stride-1 stem for 28x28 and 32x32, EfficientNet-B0's ``"2:1,2,2,2,1,2,1"``
at 224); a resolution not listed gets one pattern fitted by :func:`auto_pattern`.

Width: with ``fit_budget`` (the default) the trial samples ``budget_fraction`` f and the width
multiplier is the largest one in ``width_range`` whose analytic MACs are <= f * budget (MACs are
monotone in the multiplier because channel rounding is); otherwise it samples
``width_multiplier``. Channels are ``make_divisible(width * width_factor * multiplier,
channel_divisor)``. When even the smallest width is over the budget, the rungs of ``shrink`` (a
list of caps on repeats, kernel, expansion, SE, head, and earlier stride-2 steps; absent: the
default ladder, ``[]``: off) are applied until it fits (:mod:`scaling.search.fitting`).

Recipe (optional key ``recipe``): the training recipe searched beside the architecture, any of
:data:`RECIPE_KEYS` (the :class:`~scaling.train.config.TrainConfig` fields ``optimizer``, ``lr``,
``weight_decay``, ``batch_size``, ``label_smoothing``, ``warmup``). ``lr`` and ``weight_decay``
may be one entry or a mapping from optimizer to an entry (their scales differ ~100x). A key that
is absent keeps the search's fixed recipe (:class:`~scaling.search.config.SearchConfig`), so a
space without ``recipe`` samples exactly what it did before; :data:`RECIPE_SPACE` is the
recommended one (ranges from ``experiments/recipe_sweep.py``, results/recipe_sweep/README.md).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from scaling.ir import HeadSpec, NetworkSpec, SESpec, StageSpec, StemSpec, make_divisible
from scaling.ir.base import is_int, is_number
from scaling.search.fitting import (
    check_entry,
    fit_floor,
    fit_multiplier,
    ladder_of,
    validate_shrink,
)

BLOCKS = ("mbconv", "fused_mbconv", "ds")
#: the keys a space may have at its top level (an unknown one is a typo, refused)
SPACE_KEYS = ("name", "channel_divisor", "mid_divisor", "fit_budget", "budget_fraction",
              "width_range", "width_multiplier", "stem", "head", "defaults", "stages",
              "strides", "recipe", "shrink")
STAGE_KEYS = ("block", "kernel", "expansion", "se", "activation", "width_factor", "repeats",
              "width")

DEFAULT_SPACE: dict[str, Any] = {
    "name": "mnasnet-factorized",
    "channel_divisor": 8,
    "mid_divisor": 8,
    "fit_budget": True,
    "budget_fraction": {"low": 0.5, "high": 1.0, "step": 0.05},
    "width_range": [0.05, 4.0],
    "width_multiplier": [0.25, 0.35, 0.5, 0.75, 1.0, 1.25],
    "stem": {"width": 32, "kernel": 3},
    "head": {"ratio": [0, 2, 4], "dropout": 0.2},
    "defaults": {
        "block": list(BLOCKS),
        "kernel": [3, 5, 7],
        "expansion": [1, 3, 4, 6],
        "se": [0, 0.25],
        "activation": ["relu", "hswish", "silu"],
        "width_factor": [0.75, 1.0, 1.25],
        "repeats": [1, 2, 3],
    },
    # EfficientNet-B0's base widths; depth choices around its repeats (1, 2, 2, 3, 3, 4, 1); its
    # first stage is a plain depthwise-separable block (e=1); small kernels where maps are large.
    "stages": [
        {"width": 16, "repeats": [1, 2], "block": ["mbconv", "ds"], "expansion": [1]},
        {"width": 24, "kernel": [3, 5]},
        {"width": 40},
        {"width": 80},
        {"width": 112},
        {"width": 192, "repeats": [1, 2, 3, 4]},
        {"width": 320, "repeats": [1, 2]},
    ],
    "strides": {
        28: ["1:1,2,2,2,1,2,1", "1:1,2,2,1,1,2,1", "2:1,1,2,1,1,2,1"],
        32: ["1:1,2,2,2,1,2,1", "1:1,2,2,1,1,2,1", "2:1,1,2,1,1,2,1"],
        224: ["2:1,2,2,2,1,2,1"],
    },
}


RECIPE_KEYS = ("optimizer", "lr", "weight_decay", "batch_size", "label_smoothing", "warmup")
RECIPE_OPTIMIZERS = ("sgd", "adamw")
PER_OPTIMIZER = ("lr", "weight_decay")
RECIPE_SPACE: dict[str, Any] = {
    "optimizer": ["sgd", "adamw"],
    "lr": {"sgd": {"low": 0.02, "high": 0.4, "log": True},
           "adamw": {"low": 5e-4, "high": 1e-2, "log": True}},
    "weight_decay": {"sgd": {"low": 1e-5, "high": 1e-3, "log": True},
                     "adamw": {"low": 1e-3, "high": 0.1, "log": True}},
    "batch_size": [32, 64, 128, 256],
    "label_smoothing": [0.0, 0.1],
    "warmup": {"low": 0.0, "high": 0.2},
}


def default_space() -> dict[str, Any]:
    """A deep copy of :data:`DEFAULT_SPACE` (callers may edit it)."""
    return copy.deepcopy(DEFAULT_SPACE)


def load_space(source: str | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A validated space from a mapping, a .yaml/.yml/.json path, or None (the default)."""
    if source is None:
        space = default_space()
    elif isinstance(source, Mapping):
        space = copy.deepcopy(dict(source))
    elif isinstance(source, str):
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ValueError(f"space={source!r} cannot be read: {exc.strerror}") from None
        if source.endswith(".json"):
            space = json.loads(text)
        else:
            import yaml

            space = yaml.safe_load(text)
    else:
        raise TypeError(f"space must be a mapping, a path or None, got {type(source).__name__}")
    validate_space(space)
    return space


def _check_value(where: str, value: Any) -> None:
    if isinstance(value, list):
        if not value:
            raise ValueError(f"space.{where}=[] is not allowed; expected at least one choice")
    elif isinstance(value, Mapping):
        if not {"low", "high"} <= set(value) or not set(value) <= {"low", "high", "step", "log"}:
            raise ValueError(f"space.{where}={dict(value)!r} is not allowed; a range is "
                             "{low, high[, step][, log]}")
        if value["low"] > value["high"]:
            raise ValueError(f"space.{where}: low={value['low']} exceeds high={value['high']}")


def _choices(value: Any) -> list[Any]:
    """Every value a space entry can take (ranges: their two ends)."""
    if isinstance(value, list):
        return value
    if isinstance(value, Mapping):
        return [value["low"], value["high"]]
    return [value]


def validate_space(space: Any) -> None:
    """Raise ValueError/TypeError naming the key unless ``space`` is a usable space."""
    if not isinstance(space, Mapping):
        raise TypeError(f"space must be a mapping, got {type(space).__name__}")
    check_entry("space", space, SPACE_KEYS)
    stages = space.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError("space.stages must be a non-empty list of stage mappings")
    defaults = space.get("defaults", {})
    for i, stage in enumerate(stages):
        check_entry(f"space.stages[{i}]", stage, STAGE_KEYS)
        merged = {**defaults, **stage}
        for key in STAGE_KEYS:
            if key not in merged:
                raise ValueError(f"space.stages[{i}].{key} is missing (and not in defaults)")
            _check_value(f"stages[{i}].{key}", merged[key])
        for block in _choices(merged["block"]):
            if block not in BLOCKS:
                raise ValueError(f"space.stages[{i}].block={block!r} is not allowed; expected "
                                 f"one of {BLOCKS}")
    for key in ("budget_fraction", "width_multiplier"):
        if key in space:
            _check_value(key, space[key])
    for key in ("channel_divisor", "mid_divisor"):
        v = space.get(key, 8)
        if not is_int(v) or v < 1:
            raise ValueError(f"space.{key}={v!r} is not allowed; expected an int >= 1")
    if space.get("recipe") is not None:
        validate_recipe(space["recipe"])
    if space.get("shrink") is not None:
        validate_shrink(space["shrink"])
    for res, patterns in (space.get("strides") or {}).items():
        for p in _choices(patterns):
            stem, stage_strides = parse_pattern(p)
            if len(stage_strides) != len(stages):
                raise ValueError(f"space.strides[{res}]={p!r} has {len(stage_strides)} stage "
                                 f"strides; expected {len(stages)} (one per stage)")


def validate_recipe(recipe: Any) -> None:
    """Raise ValueError/TypeError naming the key unless ``recipe`` is a usable recipe space."""
    if not isinstance(recipe, Mapping):
        raise TypeError(f"space.recipe must be a mapping, got {type(recipe).__name__}")
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise ValueError(f"space.recipe: unknown key(s) {unknown}; allowed: {list(RECIPE_KEYS)}")
    for key, value in recipe.items():
        per = isinstance(value, Mapping) and not {"low", "high"} & set(value)
        if per and key not in PER_OPTIMIZER:
            raise ValueError(f"space.recipe.{key}={dict(value)!r} is not allowed; only "
                             f"{PER_OPTIMIZER} may be given per optimizer")
        for opt, entry in (value.items() if per else [(None, value)]):
            where = f"recipe.{key}" + (f".{opt}" if opt else "")
            if opt is not None and opt not in RECIPE_OPTIMIZERS:
                raise ValueError(f"space.{where}: optimizer {opt!r} is not allowed; expected one "
                                 f"of {RECIPE_OPTIMIZERS}")
            _check_value(where, entry)
            for v in _choices(entry):
                if key == "optimizer" and v not in RECIPE_OPTIMIZERS:
                    raise ValueError(f"space.{where}={v!r} is not allowed; expected one of "
                                     f"{RECIPE_OPTIMIZERS}")
                if key != "optimizer" and (not is_number(v)
                                           or v < 0 or (key == "batch_size" and v < 1)
                                           or (key in ("label_smoothing", "warmup") and v >= 1)):
                    bound = {"batch_size": ">= 1", "label_smoothing": "in [0, 1)",
                             "warmup": "in [0, 1)"}.get(key, ">= 0")
                    raise ValueError(f"space.{where}={v!r} is not allowed; expected a number "
                                     f"{bound}")


def parse_pattern(pattern: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``"1:1,2,2"`` -> ((1,), (1, 2, 2)): stem strides, then one stride per stage."""
    try:
        stem, stages = str(pattern).split(":")
        out = (tuple(int(s) for s in stem.split(",")), tuple(int(s) for s in stages.split(",")))
    except ValueError:
        raise ValueError(f"stride pattern {pattern!r} is not allowed; expected "
                         "'stem strides:stage strides', e.g. '1:1,2,2,1'") from None
    if any(s not in (1, 2) for s in out[0] + out[1]):
        raise ValueError(f"stride pattern {pattern!r} is not allowed; strides must be 1 or 2")
    return out


def auto_pattern(resolution: int, num_stages: int, final: int = 7) -> str:
    """A stride pattern for a resolution the space does not list: a stride-2 stem from 64 px,
    then stride-2 stages (EfficientNet-B0's order of preference) while the map is > final."""
    stem = 2 if resolution >= 64 else 1
    size = -(-resolution // stem)
    strides = [1] * num_stages
    order = [i for i in (1, 2, 3, 5, 4, 6, 0) if i < num_stages]
    order += [i for i in range(num_stages) if i not in order]
    for i in order:
        if size <= final:
            break
        strides[i] = 2
        size = -(-size // 2)
    return f"{stem}:" + ",".join(map(str, strides))


def patterns_for(space: Mapping[str, Any], resolution: int) -> list[str]:
    table = {int(k): v for k, v in (space.get("strides") or {}).items()}
    if resolution in table:
        return [str(p) for p in _choices(table[resolution])]
    return [auto_pattern(resolution, len(space["stages"]))]


def suggest(trial: Any, name: str, value: Any) -> Any:
    """Sample one space entry: fixed scalar, categorical list, or {low, high, step, log} range."""
    if isinstance(value, list):
        if len(value) == 1:
            return value[0]
        return trial.suggest_categorical(name, value)
    if isinstance(value, Mapping):
        lo, hi = value["low"], value["high"]
        step, log = value.get("step"), bool(value.get("log", False))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, step or 1)):
            return trial.suggest_int(name, lo, hi, step=step or 1, log=log)
        return trial.suggest_float(name, float(lo), float(hi), step=step, log=log)
    return value


def _sample_stages(trial: Any, space: Mapping[str, Any]) -> list[dict[str, Any]]:
    defaults = space.get("defaults", {})
    arch = []
    for i, stage in enumerate(space["stages"]):
        cfg = {**defaults, **stage}
        a = {"block": suggest(trial, f"s{i}_block", cfg["block"]),
             "kernel": suggest(trial, f"s{i}_kernel", cfg["kernel"]),
             "repeats": suggest(trial, f"s{i}_repeats", cfg["repeats"]),
             "activation": suggest(trial, f"s{i}_activation", cfg["activation"]),
             "width_factor": suggest(trial, f"s{i}_width_factor", cfg["width_factor"]),
             "width": cfg["width"], "expansion": 1, "se": 0}
        if a["block"] != "ds":  # ds (MobileNetV1) has neither expansion nor SE
            a["expansion"] = suggest(trial, f"s{i}_expansion", cfg["expansion"])
            a["se"] = suggest(trial, f"s{i}_se", cfg["se"])
        arch.append(a)
    return arch


def assemble(space: Mapping[str, Any], arch: list[dict[str, Any]], pattern: str, head_ratio: float,
             multiplier: float, *, resolution: int, in_channels: int, num_classes: int,
             name: str = "") -> NetworkSpec:
    """The spec of sampled stage choices ``arch`` at width ``multiplier``."""
    div = space.get("channel_divisor", 8)
    stem_strides, stage_strides = parse_pattern(pattern)
    stem_cfg = space.get("stem", {})

    def ch(width: float) -> int:
        return make_divisible(width * multiplier, div)

    first_act = arch[0]["activation"]
    n_stem = len(stem_strides)
    stem = StemSpec(channels=(ch(stem_cfg.get("width", 32)),) * n_stem,
                    kernels=(stem_cfg.get("kernel", 3),) * n_stem, strides=stem_strides,
                    activation=first_act)
    stages = []
    for a, stride in zip(arch, stage_strides):
        se = SESpec(ratio=float(a["se"]), base="in", activation="relu") if a["se"] else None
        stages.append(StageSpec(
            block=a["block"], repeats=int(a["repeats"]),
            out_channels=ch(a["width"] * a["width_factor"]), kernel=int(a["kernel"]),
            stride=stride, expansion=float(a["expansion"]),
            mid_divisor=space.get("mid_divisor", 8), se=se, activation=a["activation"]))
    last = stages[-1].out_channels
    head_cfg = space.get("head", {})
    head = HeadSpec(channels=int(round(head_ratio * last)) if head_ratio else None,
                    channels_ratio=float(head_ratio) if head_ratio else None,
                    activation=arch[-1]["activation"], dropout=float(head_cfg.get("dropout", 0.0)))
    return NetworkSpec(stages=tuple(stages), stem=stem, head=head, in_channels=in_channels,
                       resolution=resolution, num_classes=num_classes, name=name,
                       family="search")


def sample_spec(trial: Any, space: Mapping[str, Any] | None = None, resolution: int = 28,
                in_channels: int = 1, num_classes: int = 10, budget: float | None = None
                ) -> NetworkSpec:
    """Sample a valid spec from ``space`` with ``trial`` (an Optuna Trial or anything with the
    ``suggest_*`` methods). With ``fit_budget`` and a ``budget`` (MACs), the width multiplier
    fills the sampled fraction of the budget, after the shrink ladder lowered a floor over the
    budget; the multiplier and the rungs applied go to user attrs when possible."""
    space = DEFAULT_SPACE if space is None else space
    patterns = patterns_for(space, resolution)
    pattern = suggest(trial, "strides", patterns)
    arch = _sample_stages(trial, space)
    head_ratio = suggest(trial, "head_ratio", space.get("head", {}).get("ratio", 0))

    def make(arch: list[dict[str, Any]], pattern: str, head_ratio: float, m: float
             ) -> NetworkSpec:
        return assemble(space, arch, pattern, head_ratio, m, resolution=resolution,
                        in_channels=in_channels, num_classes=num_classes,
                        name=f"search-{getattr(trial, 'number', 0)}")

    choices = (arch, pattern, head_ratio)
    if space.get("fit_budget", False) and budget:
        frac = suggest(trial, "budget_fraction", space.get("budget_fraction", 1.0))
        lo, hi = (float(v) for v in space.get("width_range", [0.05, 4.0]))
        rungs, caps, choices = fit_floor(make, *choices, budget, lo, ladder_of(space))
        m = fit_multiplier(lambda m: make(*choices, m), frac * budget, lo, hi)
        if hasattr(trial, "set_user_attr"):
            trial.set_user_attr("shrink", rungs)
            if rungs:
                trial.set_user_attr("shrink_caps", {**caps, "strides": choices[1]})
    else:
        m = float(suggest(trial, "width_multiplier", space.get("width_multiplier", 1.0)))
    if hasattr(trial, "set_user_attr"):
        trial.set_user_attr("width_multiplier", round(m, 6))
    return make(*choices, m)


def sample_recipe(trial: Any, space: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The training recipe of ``space['recipe']`` sampled with ``trial`` (params ``recipe_<key>``,
    per-optimizer entries ``recipe_<key>_<optimizer>``), stored as the user attr ``recipe``; only
    the keys the space holds (none: ``{}``, the fixed recipe, and no parameter is sampled)."""
    entries = (space or {}).get("recipe") or {}
    recipe: dict[str, Any] = {}
    if "optimizer" in entries:
        recipe["optimizer"] = suggest(trial, "recipe_optimizer", entries["optimizer"])
    for key in RECIPE_KEYS[1:]:
        if key not in entries:
            continue
        value = entries[key]
        if isinstance(value, Mapping) and not {"low", "high"} & set(value):
            opt = recipe.get("optimizer", "sgd")
            if opt not in value:
                continue  # no entry for this optimizer: its default (TrainConfig)
            recipe[key] = suggest(trial, f"recipe_{key}_{opt}", value[opt])
        else:
            recipe[key] = suggest(trial, f"recipe_{key}", value)
    recipe = {k: (int(v) if k == "batch_size" else v if k == "optimizer" else float(v))
              for k, v in recipe.items()}
    if recipe and hasattr(trial, "set_user_attr"):
        trial.set_user_attr("recipe", recipe)
    return recipe
