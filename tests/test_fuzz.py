"""Property-based fuzzing of the IR (issue 14): random specs, hostile values included.

- a random spec dict constructs, or raises the documented ValueError (a wrong type:
  ``SpecTypeError``, also a ValueError) whose message names a field;
- a spec that constructs builds, runs a forward at its resolution with a finite output of the
  right shape, and its analytic params and MACs equal the built model's;
- JSON, YAML and block-string round trips are exact;
- ``scale()`` with any multipliers returns a valid spec or raises a ValueError.

The default budget is small (CI); ``SCALING_FUZZ_EXAMPLES=10000`` runs a nightly-style budget,
with a 2 s deadline per example (a hang fails).
"""

from __future__ import annotations

import dataclasses
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaling import build_model, complexity, scale
from scaling.cost.counting import count_params, traced_macs
from scaling.ir import (
    BLOCK_TYPES,
    HeadSpec,
    NetworkSpec,
    NormSpec,
    SESpec,
    StageSpec,
    StemSpec,
    decode_stages,
    encode_stages,
)
from scaling.ir.registry import ACTIVATION

NIGHTLY = int(os.environ.get("SCALING_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=NIGHTLY or 25, deadline=2000 if NIGHTLY else None,
                suppress_health_check=list(HealthCheck), derandomize=not NIGHTLY,
                database=None)
FIELDS = {f.name for cls in (NetworkSpec, StageSpec, StemSpec, HeadSpec, NormSpec, SESpec)
          for f in dataclasses.fields(cls)} | {"stages", "stem", "head", "norm", "se"}
HOSTILE = st.sampled_from([float("nan"), float("inf"), -float("inf"), -1, 0, 2 ** 63, 10 ** 14,
                           1e300, -1e-300, 1.5, True, None, "3", "", [3], ["BN"], {}, {"a": 1},
                           3, 1, 2, 0.25])
ACTIVATIONS = [a for a in ACTIVATION.names if a != "prelu"] + ["prelu"]


@st.composite
def stage_dicts(draw) -> dict:
    block = draw(st.sampled_from(BLOCK_TYPES.names))
    record = BLOCK_TYPES[block]
    out = draw(st.integers(1, 12)) * draw(st.sampled_from([2, 4]))
    d = {"block": block, "repeats": draw(st.integers(1, 3)), "out_channels": out,
         "kernel": draw(st.sampled_from([1, 3, 5])), "stride": draw(st.sampled_from([1, 2])),
         "expansion": draw(st.sampled_from([0.25, 0.5, 1, 1.5, 2, 3, 4, 6])),
         "activation": draw(st.sampled_from(ACTIVATIONS))}
    if record.groups and draw(st.booleans()):
        d["groups"] = draw(st.sampled_from([1, 2, 4]))
    if record.se and draw(st.booleans()):
        d["se"] = {"ratio": draw(st.sampled_from([0.125, 0.25, 0.5])),
                   "base": draw(st.sampled_from(["in", "mid"])),
                   "gate": draw(st.sampled_from(["sigmoid", "hsigmoid"]))}
    if block == "basic":
        d.pop("expansion")
    return d


@st.composite
def spec_dicts(draw, hostile: bool = True) -> dict:
    n_stem = draw(st.integers(1, 2))
    norm = draw(st.sampled_from([{"type": "BN"}, {"type": "GN", "num_groups": 2},
                                 {"type": "LN"}, {"type": "IN"}, {"type": "BN", "eps": 1e-3,
                                                                 "momentum": 0.01}]))
    d = {"stem": {"channels": [draw(st.integers(1, 6)) * 4 for _ in range(n_stem)],
                  "kernels": [draw(st.sampled_from([1, 3, 5])) for _ in range(n_stem)],
                  "strides": [draw(st.sampled_from([1, 2])) for _ in range(n_stem)],
                  "pool": draw(st.sampled_from([None, "max"]))},
         "stages": [draw(stage_dicts()) for _ in range(draw(st.integers(1, 3)))],
         "head": {"channels": draw(st.sampled_from([None, 16, 32])),
                  "hidden": draw(st.sampled_from([None, 16])),
                  "dropout": draw(st.sampled_from([0.0, 0.2]))},
         "norm": norm, "in_channels": draw(st.integers(1, 4)),
         "resolution": draw(st.integers(8, 48)), "num_classes": draw(st.integers(1, 12)),
         "padding": draw(st.sampled_from(["symmetric", "same"])),
         "drop_path_rate": draw(st.sampled_from([0.0, 0.1]))}
    if hostile and draw(st.booleans()):
        _poke(draw, d)
    return d


def _poke(draw, d: dict) -> None:
    """Replace one leaf of ``d`` (possibly inside a list) with a hostile value."""
    where = d
    while True:
        key = draw(st.sampled_from(sorted(where, key=str)))
        value = where[key]
        if isinstance(value, dict) and value and draw(st.booleans()):
            where = value
        elif isinstance(value, list) and value and draw(st.booleans()):
            i = draw(st.integers(0, len(value) - 1))
            if isinstance(value[i], dict):
                where = value[i]
            else:
                value[i] = draw(HOSTILE)
                return
        else:
            where[key] = draw(HOSTILE)
            return


@pytest.fixture(autouse=True, scope="module")
def _warm_up():
    """Build, run and trace one small model first: lazy imports and first-call set-up would
    otherwise count against the first example's deadline."""
    spec = NetworkSpec(stages=(StageSpec("mbconv", 1, 8, stride=2),), resolution=16)
    model = build_model(spec)
    model(torch.randn(2, 3, 16, 16))
    traced_macs(model, 16, 3)
    scale(spec, 1.2, 1.1, 1.15)


def _construct(d: dict) -> NetworkSpec | None:
    """The spec of ``d``, or None after checking that the refusal is the documented one."""
    try:
        return NetworkSpec.from_dict(d)
    except ValueError as exc:  # SpecTypeError is a ValueError too
        message = str(exc)
        assert any(name in message for name in FIELDS), message
        return None


@FUZZ
@given(spec_dicts())
def test_random_specs_construct_or_refuse_naming_a_field(d):
    spec = _construct(d)
    if spec is not None:
        assert NetworkSpec.from_json(spec.to_json()) == spec
        assert NetworkSpec.from_yaml(spec.to_yaml()) == spec
        assert spec.walk()[-1].output[1] >= 1


@FUZZ
@given(spec_dicts(hostile=False))
def test_constructed_specs_build_run_and_count_exactly(d):
    spec = _construct(d)
    if spec is None:
        return
    torch.manual_seed(0)
    model = build_model(spec).train()
    x = torch.randn(2, spec.in_channels, spec.resolution, spec.resolution)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, spec.num_classes) and torch.isfinite(y).all()
    c = complexity(spec)
    assert c.params == count_params(model)
    assert c.macs == traced_macs(model, spec.resolution, spec.in_channels)


@FUZZ
@given(spec_dicts(hostile=False))
def test_block_string_round_trip_is_exact(d):
    spec = _construct(d)
    if spec is not None:
        assert decode_stages(encode_stages(spec)) == spec.stages


MULTIPLIERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 10 ** 7),
                        st.sampled_from([1.0, 1.1, 1.2, 2.0, 0.5, 1e-9, 1e6, True, "2"]))


@FUZZ
@given(spec_dicts(hostile=False), MULTIPLIERS, MULTIPLIERS, MULTIPLIERS)
def test_scale_with_any_multipliers_is_valid_or_refused(d, depth, width, resolution):
    spec = _construct(d)
    if spec is None:
        return
    try:
        out = scale(spec, depth, width, resolution)
    except ValueError as exc:
        assert str(exc)
        return
    assert isinstance(out, NetworkSpec) and out.num_blocks >= spec.num_blocks * (depth >= 1)
    for stage in out.stages:
        assert math.isfinite(stage.expansion)


@FUZZ
@given(st.one_of(st.integers(-10, 10 ** 6), st.floats(), st.none(), st.booleans()))
def test_walk_at_any_resolution_is_shapes_or_a_value_error(resolution):
    spec = NetworkSpec(stages=(StageSpec("mbconv", 1, 16, stride=2),))
    try:
        shapes = spec.walk(resolution)
    except ValueError as exc:
        assert "resolution" in str(exc)
        return
    assert shapes[-1].output[1] >= 1


BLOCK_TEXT = st.builds(
    lambda code, tokens: "_".join([code, *tokens]),
    st.sampled_from(["ir", "er", "ds", "bt", "bs", "sv1", "sv2", "xx"]),
    st.lists(st.one_of(st.from_regex(r"\A(r|k|s|e|c|g|gw|se|a)[0-9.e+-]{1,16}\Z"),
                       st.sampled_from(["r99999999999999", "c10000000000", "e1e400", "enan",
                                        "arelu", "aleaky-relu", "noskip", "se0.25"])),
             max_size=6))


@FUZZ
@given(st.lists(BLOCK_TEXT, min_size=1, max_size=3))
def test_any_block_string_decodes_or_is_a_value_error(texts):
    try:
        stages = decode_stages(texts)
    except ValueError as exc:
        assert str(exc)
        return
    assert decode_stages(encode_stages(stages)) == stages
