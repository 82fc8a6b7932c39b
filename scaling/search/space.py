"""The search space as data: MobileNetV2 / EfficientNet-B0-style nets of MBConv stages over the IR
(Sandler et al. 2018; Tan et al. 2019, MnasNet; Tan & Le 2019), sampled by an Optuna trial into a
:class:`~scaling.ir.spec.NetworkSpec`.

A space is a plain mapping (YAML/JSON-editable; ``python -m scaling.search --print-space`` dumps
the default). Every value is one of:

- a scalar: fixed, not searched;
- a list: a categorical choice (``trial.suggest_categorical``);
- a mapping ``{low, high[, step][, log]}``: an int or float range.

Keys: ``net`` holds the choices made once per net (activation, SE ratio with 0 = off, the
expanded channels' divisor, the head conv, the head dropout); ``defaults`` the per-stage choices
(block type, kernel, expansion, repeats); each entry of ``stages`` gives a stage's base ``width``
(channels at multiplier 1; a list: a choice) and may override any default. ``strides`` maps an
input resolution to the candidate stride patterns ``"stem strides:stage strides"``, e.g.
``"1:1,2,2,2,1,2,1"`` (stride-1 stem for 28x28 and 32x32, EfficientNet-B0's ``"2:1,2,2,2,1,2,1"``
at 224); a resolution not listed gets one pattern fitted by :func:`auto_pattern`.

A sample is first a width-1 *root* spec (:func:`assemble`), then scaled in width exactly as the
study scales a hand-designed family (:mod:`scaling.search.fitting`): with ``fit_budget`` (the
default) the trial samples ``budget_fraction`` f and the width is fitted to f x budget by
:func:`scaling.compound.match.fit_width` (channel divisors ``channel_divisor`` in turn, the first
within ``mac_tol``); otherwise it samples ``width_multiplier``. Nothing the trial sampled is
changed afterwards; the realised width and divisor are a function of the sampled parameters
(user attrs ``width_multiplier`` and ``channel_divisor``), and a sample that cannot fit is
rejected by the budget check, not altered.

Recipe (optional key ``recipe``): the training recipe searched beside the architecture, any of
:data:`RECIPE_KEYS` (the :class:`~scaling.train.config.TrainConfig` fields ``optimizer``, ``lr``,
``weight_decay``, ``batch_size``, ``label_smoothing``, ``warmup``). ``lr`` and ``weight_decay``
may be one entry or a mapping from optimizer to an entry (their scales differ ~100x). A key that
is absent keeps the search's fixed recipe (:class:`~scaling.search.config.SearchConfig`);
:data:`RECIPE_SPACE` is the recommended one (``experiments/recipe_sweep.py``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from scaling.ir import HeadSpec, NetworkSpec, SESpec, StageSpec, StemSpec
from scaling.ir.base import is_int, is_number
from scaling.search.fitting import (
    at_width,
    check_entry,
    divisors_of,
    fit_multiplier,  # noqa: F401 (experiments use it)
    fit_to_budget,
)
from scaling.search.strides import auto_pattern, parse_pattern, patterns_for  # noqa: F401

BLOCKS = ("mbconv", "fused_mbconv", "ds")
#: the keys a space may have at its top level (an unknown one is a typo, refused)
SPACE_KEYS = ("name", "channel_divisor", "mac_tol", "fit_budget", "budget_fraction",
              "width_range", "width_multiplier", "stem", "net", "defaults", "stages",
              "strides", "recipe")
STAGE_KEYS = ("block", "kernel", "expansion", "repeats", "width")
#: the choices made once per net (trial params of the same names)
NET_KEYS = ("activation", "se", "mid_divisor", "head", "dropout")
ACTIVATIONS = ("relu", "relu6", "hswish", "silu", "gelu")

DEFAULT_SPACE: dict[str, Any] = {
    "name": "mbconv-families",
    "channel_divisor": [8, 4, 2, 1],
    "mac_tol": 0.05,
    "fit_budget": True,
    "budget_fraction": {"low": 0.5, "high": 1.0, "step": 0.05},
    "width_range": [0.02, 8.0],
    "width_multiplier": [0.25, 0.35, 0.5, 0.75, 1.0, 1.25],
    "stem": {"width": 32, "kernel": 3},
    # once per net: MobileNetV2 is relu6, no SE, unrounded expansion (divisor 1), a 1280-channel
    # head; EfficientNet-B0 is SiLU, SE 0.25, expansion rounded to 8, a head of 4x the last stage
    "net": {"activation": ["relu6", "hswish", "silu"], "se": [0, 0.25], "mid_divisor": [1, 8],
            "head": ["none", "4x", "1280"], "dropout": 0.2},
    "defaults": {"block": list(BLOCKS), "kernel": [3, 5], "expansion": [3, 4, 6],
                 "repeats": [1, 2, 3]},
    # base widths: MobileNetV2's or EfficientNet-B0's where they differ; repeats around both
    # (MobileNetV2 1,2,3,4,3,3,1; B0 1,2,2,3,3,4,1); the first stage is a depthwise-separable
    # block (e=1) in both; the last stage sees a 2x2 map at 28 px, where k=3 already spans it.
    "stages": [
        {"width": 16, "repeats": [1, 2], "block": ["mbconv", "ds"], "expansion": [1]},
        {"width": 24},
        {"width": [32, 40]},
        {"width": [64, 80], "repeats": [1, 2, 3, 4]},
        {"width": [96, 112]},
        {"width": [160, 192], "repeats": [1, 2, 3, 4]},
        {"width": 320, "repeats": [1, 2], "kernel": [3]},
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


def _check_all(where: str, value: Any, ok: Any, allowed: str) -> None:
    _check_value(where, value)
    for v in _choices(value):
        if not ok(v):
            raise ValueError(f"space.{where}={v!r} is not allowed; expected {allowed}")


def head_conv(label: Any) -> tuple[int | None, float | None]:
    """A head choice -> (channels, ratio): ``"none"`` (no head conv), ``"4x"`` (4 x the last
    stage's channels, scaled with the width: EfficientNet) or ``"1280"`` (1280 channels at every
    width <= 1: MobileNetV2's ``max(1280, 1280 w)``)."""
    text = str(label)
    try:
        if text == "none":
            return None, None
        if text.endswith("x") and float(text[:-1]) > 0:
            return None, float(text[:-1])
        if int(text) > 0:
            return int(text), None
    except ValueError:
        pass
    raise ValueError(f"space.net.head={label!r} is not allowed; expected 'none', a ratio such as "
                     "'4x' or a channel count such as '1280'")


def validate_space(space: Any) -> None:
    """Raise ValueError/TypeError naming the key unless ``space`` is a usable space."""
    if not isinstance(space, Mapping):
        raise TypeError(f"space must be a mapping, got {type(space).__name__}")
    check_entry("space", space, SPACE_KEYS)
    stages = space.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError("space.stages must be a non-empty list of stage mappings")
    defaults = space.get("defaults", {})
    check_entry("space.defaults", defaults, STAGE_KEYS)
    for i, stage in enumerate(stages):
        check_entry(f"space.stages[{i}]", stage, STAGE_KEYS)
        merged = {**defaults, **stage}
        for key in STAGE_KEYS:
            if key not in merged:
                raise ValueError(f"space.stages[{i}].{key} is missing (and not in defaults)")
        _check_all(f"stages[{i}].block", merged["block"], lambda v: v in BLOCKS,
                   f"one of {BLOCKS}")
        for key in ("kernel", "repeats", "width"):
            _check_all(f"stages[{i}].{key}", merged[key], lambda v: is_int(v) and v >= 1,
                       "an int >= 1")
        _check_all(f"stages[{i}].expansion", merged["expansion"],
                   lambda v: is_number(v) and v >= 1, "a number >= 1")
    net = space.get("net", {})
    check_entry("space.net", net, NET_KEYS)
    _check_all("net.activation", net.get("activation", "relu"), lambda v: v in ACTIVATIONS,
               f"one of {ACTIVATIONS}")
    _check_all("net.se", net.get("se", 0), lambda v: is_number(v) and 0 <= v <= 1,
               "a ratio in [0, 1] (0: no SE)")
    _check_all("net.mid_divisor", net.get("mid_divisor", 8), lambda v: is_int(v) and v >= 1,
               "an int >= 1")
    _check_all("net.dropout", net.get("dropout", 0.0), lambda v: is_number(v) and 0 <= v < 1,
               "a number in [0, 1)")
    for label in _choices(net.get("head", "none")):
        head_conv(label)
    for key in ("budget_fraction", "width_multiplier"):
        if key in space:
            _check_value(key, space[key])
    divisors_of(space)  # raises naming channel_divisor
    tol = space.get("mac_tol", 0.05)
    if not is_number(tol) or not 0 <= tol < 1:
        raise ValueError(f"space.mac_tol={tol!r} is not allowed; expected a fraction in [0, 1)")
    if space.get("recipe") is not None:
        validate_recipe(space["recipe"])
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


def sample_choices(trial: Any, space: Mapping[str, Any], resolution: int) -> dict[str, Any]:
    """Every architecture choice of one sample (params ``strides``, the :data:`NET_KEYS`, then
    ``s<i>_block``, ``s<i>_kernel``, ``s<i>_repeats``, ``s<i>_width``, ``s<i>_expansion``; an
    entry with one value is no param). A ``ds`` stage has neither expansion nor SE."""
    net = space.get("net", {})
    out: dict[str, Any] = {"strides": suggest(trial, "strides", patterns_for(space, resolution))}
    defaults = {"activation": "relu", "se": 0, "mid_divisor": 8, "head": "none", "dropout": 0.0}
    for key in NET_KEYS:
        out[key] = suggest(trial, key, net.get(key, defaults[key]))
    stages = []
    for i, stage in enumerate(space["stages"]):
        cfg = {**space.get("defaults", {}), **stage}
        a = {key: suggest(trial, f"s{i}_{key}", cfg[key])
             for key in ("block", "kernel", "repeats", "width")}
        a["expansion"] = 1 if a["block"] == "ds" else suggest(trial, f"s{i}_expansion",
                                                               cfg["expansion"])
        stages.append(a)
    out["stages"] = stages
    return out


def assemble(choices: Mapping[str, Any], space: Mapping[str, Any], *, resolution: int,
             in_channels: int, num_classes: int, name: str = "") -> NetworkSpec:
    """The width-1 root spec of one sample's ``choices`` (:func:`sample_choices`): the layout
    that the width fitter then scales, as the study scales a zoo family's root."""
    act = choices["activation"]
    stem_strides, stage_strides = parse_pattern(choices["strides"])
    stem_cfg = space.get("stem", {})
    n_stem = len(stem_strides)
    stem = StemSpec(channels=(int(stem_cfg.get("width", 32)),) * n_stem,
                    kernels=(int(stem_cfg.get("kernel", 3)),) * n_stem, strides=stem_strides,
                    activation=act)
    se = SESpec(ratio=float(choices["se"]), activation=act) if choices["se"] else None
    stages = tuple(StageSpec(
        block=a["block"], repeats=int(a["repeats"]), out_channels=int(a["width"]),
        kernel=int(a["kernel"]), stride=stride, expansion=float(a["expansion"]),
        mid_divisor=int(choices["mid_divisor"]), se=None if a["block"] == "ds" else se,
        activation=act) for a, stride in zip(choices["stages"], stage_strides))
    channels, ratio = head_conv(choices["head"])
    if ratio is not None:
        head = HeadSpec(channels=int(round(ratio * stages[-1].out_channels)),
                        channels_ratio=ratio, scale="width")
    else:
        head = HeadSpec(channels=channels, scale="width_up" if channels else "width")
    head = head.replace(activation=act, dropout=float(choices["dropout"]))
    return NetworkSpec(stages=stages, stem=stem, head=head, in_channels=in_channels,
                       resolution=resolution, num_classes=num_classes, name=name,
                       family="search")


def sample_spec(trial: Any, space: Mapping[str, Any] | None = None, resolution: int = 28,
                in_channels: int = 1, num_classes: int = 10, budget: float | None = None
                ) -> NetworkSpec:
    """Sample a valid spec from ``space`` with ``trial`` (an Optuna Trial or anything with the
    ``suggest_*`` methods). With ``fit_budget`` and a ``budget`` (MACs), the width is fitted to
    the sampled fraction of the budget by the study's fitter (the result may miss it by up to
    ``mac_tol``, or more where no divisor lands: the budget check then rejects it); the realised
    multiplier and divisor go to user attrs when possible. The sampled choices are never
    changed."""
    space = DEFAULT_SPACE if space is None else space
    name = f"search-{getattr(trial, 'number', 0)}"
    choices = sample_choices(trial, space, resolution)
    root = assemble(choices, space, resolution=resolution, in_channels=in_channels,
                    num_classes=num_classes, name=name)
    if space.get("fit_budget", False) and budget:
        frac = suggest(trial, "budget_fraction", space.get("budget_fraction", 1.0))
        fit = fit_to_budget(root, float(frac) * float(budget), space, name)
        spec, m, div = fit.spec, fit.knob, fit.divisor
    else:
        m = float(suggest(trial, "width_multiplier", space.get("width_multiplier", 1.0)))
        spec, div = at_width(root, m, space, name), divisors_of(space)[0]
    if hasattr(trial, "set_user_attr"):
        trial.set_user_attr("width_multiplier", round(m, 6))
        trial.set_user_attr("channel_divisor", div)
    return spec


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
