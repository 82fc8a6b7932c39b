"""What a study trains: the families at matched MAC points, the compound grid and
single-dimension scaling (Tan & Le 2019, Section 3 and Figures 3 and 8).

Every point is the realised, rounded model at its target MACs (:mod:`scaling.compound.match`):
within ``mac_tol`` of ``base_macs * 2**k`` for the family comparison, within ``mac_tol`` for
depth/width/compound-only scaling and within ``res_tol`` for resolution-only scaling (integer
pixels move the MACs in steps). The searched family is the search's best spec with its width
refitted to the base point, as every hand-designed family's root is, then scaled by the grid's
winner; a hand family is scaled by its width multiplier, or by a compound rule where the
study's config gives it one. Why the presets are set as they are: ``results/README.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from scaling.study.protocol import Protocol

PAPER = (1.2, 1.1, 1.15)
SEARCHED = "searched"
#: family -> (zoo name, get_spec keywords) of its width-1 root spec: the presets' families
ROOTS: dict[str, tuple[str, dict[str, Any]]] = {
    "MobileNetV2": ("mobilenet_v2", {"small_input": True}),
    "MobileNetV3-S": ("mobilenet_v3_small", {"small_input": True}),
    "MobileNetV3-L": ("mobilenet_v3_large", {"small_input": True}),
    "ShuffleNetV2": ("shufflenet_v2_x1_0", {"stem_pool": None}),
    "ResNet-18": ("resnet18", {"stem_pool": None}),
    "EfficientNet-B0": ("efficientnet_b0", {"small_input": True}),
    "EfficientNet-B0 (width)": ("efficientnet_b0", {"small_input": True}),
}
COMPOUND_FAMILIES = {"EfficientNet-B0": PAPER}  # hand families scaled by a rule, not by width
METHODS = ("depth", "width", "resolution", "compound")
#: ``grid.prefer`` -> which of (alpha, beta, gamma) the preferred rule scales (the others are 1)
PREFERRED = {"depth": 0, "width": 1, "resolution": 2}


def scales_only(coeffs: tuple[float, float, float], dimension: str) -> bool:
    """Whether the rule (alpha, beta, gamma) scales ``dimension`` alone (a key of
    :data:`PREFERRED`): its coefficient above 1, the other two 1."""
    dim = PREFERRED[dimension]
    return coeffs[dim] > 1 and all(c == 1 for j, c in enumerate(coeffs) if j != dim)


@dataclasses.dataclass(frozen=True)
class StudyPreset:
    """One study: its data and training protocol, the search, the grid, the families and
    their MAC points (:func:`scaling.study.config.load_config` reads one from YAML).

    ``roots``: family -> (zoo name, get_spec keywords); ``rules``: the families scaled by a
    compound rule (alpha, beta, gamma) instead of their width; ``source``: the config text."""

    protocol: Protocol
    search: dict[str, Any]
    base_macs: int
    points: int = 4
    single_ratios: tuple[float, ...] = (2.0, 4.0)
    single_families: tuple[str, ...] = (SEARCHED, "MobileNetV2")
    families: tuple[str, ...] = tuple(ROOTS)
    grid_step: float = 0.2
    grid_tol: float = 0.15
    grid_mac_tol: float = 0.10
    #: the best ``grid_confirm`` distinct grid models by the first seed are trained with every
    #: seed, and the winner is the best mean (1: the best single run wins), but see grid_prefer
    grid_confirm: int = 1
    #: a default rule (``depth``, ``width``, ``resolution`` alone) that a grid rule replaces only
    #: by leading it by more than ``grid_margin`` SE (:func:`scaling.study.grid.grid_winner`)
    grid_prefer: str | None = None
    grid_margin: float = 1.0
    mac_tol: float = 0.05
    res_tol: float = 0.10
    jobs: int = 2
    name: str = "study"
    roots: Mapping[str, tuple[str, dict[str, Any]]] = dataclasses.field(
        default_factory=lambda: dict(ROOTS))
    rules: Mapping[str, tuple[float, float, float]] = dataclasses.field(
        default_factory=lambda: dict(COMPOUND_FAMILIES))
    source: str = dataclasses.field(default="", repr=False, compare=False)

    def targets(self) -> list[float]:
        """The family comparison's MAC points: ``base_macs * 2**k``, k = 0 .. points - 1."""
        return [self.base_macs * 2.0 ** k for k in range(self.points)]


#: stage fields added after runs were stored: at these defaults a spec keeps its earlier key
LATER_STAGE_DEFAULTS = {"expand": False}


def spec_key(spec) -> str:
    """A hash of everything that builds the model (not its name); ``spec`` may be a spec's
    ``to_dict()`` as stored. A stage field newer than the stored runs is left out at its default
    (as :meth:`Protocol.key` does with later fields), so they still match."""
    d = {**spec, "name": ""} if isinstance(spec, dict) else spec.replace(name="").to_dict()
    if "stages" in d:
        d["stages"] = [{k: v for k, v in stage.items()
                        if k not in LATER_STAGE_DEFAULTS or v != LATER_STAGE_DEFAULTS[k]}
                       for stage in d["stages"]]
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def root_spec(family: str, preset: StudyPreset | None = None):
    """The width-1 spec of a hand-designed family of ``preset`` (default: the presets'
    families on Fashion-MNIST), adapted to its input and classes, without drop path (a
    regulariser of long recipes, not of a study's short protocol)."""
    from scaling.zoo import get_spec

    roots = ROOTS if preset is None else preset.roots
    p = Protocol() if preset is None else preset.protocol
    if family not in roots:
        raise ValueError(f"family={family!r} is not allowed; expected one of {sorted(roots)}")
    name, kw = roots[family]
    return get_spec(name, **{**kw, "num_classes": p.num_classes, "in_chans": p.in_channels,
                             "resolution": p.resolution, "drop_path_rate": 0.0})


def fitted(fn: Callable[..., Any], *args: Any, tol: float, **kw: Any):
    """``fn(*args, tol=tol, **kw)``; where no knob lands within ``tol``, the closest fit (its
    error is in the tables and flagged ``within_tol = False``, never hidden)."""
    try:
        return fn(*args, tol=tol, **kw)
    except ValueError as exc:
        print(f"warning: {exc}; using the closest fit", file=sys.stderr)
        return fn(*args, tol=None, **kw)


def _entry(experiment: str, family: str, method: str, ratio: float, target: float, fit,
           tol: float, **more: Any) -> dict[str, Any]:
    error = fit.macs / target - 1
    return {"experiment": experiment, "family": family, "method": method, "ratio": ratio,
            "target_macs": round(target), "macs": fit.macs, "mac_error": round(error, 5),
            "mac_tol": tol, "within_tol": abs(error) <= tol + 1e-9,
            "knob": fit.knob, "divisor": fit.divisor, "rounding": fit.rounding, "spec": fit.spec,
            **more}


def base_point(root, preset: StudyPreset):
    """``root`` with its width fitted to the preset's base MACs (a :class:`Fit`)."""
    from scaling.compound.match import fit_width

    return fitted(fit_width, root, preset.base_macs, tol=preset.mac_tol, name="base")


def grid_plan(base, preset: StudyPreset) -> list[dict[str, Any]]:
    """Step 1 of compound scaling at phi = 1 on ``base`` (a :class:`Fit`): the grid candidates
    whose realised MACs are within ``grid_mac_tol`` of 2x the base (width refitted where the
    rule alone misses)."""
    from scaling.compound.grid import candidates
    from scaling.compound.match import matched_candidates

    rows = matched_candidates(base.spec, candidates(2.0, preset.grid_tol, preset.grid_step),
                              phi=1.0, mac_tol=preset.grid_mac_tol, divisor=base.divisor)
    out = []
    for r in rows:
        spec = r.pop("spec").replace(name=f"grid a{r['alpha']:g} b{r['beta']:g} g{r['gamma']:g}")
        out.append({"experiment": "grid", "family": SEARCHED, "method": "compound", "ratio": 2.0,
                    **r, "mac_tol": preset.grid_mac_tol, "spec": spec})
    return out


def scale_by_rule(root, base, phi: float, rule: tuple[float, float, float], target: float,
                  preset: StudyPreset):
    """``base`` (a :class:`Fit`) at ``target`` MACs by ``rule``: compound scaling by ``phi``
    with its width refitted to ``target``; but where ``root`` is given and the rule scales width
    alone, the width of ``root`` fitted as the hand families' width rule does (so the searched
    net's family point is its single-dimension width row, one spec)."""
    from scaling.compound.match import fit_compound, fit_width

    if root is not None and scales_only(rule, "width"):
        return fitted(fit_width, root, target, tol=preset.mac_tol, diffuse=True)
    return fitted(fit_compound, base.spec, phi, *rule, ratio=target / base.macs,
                  tol=preset.mac_tol, divisor=base.divisor)


def family_plan(searched_base, winner: tuple[float, float, float], preset: StudyPreset,
                root=None) -> list[dict[str, Any]]:
    """Every family at every MAC point of the preset (``searched_base``: a :class:`Fit`;
    ``root``: the searched net's spec, which a width-only winner scales)."""
    from scaling.compound.match import fit_width

    out = []
    for k, target in enumerate(preset.targets()):
        fit = searched_base if k == 0 else scale_by_rule(root, searched_base, k, winner,
                                                         target, preset)
        out.append(_entry("family", SEARCHED, "compound", 2.0 ** k, target,
                          renamed(fit, f"searched phi{k}"), preset.mac_tol,
                          alpha=winner[0], beta=winner[1], gamma=winner[2]))
    for family in preset.families:
        hand_root = root_spec(family, preset)
        rule = preset.rules.get(family)
        base = base_point(hand_root, preset)
        for k, target in enumerate(preset.targets()):
            if rule is None:
                fit = fitted(fit_width, hand_root, target, tol=preset.mac_tol, diffuse=True)
                method = "width"
            else:
                fit = base if k == 0 else scale_by_rule(None, base, k, rule, target, preset)
                method = "compound"
            tag = preset.roots[family][0]
            out.append(_entry("family", family, method, 2.0 ** k, target,
                              renamed(fit, f"{tag} {method} x{2 ** k}"), preset.mac_tol))
    return out


def renamed(fit, name: str):
    """``fit`` with its spec named ``name``."""
    return dataclasses.replace(fit, spec=fit.spec.replace(name=name))


def single_plan(searched_root, searched_base, winner: tuple[float, float, float],
                preset: StudyPreset) -> list[dict[str, Any]]:
    """Depth-, width-, resolution-only and compound scaling of the searched baseline (its root
    spec and its base :class:`Fit`) and MobileNetV2 from their base point to each of
    ``single_ratios`` x the preset's base MACs: the study's MAC points, so a row that is also a
    family point (the searched net's compound row, MobileNetV2's width row) is the same spec
    and shares its runs."""
    from scaling.compound.match import fit_depth, fit_resolution, fit_width

    out = []
    for family in preset.single_families:
        if family == SEARCHED:
            root, fit0, rule = searched_root, searched_base, winner
        else:
            root = root_spec(family, preset)
            fit0, rule = base_point(root, preset), preset.rules.get(family, PAPER)
        base = fit0.spec
        out.append(_entry("single", family, "base", 1.0, preset.base_macs,
                          renamed(fit0, f"{family} base"), preset.mac_tol))
        for ratio in preset.single_ratios:
            target = ratio * preset.base_macs
            phi = math.log2(ratio)
            fits = {
                "depth": fitted(fit_depth, base, target, tol=preset.mac_tol),
                "width": fitted(fit_width, root, target, tol=preset.mac_tol, diffuse=True),
                "resolution": fitted(fit_resolution, base, target, tol=preset.res_tol),
                "compound": scale_by_rule(root if family == SEARCHED else None, fit0, phi,
                                          rule, target, preset),
            }
            for method, fit in fits.items():
                tol = preset.res_tol if method == "resolution" else preset.mac_tol
                out.append(_entry("single", family, method, ratio, target,
                                  renamed(fit, f"{family} {method} x{ratio:g}"), tol))
    return out
