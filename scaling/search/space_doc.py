"""The search space as commented YAML (what ``python -m scaling.search --print-space`` prints):
each top-level key of :data:`~scaling.search.space.DEFAULT_SPACE` preceded by what it means, so
that a copy edited into ``--space my_space.yaml`` documents itself. The semantics are those of
:mod:`scaling.search.space`; a key without a note here is printed without one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: one note per top-level key of a space (a list, when several choices: Optuna samples one)
NOTES: dict[str, str] = {
    "name": "a label stored with the study; any text",
    "channel_divisor": "channels are rounded to a multiple of a divisor (make_divisible); the "
                       "width fitter tries these in order and keeps the first whose fit lands "
                       "within mac_tol, as the study fits its hand-designed families (8 as in "
                       "MobileNet/EfficientNet; 4, 2, 1 where 8 cannot reach a small budget)",
    "mac_tol": "with fit_budget: how far (relative) the fitted MACs may miss budget_fraction x "
               "--budget; where no divisor lands within it, the closest fit is taken and the "
               "budget check rejects it if it is over",
    "fit_budget": "true: the width multiplier is not sampled; it is fitted to budget_fraction x "
                  "--budget (a function of the sampled params, recorded as the user attrs "
                  "width_multiplier and channel_divisor). false: width_multiplier is sampled. "
                  "Either way a sample over --budget is rejected (never trained) and resampled",
    "budget_fraction": "with fit_budget: the fraction of --budget that the net fills, sampled "
                       "from low to high in steps of step (0.5-1.0: nets from half the budget "
                       "to all of it)",
    "width_range": "with fit_budget: the [smallest, largest] width multiplier the fitter may "
                   "choose",
    "width_multiplier": "without fit_budget only (ignored while fit_budget is true): the "
                        "multipliers of every stage's base width to sample from",
    "stem": "the stem conv: base channels (times the multiplier) and kernel size",
    "net": "choices made once per net: activation, se (SE ratio of the block input, 0: none), "
           "mid_divisor (expanded channels rounded to it: 1 MobileNetV2, 8 EfficientNet), head "
           "('none'; '4x': 4 x the last stage's channels, scaled with the width; '1280': 1280 "
           "channels at every width <= 1, MobileNetV2's) and the dropout before the classifier",
    "defaults": "the per-stage choices (each stage samples its own): block (mbconv = inverted "
                "residual, fused_mbconv, ds = depthwise-separable), kernel, expansion ratio and "
                "repeats (blocks in the stage)",
    "stages": "one entry per stage, in order: its base width (channels at multiplier 1; a list: "
              "a choice, here MobileNetV2's or EfficientNet-B0's) and any choice that replaces "
              "the default for that stage",
    "strides": "per input resolution, the stride patterns to sample from, written "
               "'stem strides:stage strides': \"1:1,2,2,2,1,2,1\" is a stride-1 stem, then one "
               "stride per stage (seven stages; four stride-2 steps take 28 px to 2 px). A "
               "resolution not listed gets one pattern fitted to it",
    "recipe": "optional: the training recipe searched with the architecture (absent: the fixed "
              "recipe of the command's options); lr and weight_decay per optimizer",
}


def _comment(text: str, width: int = 98) -> str:
    """``text`` as ``# `` lines of at most ``width`` characters."""
    lines, line = [], "#"
    for word in text.split():
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = "#"
        line += " " + word
    return "\n".join([*lines, line]) + "\n"


def commented_space(space: Mapping[str, Any], recipe: Mapping[str, Any] | None = None) -> str:
    """``space`` as YAML, each top-level key after its note (:data:`NOTES`); ``recipe``, when
    given, follows commented out (an optional entry the default space leaves out)."""
    import yaml

    out = []
    for key, value in space.items():
        if key in NOTES:
            out.append(_comment(NOTES[key]))
        out.append(yaml.safe_dump({key: value}, sort_keys=False))
    if recipe is not None:
        out.append(_comment(NOTES["recipe"]))
        dumped = yaml.safe_dump({"recipe": dict(recipe)}, sort_keys=False)
        out.append("".join(f"# {line}\n" for line in dumped.splitlines()))
    return "".join(out)
