"""The zoo: names, overrides, small-input adaptation, create_model, the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import torch

from scaling.ir import NetworkSpec, NormSpec
from scaling.zoo.cli import main
from scaling.zoo.models import (
    GENERIC,
    apply_overrides,
    create_model,
    family_params,
    get_spec,
    list_models,
)

# the smallest model of each family: built and run in the small-input tests
SMALL = ["resnet18", "resnet18d", "shufflenet_v2_x0_5", "shufflenet_v1_g3", "mobilenet_v1_x0_5",
         "mobilenet_v2_x0_5", "mobilenet_v3_small", "mnasnet0_5", "efficientnet_b0",
         "efficientnet_v2_s", "regnet_y_400mf"]


def test_list_models():
    names = list_models()
    assert len(names) == len(set(names)) >= 50
    assert set(SMALL) <= set(names)
    # a name without wildcards matches only itself, as timm's; family= keeps a family
    assert list_models("regnet") == [] and list_models("resnet50") == ["resnet50"]
    assert list_models(family="regnet") == [n for n in names if n.startswith("regnet_")]
    # timm's natural order: digit runs by value
    assert list_models("resnet*", exclude="*d") == ["resnet18", "resnet34", "resnet50",
                                                    "resnet101", "resnet152"]
    assert list_models("resnet*", exclude_filters=["*d", "resnet1*"]) == ["resnet34", "resnet50"]
    assert list_models(pretrained=True) == []  # nothing to download
    assert list_models() == sorted(names, key=lambda n: [int(p) if p.isdigit() else p
                                                         for p in re.split(r"(\d+)", n)])
    with pytest.raises(ValueError, match="family='nope'"):
        list_models(family="nope")
    assert list_models("nope") == []  # a pattern that matches nothing, as timm


def test_list_models_patterns_and_aliases():
    names = list_models()
    assert list_models("resnet*") == [n for n in names if n.startswith("resnet")]
    kept = list_models("resnet*", exclude=["*d", "resnet1*"])
    assert kept and all(not n.endswith("d") and not n.startswith("resnet1") for n in kept)
    assert "mobilenetv3_large_100" in list_models("mobilenetv3*")
    assert "mobilenetv3_large_100" not in names  # aliases only through a pattern
    assert list_models(["mnasnet_1*", "mnasnet1_0"]) == ["mnasnet1_0", "mnasnet_100"]


def test_cli_patterns(capsys):
    assert main(["resnet*", "--exclude", "*d", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list_models("resnet*", exclude="*d")


def test_unknown_model_suggests_close_matches():
    with pytest.raises(ValueError, match="resnet50") as info:
        get_spec("resnet5O")
    assert "close matches" in str(info.value)
    with pytest.raises(TypeError):
        get_spec(50)


def test_unknown_override_is_named():
    with pytest.raises(TypeError, match="'widht'"):
        get_spec("mobilenet_v2", widht=0.5)
    with pytest.raises(TypeError, match="'depth'"):
        get_spec("resnet50", depth=2.0)  # ResNet has no depth multiplier
    with pytest.raises(TypeError, match="'variant'"):
        get_spec("regnet_x_400mf", variant="y_400mf")


def test_family_parameters():
    assert "width" in family_params("mobilenet_v2")
    assert {"width", "depth"} <= set(family_params("efficientnet_b0"))
    assert get_spec("mobilenet_v2", width=0.5) == get_spec("mobilenet_v2_x0_5").replace(
        name="mobilenet_v2")
    d = get_spec("resnet50", deep_stem=True, avg_down=True)
    assert d == get_spec("resnet50d").replace(name="resnet50")
    b0 = get_spec("efficientnet_b0", width=1.1, depth=1.2)
    b2 = get_spec("efficientnet_b2")
    assert b0.stages == b2.stages and b0.stem == b2.stem


def test_generic_overrides():
    spec = get_spec("mobilenet_v3_small", num_classes=10, in_chans=1, resolution=96,
                    norm={"type": "GN", "num_groups": 8}, activation="gelu",
                    drop_path_rate=0.1, dropout=0.5)
    assert (spec.num_classes, spec.in_channels, spec.resolution) == (10, 1, 96)
    assert spec.norm == NormSpec(type="GN", num_groups=8)
    acts = {spec.stem.activation, spec.head.activation, spec.head.hidden_activation}
    acts |= {s.activation for s in spec.stages}
    assert acts == {"gelu"}
    assert all(s.se is None or s.se.gate == "hsigmoid" for s in spec.stages)
    assert spec.drop_path_rate == 0.1 and spec.head.dropout == 0.5
    assert get_spec("resnet18", norm="IN").norm.type == "IN"
    assert get_spec("resnet18", norm=NormSpec(eps=1e-3)).norm.eps == 1e-3
    with pytest.raises(TypeError, match="norm must be"):
        get_spec("resnet18", norm=3)
    with pytest.raises(ValueError, match="activation"):
        get_spec("resnet18", activation="relu7")
    with pytest.raises(TypeError, match="small_input"):
        get_spec("resnet18", small_input="yes")


def test_stem_overrides():
    spec = get_spec("resnet50", stem_stride=1, stem_pool=None)
    assert spec.stem.strides == (1,) and spec.stem.pool is None
    small = get_spec("resnet50d", small_input=True)
    assert small.stem.strides == (1, 1, 1) and small.stem.pool is None


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("resolution", [28, 32])
def test_small_inputs_walk(name, resolution):
    spec = get_spec(name, in_chans=1, resolution=resolution, num_classes=10, small_input=True)
    shapes = spec.walk()
    c, h, w = shapes[-1].output
    assert h == w >= 2  # a sensible final map, not 1x1
    assert c == spec.stages[-1].out_channels


def test_too_many_strides_rejected():
    with pytest.raises(ValueError, match="stride-2 steps"):
        get_spec("resnet18", resolution=8)


@pytest.mark.parametrize("name", SMALL)
def test_small_inputs_forward_matches_walk(name):
    spec = get_spec(name, in_chans=1, resolution=28, num_classes=10, small_input=True)
    torch.manual_seed(0)
    backbone = create_model(spec).eval()
    x = torch.randn(2, 1, 28, 28)
    feats = []
    with torch.no_grad():
        y = backbone.stem(x)
        for stage in backbone.stages:
            y = stage(y)
            feats.append(y)
    assert [tuple(f.shape[1:]) for f in feats] == [s.output for s in spec.walk()]
    model = create_model(name, in_chans=1, resolution=32, num_classes=10, small_input=True)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_create_model_inputs():
    spec = get_spec("shufflenet_v2_x0_5")
    m1 = create_model(spec.to_dict(), num_classes=7)
    assert m1.spec.num_classes == 7 and m1.head.fc.out_features == 7
    with pytest.raises(TypeError, match="unknown override"):
        create_model(spec, width=0.5)  # family parameters need a name
    with pytest.raises(TypeError, match="name_or_spec"):
        create_model(3)
    frozen = create_model("resnet18", frozen_stages=1)
    assert not any(p.requires_grad for p in frozen.stem.parameters())
    assert apply_overrides(spec) == spec
    assert set(GENERIC) >= {"num_classes", "in_chans", "resolution", "norm", "activation"}


def test_cli_json(capsys):
    assert main(["--json", "resnet18", "mobilenet_v2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["resnet18", "mobilenet_v2"]
    for r in rows:
        spec = get_spec(r["name"])
        with torch.device("meta"):
            model = create_model(spec)
        assert r["params"] == sum(p.numel() for p in model.parameters())
        assert r["resolution"] == spec.resolution and r["family"] == spec.family
        assert r["macs"] > 0


def test_cli_errors(capsys):
    assert main(["resnet5O"]) == 2
    assert "close matches" in capsys.readouterr().err
    assert main(["--family", "nope"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err and "'mobilenet_v3'" in err
    assert main(["resnet", "--family", "mnasnet"]) == 2
    assert "no model matches ['resnet'] (family=mnasnet" in capsys.readouterr().err


def _listed(capsys, argv: list[str]) -> list[str]:
    assert main([*argv, "--json"]) == 0
    return [r["name"] for r in json.loads(capsys.readouterr().out)]


def test_cli_family_names_tags_and_patterns(capsys):
    """A bare family name lists its family (it was an error); tagged names and aliases are kept
    beside patterns (they were dropped), in the order given; --exclude and --family apply to
    every argument."""
    resnets = [n for n in list_models() if get_spec(n).family == "resnet"]
    assert _listed(capsys, ["resnet"]) == resnets
    assert _listed(capsys, ["resnet1*", "efficientnet_b0.ra_in1k", "mobilenetv2_100"]) == [
        *list_models("resnet1*"), "efficientnet_b0.ra_in1k", "mobilenetv2_100"]
    assert _listed(capsys, ["efficientnet_b0.ra_in1k"]) == ["efficientnet_b0.ra_in1k"]
    assert _listed(capsys, ["resnet18", "resnet*", "--exclude", "*d"]) == list_models(
        "resnet*", exclude="*d")
    assert _listed(capsys, ["resnet18", "mobilenet_v2", "--family", "resnet"]) == ["resnet18"]


def test_cli_family_help_lists_choices(capsys):
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "efficientnet_v2, mnasnet, mobilenet_v1" in out


def test_cli_module_table():
    out = subprocess.run([sys.executable, "-m", "scaling.zoo", "--family", "efficientnet"],
                         check=True, capture_output=True, text=True).stdout
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["name", "family", "params", "resolution"]
    assert "MACs" in lines[0]
    assert len(lines) == 1 + len(list_models(family="efficientnet"))


def test_spec_is_a_network_spec():
    assert isinstance(get_spec("regnet_x_400mf"), NetworkSpec)
