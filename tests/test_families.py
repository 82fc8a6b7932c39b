"""Family tables: exact parameter counts against torchvision (reference.csv and torchvision's
weight metadata), published stage structures, torch-free tables, the data-only family."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from tv_reference import reference_rows

from scaling.ir import NetworkSpec, decode_stages, encode_stages
from scaling.nn.build import build_model
from scaling.zoo import get_spec, list_models
from scaling.zoo.families import all_models
from scaling.zoo.families.efficientnet import efficientnet
from scaling.zoo.families.mnasnet import MODELS as MNASNET_MODELS
from scaling.zoo.families.mnasnet import TABLE as MNASNET_TABLE
from scaling.zoo.families.regnet import PARAMS, RegNetParams, stage_params
from scaling.zoo.families.table import from_table

ROWS = reference_rows()

# torchvision 0.29.1 weights metadata ("num_params") of models that reference.csv does not list
TORCHVISION_META = {
    "mnasnet0_5": 2218512, "mnasnet0_75": 3170208, "mnasnet1_0": 4383312,
    "mnasnet1_3": 6282256, "resnext101_32x8d": 88791336, "wide_resnet101_2": 126886696,
    "regnet_x_1_6gf": 9190136, "regnet_x_3_2gf": 15296552, "regnet_y_1_6gf": 11202430,
    "regnet_y_3_2gf": 19436338,
}


def built_params(spec: NetworkSpec) -> int:
    with torch.device("meta"):  # same modules, no memory: counts only
        model = build_model(spec)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.skipif(not ROWS, reason="reference.csv not found")
@pytest.mark.parametrize("row", ROWS, ids=[r["model"] for r in ROWS])
def test_reference_params_and_resolution(row):
    spec = get_spec(row["model"])
    assert spec.num_classes == 1000
    assert built_params(spec) == int(row["params"])
    assert spec.resolution == int(row["resolution"])


@pytest.mark.parametrize("name", sorted(TORCHVISION_META))
def test_torchvision_metadata_params(name):
    assert built_params(get_spec(name)) == TORCHVISION_META[name]


def test_every_model_builds_its_tables():
    models = all_models()
    assert len(models) == len(list_models())
    for name, (factory, kwargs) in models.items():
        spec = factory(**kwargs)
        assert isinstance(spec, NetworkSpec), name
        assert spec.family, name
        assert NetworkSpec.from_json(spec.to_json()) == spec, name
        assert decode_stages(encode_stages(spec)) == spec.stages, name


# Published stage structures (pycls / RegNet paper, Table and model zoo): (widths, depths)
REGNET = {
    "x_400mf": ([32, 64, 160, 400], [1, 2, 7, 12]),
    "x_800mf": ([64, 128, 288, 672], [1, 3, 7, 5]),
    "y_400mf": ([48, 104, 208, 440], [1, 3, 6, 6]),
    "y_800mf": ([64, 144, 320, 784], [1, 3, 8, 2]),
}


@pytest.mark.parametrize("variant", sorted(REGNET))
def test_regnet_generator(variant):
    widths, depths = REGNET[variant]
    got = stage_params(PARAMS[variant])
    assert [w for w, _, _ in got] == widths
    assert [n for _, n, _ in got] == depths
    spec = get_spec(f"regnet_{variant}")
    assert all(s.stride == 2 and s.block == "bottleneck" for s in spec.stages)
    assert (spec.stages[0].se is not None) == variant.startswith("y")


def test_regnet_rejects_bad_params():
    with pytest.raises(ValueError, match="w_0"):
        stage_params(RegNetParams(10, 20, 10.0, 2.0, 8))  # w_0 not a multiple of 8
    with pytest.raises(ValueError, match="w_m"):
        stage_params(RegNetParams(10, 24, 10.0, 1.0, 8))


def test_regnet_group_width_clipped_to_narrow_stage():
    # a 16-wide first stage with group width 24: torchvision clips the group width to 16
    got = stage_params(RegNetParams(4, 16, 8.0, 2.0, 24))
    assert got[0][0] == 16 and got[0][2] == 16


def test_efficientnet_b7_structure():
    # torchvision's efficientnet_b7: stem 64, stage widths and depths, head 2560
    spec = get_spec("efficientnet_b7")
    assert spec.stem.channels == (64,)
    assert [s.out_channels for s in spec.stages] == [32, 48, 80, 160, 224, 384, 640]
    assert [s.repeats for s in spec.stages] == [4, 7, 7, 10, 10, 13, 4]
    assert spec.head.channels == 2560
    assert (spec.norm.eps, spec.norm.momentum) == (1e-3, 0.01)
    assert get_spec("efficientnet_b4").norm.eps == 1e-5


def test_efficientnet_helper_is_b0_at_unit_coefficients():
    assert efficientnet(1.0, 1.0) == get_spec("efficientnet_b0").replace(name="")
    b2 = get_spec("efficientnet_b2")
    assert b2.resolution == 288  # torchvision's eval crop, not the paper's 260
    assert b2.head.dropout == 0.3


def test_shufflenet_v1_published_sizes():
    # paper Table 1 / mmpretrain: ShuffleNet 1x (g=3) has about 1.87M params (ImageNet head)
    assert abs(built_params(get_spec("shufflenet_v1_g3")) - 1.87e6) < 0.01e6
    spec = get_spec("shufflenet_v1_g8")
    assert spec.stages[0].first_groups == 1 and spec.stages[1].first_groups is None
    blocks = spec.blocks()
    assert blocks[0].mid_channels == 384 // 4  # out / 4, before subtracting the concat


def test_mobilenet_v1_paper_size():
    # Howard et al. 2017, Table 8: 1.0 MobileNet-224 has 4.2M params
    assert round(built_params(get_spec("mobilenet_v1")) / 1e5) == 42


def test_resnet_d_matches_timm_param_count():
    # timm's resnet50d: 25,576,264 params
    assert built_params(get_spec("resnet50d")) == 25576264


def test_mnasnet_is_data_only():
    json.dumps(MNASNET_TABLE)  # plain data, JSON-serialisable
    for name, (factory, kwargs) in MNASNET_MODELS.items():
        assert factory is from_table, name
        assert set(kwargs) <= {"table", "width", "depth"}
    from_yaml = NetworkSpec.from_dict({**MNASNET_TABLE, "stages": [
        s.to_dict() for s in decode_stages(MNASNET_TABLE["stages"])]})
    assert from_table(MNASNET_TABLE) == from_yaml


def test_families_are_torch_free():
    code = ("import sys; import scaling.zoo.families, scaling.ir.codec, scaling.zoo.models; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "scaling.zoo.models.get_spec('efficientnet_b3'); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_regnet_generator_matches_torchvision_float32():
    """numpy float32 reproduces torch's arithmetic: same stages for 300 random parameter sets."""
    regnet = pytest.importorskip("torchvision.models.regnet")
    import random

    rng = random.Random(0)
    for _ in range(300):
        p = RegNetParams(depth=rng.randint(8, 30), w_0=8 * rng.randint(2, 40),
                         w_a=round(rng.uniform(8, 100), 2), w_m=round(rng.uniform(1.5, 3.0), 2),
                         group_width=rng.choice([8, 16, 24, 48, 64]))
        tv = regnet.BlockParams.from_init_params(p.depth, p.w_0, p.w_a, p.w_m, p.group_width)
        assert stage_params(p) == list(zip(tv.widths, tv.depths, tv.group_widths)), p
