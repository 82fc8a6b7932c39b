"""The IR: validation naming the field, derivation, equality, JSON/YAML round trips, shape walk."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import yaml
from foundation_specs import ALL_SPECS, BLOCK_SPECS, MIXED, TORCHVISION, small

from scaling.ir import (
    HeadSpec,
    NetworkSpec,
    NormSpec,
    SESpec,
    StageSpec,
    StemSpec,
    load_spec,
)
from scaling.ir.base import _Spec, is_int, is_number


@dataclasses.dataclass(frozen=True)
class _Holder(_Spec):
    """A spec the IR has never heard of: its nested fields come from its annotations alone."""

    se: SESpec | None = None
    sizes: tuple[int, ...] = ()
    parts: tuple[StageSpec, ...] = ()


def test_nested_fields_are_read_from_annotations():
    data = {"se": {"ratio": 0.5}, "sizes": [1, 2],
            "parts": [{"block": "basic", "repeats": 1, "out_channels": 8}]}
    held = _Holder.from_dict(data)
    assert held == _Holder(SESpec(ratio=0.5), (1, 2), (StageSpec("basic", 1, 8),))
    assert _Holder.from_dict(held.to_dict()) == held
    assert _Holder.from_dict({"se": None}).se is None
    with pytest.raises(TypeError, match=r"_Holder\.parts must be a list of StageSpec"):
        _Holder.from_dict({"parts": "basic"})


@pytest.mark.parametrize("value,integer,number", [
    (3, True, True), (True, False, False), (2.5, False, True), ("3", False, False)])
def test_type_predicates_refuse_bools(value, integer, number):
    assert (is_int(value), is_number(value)) == (integer, number)


# -- invalid fields: ValueError naming the field ------------------------------------------------
def stage(**kw):
    base = {"block": "mbconv", "repeats": 1, "out_channels": 16}
    return StageSpec(**{**base, **kw})


INVALID = [
    # (what, callable, the field named in the message)
    ("unknown block", lambda: stage(block="convnext"), "stage.block"),
    ("unknown activation", lambda: stage(activation="mish2"), "stage.activation"),
    ("unknown SE gate", lambda: SESpec(gate="softmax"), "se.gate"),
    ("unknown stem activation", lambda: StemSpec(activation="tanh2"), "stem.activation"),
    ("unknown head activation", lambda: HeadSpec(activation="x"), "head.activation"),
    ("unknown norm type", lambda: NormSpec(type="FancyNorm"), "norm.type"),
    ("1-d norm for conv features", lambda: NormSpec(type="BN1d"), "norm.type"),
    ("GN without groups", lambda: NormSpec(type="GN"), "norm.num_groups"),
    ("stride 3", lambda: stage(stride=3), "stage.stride"),
    ("stride 0", lambda: stage(stride=0), "stage.stride"),
    ("stem stride 4", lambda: StemSpec(strides=(4,)), "stem.strides[0]"),
    ("even kernel", lambda: stage(kernel=4), "stage.kernel"),
    ("even stem kernel", lambda: StemSpec(kernels=(2,)), "stem.kernels[0]"),
    ("repeats 0", lambda: stage(repeats=0), "stage.repeats"),
    ("expansion 0", lambda: stage(expansion=0), "stage.expansion"),
    ("expansion < 0", lambda: stage(expansion=-1.5), "stage.expansion"),
    ("SE ratio 0", lambda: SESpec(ratio=0), "se.ratio"),
    ("SE ratio > 1", lambda: SESpec(ratio=1.5), "se.ratio"),
    ("SE on a basic block", lambda: StageSpec("basic", 1, 8, se=SESpec()), "stage.se"),
    ("odd shuffle_v2 width", lambda: StageSpec("shuffle_v2", 1, 15, stride=2),
     "stage.out_channels"),
    ("groups on basic", lambda: StageSpec("basic", 1, 8, groups=2), "stage.groups"),
    ("unknown shortcut", lambda: stage(shortcut="pool"), "stage.shortcut"),
    ("dropout 1", lambda: HeadSpec(dropout=1.0), "head.dropout"),
    ("groups do not divide mid", lambda: small(
        [StageSpec("bottleneck", 1, 32, expansion=0.25, groups=3)]), "stages[0].groups"),
    ("group width does not divide mid", lambda: small(
        [StageSpec("bottleneck", 1, 32, expansion=0.5, group_width=6)]),
     "stages[0].group_width"),
    ("shuffle_v1 groups vs branch", lambda: small(
        [StageSpec("shuffle_v1", 1, 16, stride=2, expansion=0.5, groups=3)]),
     "stages[0].groups"),
    ("first_groups vs input", lambda: small(
        [StageSpec("shuffle_v1", 1, 24, stride=2, expansion=0.25, groups=2, first_groups=3)]),
     "stages[0].first_groups"),
    ("GN groups vs channels", lambda: small(
        [StageSpec("basic", 1, 12)], norm=NormSpec("GN", num_groups=8)), "norm.num_groups"),
    ("ds depth multiplier", lambda: small([StageSpec("ds", 1, 16, expansion=1.5)]),
     "stages[0].expansion"),
    ("stride-1 shuffle changes width", lambda: small([StageSpec("shuffle_v2", 1, 16)]),
     "stages[0].out_channels"),
    ("too many stride-2 steps", lambda: small(
        [StageSpec("basic", 1, 8, stride=2)] * 6, resolution=32), "resolution"),
    ("stem pool too much", lambda: NetworkSpec(
        stages=(StageSpec("basic", 1, 8, stride=2),),
        stem=StemSpec(channels=(8,), strides=(2,), pool="max"), resolution=4), "resolution"),
    ("unknown padding", lambda: MIXED.replace(padding="valid"), "padding"),
    ("drop path 1", lambda: MIXED.replace(drop_path_rate=1.0), "drop_path_rate"),
    ("negative classes", lambda: MIXED.replace(num_classes=-1), "num_classes"),
    ("empty stages", lambda: NetworkSpec(stages=()), "stages"),
]


@pytest.mark.parametrize("make,field", [(m, f) for _, m, f in INVALID],
                         ids=[w for w, _, _ in INVALID])
def test_invalid_field_raises_value_error_naming_it(make, field):
    with pytest.raises(ValueError) as exc:
        make()
    assert field in str(exc.value)


@pytest.mark.parametrize("make,field", [
    (lambda: stage(repeats="2"), "stage.repeats"),
    (lambda: stage(repeats=True), "stage.repeats"),
    (lambda: stage(expansion="4"), "stage.expansion"),
    (lambda: stage(se={"ratio": 0.25}), "stage.se"),
    (lambda: StemSpec(channels=[32]), "stem.channels"),
])
def test_wrong_types_raise_type_error_naming_the_field(make, field):
    with pytest.raises(TypeError, match=field.replace(".", r"\.")):
        make()


def test_the_message_says_what_is_allowed():
    with pytest.raises(ValueError) as exc:
        stage(stride=3)
    assert "3" in str(exc.value) and "(1, 2)" in str(exc.value)
    with pytest.raises(ValueError) as exc:
        small([StageSpec("basic", 1, 8, stride=2)] * 6, resolution=32)
    assert "32" in str(exc.value) and "stride-2" in str(exc.value)


# -- derivation, equality, hashing ----------------------------------------------------------------
def test_replace_equality_hashing_and_frozen():
    spec = BLOCK_SPECS["bottleneck"]
    again = NetworkSpec.from_dict(spec.to_dict())
    assert again == spec and hash(again) == hash(spec) and again is not spec
    wider = spec.replace(stages=tuple(s.replace(out_channels=s.out_channels * 2)
                                      for s in spec.stages))
    assert wider != spec and spec.stages[0].out_channels == 16
    assert wider.stages[0].out_channels == 32
    assert len({spec, again, wider}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.resolution = 64
    with pytest.raises(ValueError, match="stage.stride"):
        spec.stages[0].replace(stride=3)
    assert NetworkSpec(stages=list(spec.stages)).stages == spec.stages  # a list is accepted


# -- JSON / YAML round trips ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name or s.stages[0].block)
def test_round_trips_are_the_identity(spec, tmp_path):
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert NetworkSpec.from_json(spec.to_json(indent=None)) == spec
    assert NetworkSpec.from_yaml(spec.to_yaml()) == spec
    assert NetworkSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    (tmp_path / "s.json").write_text(spec.to_json())
    (tmp_path / "s.yaml").write_text(spec.to_yaml())
    assert load_spec(str(tmp_path / "s.json")) == spec == load_spec(str(tmp_path / "s.yaml"))


def test_unknown_keys_are_errors_naming_them():
    data = MIXED.to_dict()
    data["colour"] = "blue"
    with pytest.raises(ValueError, match="colour"):
        NetworkSpec.from_dict(data)
    data = MIXED.to_dict()
    data["stages"][3]["se"]["squeeze"] = 4
    with pytest.raises(ValueError, match=r"stages\[3\]\.se.*squeeze"):
        NetworkSpec.from_dict(data)
    data = MIXED.to_dict()
    data["stem"]["width"] = 4
    with pytest.raises(ValueError, match=r"stem.*width"):
        NetworkSpec.from_yaml(yaml.safe_dump(data))
    with pytest.raises(ValueError, match="JSON"):
        NetworkSpec.from_json("{not json")
    with pytest.raises(TypeError, match="mapping"):
        NetworkSpec.from_dict([1, 2])


# -- shape walk and block geometry (figures worked out by hand) ----------------------------------
def test_walk_resnet18_by_hand():
    spec = TORCHVISION["resnet18"][0]
    # 224 -> 7x7/2 conv 112 -> 3x3/2 pool 56 -> stages at 56, 28, 14, 7
    assert [(w.input, w.output) for w in spec.walk()] == [
        ((64, 56, 56), (64, 56, 56)), ((64, 56, 56), (128, 28, 28)),
        ((128, 28, 28), (256, 14, 14)), ((256, 14, 14), (512, 7, 7))]
    # odd sizes round up: 225 -> 113 -> 57 -> 29 -> 15 -> 8
    assert [w.output[1] for w in spec.walk(225)] == [57, 29, 15, 8]


def test_block_geometry_by_hand():
    g = BLOCK_SPECS["mbconv"].blocks()
    assert [(b.in_channels, b.mid_channels, b.out_channels, b.squeeze) for b in g] == [
        (8, 8, 8, 0), (8, 32, 16, 8), (16, 64, 16, 16), (16, 48, 16, 4), (16, 48, 16, 4)]
    assert [b.residual for b in g] == [True, False, True, True, True]
    bott = BLOCK_SPECS["bottleneck"].blocks()
    assert [(b.groups, b.projection) for b in bott] == [
        (1, True), (1, False), (2, True), (2, False), (4, True)]


def test_ir_is_torch_free():
    code = "import sys, scaling.ir.spec; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- issue 14: huge values, non-finite numbers, wrong types, specs that cannot run ----------------
def _mb(**kw):
    return NetworkSpec(stages=(StageSpec("mbconv", 1, 16, stride=2, **kw),), resolution=32)


@pytest.mark.parametrize("make, match", [
    (lambda: StageSpec("mbconv", 2 ** 63, 16), r"stage\.repeats=.*<= 10_000"),
    (lambda: NetworkSpec(stages=(StageSpec("mbconv", 6000, 16),) * 2), "12_000 blocks"),
    (lambda: StageSpec("mbconv", 1, 10 ** 12), r"stage\.out_channels"),
    (lambda: _mb(expansion=1e300), r"stage\.expansion=1e\+300 .* <= 16_384"),
    # issue 28: ints beyond the float range, unbounded and unused fields
    (lambda: _mb(expansion=10 ** 400), r"stage\.expansion=<an int of 1329 bits>"),
    (lambda: NormSpec(eps=10 ** 400), r"norm\.eps=<an int of 1329 bits>"),
    (lambda: NormSpec(momentum=10 ** 400), r"norm\.momentum=<an int"),
    (lambda: HeadSpec(dropout=10 ** 400), r"head\.dropout=<an int"),
    (lambda: _mb(se=SESpec(ratio=10 ** 400)), r"se\.ratio=<an int"),
    (lambda: _mb().replace(drop_path_rate=10 ** 5000), "drop_path_rate=<an int"),
    (lambda: _mb(dilation=5000), r"stage\.dilation=5000 .* <= 4_095"),
    (lambda: _mb(kernel=1, dilation=10 ** 6), r"stage\.dilation=1000000 .* <= 8_191"),
    (lambda: _mb(groups=10 ** 20), r"stage\.groups=.* <= 16_384"),  # mbconv has no groups
    (lambda: _mb(first_groups=10 ** 20), r"stage\.first_groups"),
    (lambda: _mb(group_width=10 ** 20), r"stage\.group_width"),
    (lambda: _mb(mid_divisor=10 ** 20), r"stage\.mid_divisor"),
    (lambda: _mb(se=SESpec(divisor=10 ** 20)), r"se\.divisor"),
    (lambda: _mb(expansion=float("inf")), r"stage\.expansion=inf .* finite"),
    (lambda: _mb(expansion=float("nan")), r"stage\.expansion=nan"),
    (lambda: NormSpec(eps=float("nan")), r"norm\.eps=nan"),
    (lambda: NormSpec(eps=float("inf")), r"norm\.eps=inf"),
    (lambda: NormSpec(momentum=-0.1), r"norm\.momentum=-0\.1"),
    (lambda: NormSpec(momentum=5), r"norm\.momentum=5"),
    (lambda: NormSpec(type=["BN"]), r"norm\.type=\['BN'\]"),
    (lambda: NormSpec(requires_grad=1), r"norm\.requires_grad must be a bool"),
    (lambda: StemSpec(scale="yes"), r"stem\.scale must be a bool"),
    (lambda: _mb(se=SESpec(ratio=float("nan"))), r"se\.ratio=nan"),
    (lambda: HeadSpec(channels=8, channels_ratio=float("inf")), r"head\.channels_ratio=inf"),
    (lambda: HeadSpec(dropout=float("nan")), r"head\.dropout=nan"),
    (lambda: _mb().replace(drop_path_rate=float("nan")), "drop_path_rate=nan"),
    (lambda: _mb().replace(name=3), "name must be a str"),
    (lambda: _mb().replace(family=None), "family must be a str"),
    (lambda: _mb().replace(resolution=10 ** 9), "resolution=1000000000"),
    (lambda: _mb().replace(num_classes=10 ** 9), "num_classes=1000000000"),
    (lambda: _mb().walk(resolution=0), "resolution=0"),
    (lambda: _mb().walk(resolution=-3), "resolution=-3"),
])
def test_hostile_fields_are_value_errors_naming_the_field(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_types_are_both_type_and_value_errors():
    from scaling.ir.limits import SpecTypeError

    with pytest.raises(SpecTypeError) as info:
        StageSpec("mbconv", "2", 16)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)


def test_huge_depth_is_refused_before_walking_blocks():
    """Each of these hung (walked every block) before the block-count guard."""
    from scaling.compound import scale
    from scaling.ir import decode_stages

    spec = _mb()
    with pytest.raises(ValueError, match="repeats"):
        scale(spec, depth=1e6)
    with pytest.raises(ValueError, match="repeats"):
        decode_stages(["ir_r99999999999999_c16"])
    with pytest.raises(ValueError, match="repeats"):
        NetworkSpec.from_json(json.dumps({"stages": [
            {"block": "mbconv", "repeats": 2 ** 63, "out_channels": 16}]}))


@pytest.mark.parametrize("norm", [NormSpec(type="IN"), NormSpec(type="GN", num_groups=16)])
def test_norms_that_cannot_normalise_the_final_1x1_map_are_refused(norm):
    stages = (StageSpec("mbconv", 1, 16, stride=2), StageSpec("mbconv", 1, 16, stride=2))
    kw = {"stages": stages, "norm": norm, "head": HeadSpec(channels=32),
          "stem": StemSpec(channels=(16,), kernels=(3,), strides=(1,))}
    with pytest.raises(ValueError, match="1x1 map"):
        NetworkSpec(resolution=4, **kw)
    NetworkSpec(resolution=8, **kw)  # a final 2x2 map: fine


@pytest.mark.parametrize("text, match", [
    ("stages: !!python/object/apply:os.system ['true']\n", "python/object"),
    ("stages: []\nstages: []\n", "appears twice"),
    ("[" * 5000 + "]" * 5000, "nested too deeply"),
    ("stages: [\n", "does not parse"),
])
def test_bad_yaml_is_a_value_error(text, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec.from_yaml(text)


def test_bad_json_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        NetworkSpec.from_json('{"stages": [], "stages": []}')
    with pytest.raises(ValueError, match="nested too deeply"):
        NetworkSpec.from_json("[" * 100_000 + "]" * 100_000)
    path = tmp_path / "s.json"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match="s.json.*UTF-8"):
        load_spec(str(path))
