"""Weight converters: key names of each layout, strictness, files; and, where torchvision / timm
are installed (the ``compare`` extra), equal logits with randomly initialised reference models."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from tv_reference import reference_rows

from scaling.zoo import create_model, get_spec
from scaling.zoo.weights import (
    LAYOUTS,
    export_timm,
    export_torchvision,
    key_map,
    load_file,
    load_timm,
    load_torchvision,
    save_file,
)

# (zoo model, layout, external keys that the layout must produce: the libraries' own names)
CASES = [
    ("resnet18", "resnet", ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight",
                            "layer2.0.downsample.0.weight", "layer4.1.bn2.bias", "fc.bias"]),
    ("regnet_y_400mf", "regnet", ["stem.0.weight", "trunk_output.block1.block1-0.proj.0.weight",
                                  "trunk_output.block1.block1-0.f.se.fc1.weight",
                                  "trunk_output.block4.block4-5.f.c.1.weight", "fc.weight"]),
    ("shufflenet_v2_x0_5", "shufflenet_v2", ["conv1.0.weight", "stage2.0.branch1.0.weight",
                                             "stage4.3.branch2.5.weight", "conv5.1.weight",
                                             "fc.weight"]),
    ("mobilenet_v2_x0_5", "mobilenet_v2", ["features.0.0.weight", "features.1.conv.0.0.weight",
                                           "features.1.conv.1.weight", "features.1.conv.2.bias",
                                           "features.2.conv.0.0.weight",
                                           "features.2.conv.3.running_mean",
                                           "features.18.0.weight", "classifier.1.weight"]),
    ("mobilenet_v3_small", "mobilenet_v3", ["features.1.block.0.0.weight",
                                            "features.1.block.1.fc1.weight",
                                            "features.12.0.weight", "classifier.0.weight",
                                            "classifier.3.weight"]),
    ("efficientnet_b0", "efficientnet", ["features.1.0.block.0.0.weight",
                                         "features.1.0.block.1.fc1.weight",
                                         "features.2.0.block.3.1.weight", "features.8.0.weight",
                                         "classifier.1.weight"]),
    ("mnasnet0_5", "mnasnet", ["layers.0.weight", "layers.3.weight", "layers.7.running_var",
                               "layers.8.0.layers.0.weight", "layers.13.0.layers.7.weight",
                               "layers.14.weight", "layers.15.bias", "classifier.1.weight"]),
    ("efficientnet_b0", "timm_efficientnet", [
        "conv_stem.weight", "bn1.weight", "blocks.0.0.conv_dw.weight",
        "blocks.0.0.se.conv_reduce.weight", "blocks.0.0.conv_pw.weight", "blocks.0.0.bn2.weight",
        "blocks.1.0.conv_pw.weight", "blocks.1.0.conv_dw.weight", "blocks.1.0.conv_pwl.weight",
        "blocks.1.0.bn3.weight", "blocks.6.0.se.conv_expand.bias", "conv_head.weight",
        "bn2.weight", "classifier.weight"]),
    ("mobilenet_v3_small", "timm_mobilenetv3", [
        "blocks.0.0.conv_dw.weight", "blocks.0.0.se.conv_reduce.weight",
        "blocks.1.1.conv_pwl.weight",
        "blocks.4.2.bn3.weight", "blocks.5.0.conv.weight", "blocks.5.0.bn1.weight",
        "conv_head.weight", "conv_head.bias", "classifier.weight"]),
    ("resnet50d", "timm_resnet", [
        "conv1.0.weight", "conv1.1.weight", "conv1.4.running_mean", "conv1.6.weight", "bn1.weight",
        "layer1.0.downsample.1.weight", "layer1.0.downsample.2.bias",  # stride 1: pool slot kept
        "layer2.0.downsample.1.weight", "layer2.0.downsample.2.running_var", "layer4.2.bn3.weight",
        "fc.weight"]),
    # two IR stages of 16 channels stay two timm stages (the second starts strided)
    ("mobilenet_v2_x0_5", "timm_efficientnet", [
        "blocks.0.0.conv_dw.weight", "blocks.1.1.bn3.weight", "blocks.2.2.conv_pwl.weight",
        "blocks.6.0.conv_pwl.weight", "conv_head.weight", "classifier.weight"]),
    ("efficientnet_v2_s", "timm_efficientnet", [
        "blocks.0.0.conv.weight", "blocks.0.1.bn1.weight", "blocks.1.0.conv_exp.weight",
        "blocks.1.0.conv_pwl.weight", "blocks.1.0.bn2.weight", "blocks.3.0.se.conv_reduce.weight",
        "conv_head.weight"]),
]


def _perturb(model: torch.nn.Module, seed: int = 0) -> None:
    """Random BN statistics and affine params, so that a mis-mapped norm shows in the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.05)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.8)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.4 + 0.8)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.05)


@pytest.mark.parametrize("name, layout, keys", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_layout_round_trip(name, layout, keys):
    torch.manual_seed(0)
    src = create_model(name).eval()
    _perturb(src)
    timm = layout.startswith("timm")
    sd = (export_timm if timm else export_torchvision)(src, layout=layout)
    assert set(keys) <= set(sd)
    assert len(sd) == len(src.state_dict())
    torch.manual_seed(1)
    dst = create_model(name).eval()
    if timm:
        load_timm(dst, sd, layout=layout, eps=dst.spec.norm.eps)
    else:
        load_torchvision(dst, sd, layout=layout)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))


def test_layout_inferred_from_family_and_blocks():
    m = create_model("mobilenet_v3_small")
    assert "classifier.3.weight" in export_torchvision(m)
    assert "conv_head.bias" in export_timm(m)
    anon = create_model(get_spec("regnet_x_400mf").replace(family=""))
    assert "trunk_output.block1.block1-0.f.a.0.weight" in export_torchvision(anon)
    anon = create_model(get_spec("efficientnet_b0").replace(family=""))
    assert "features.8.0.weight" in export_torchvision(anon)


def test_timm_linear_head_is_a_1x1_conv():
    sd = export_timm(create_model("mobilenet_v3_small"))
    assert sd["conv_head.weight"].shape == (1024, 576, 1, 1)


@pytest.fixture(scope="module")
def resnet():
    return create_model("resnet18")


def test_missing_key_is_named(resnet):
    sd = export_torchvision(resnet)
    del sd["layer3.1.bn2.running_mean"]
    with pytest.raises(ValueError, match=r"missing key\(s\) \['layer3.1.bn2.running_mean'\]"):
        load_torchvision(resnet, sd)


def test_unexpected_key_is_named(resnet):
    sd = export_torchvision(resnet)
    sd["layer5.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"unexpected key\(s\) \['layer5.0.conv1.weight'\]"):
        load_torchvision(resnet, sd)


def test_misshaped_key_is_named(resnet):
    sd = export_torchvision(resnet)
    sd["fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(ValueError, match=r"'fc.weight' has shape \(10, 512\).*'head.fc.weight' "
                                         r"expects \(1000, 512\)"):
        load_torchvision(resnet, sd)
    sd = export_torchvision(resnet)
    sd["fc.bias"] = [0.0] * 1000
    with pytest.raises(TypeError, match="'fc.bias'"):
        load_torchvision(resnet, sd)


def test_bad_arguments(resnet):
    with pytest.raises(TypeError, match="ScalingNet"):
        load_torchvision(torch.nn.Linear(2, 2), {})
    with pytest.raises(ValueError, match="layout='vgg'"):
        export_torchvision(resnet, layout="vgg")
    with pytest.raises(TypeError, match="mapping"):
        load_torchvision(resnet, [1, 2])
    with pytest.raises(ValueError, match="single stem conv"):
        export_torchvision(create_model("resnet18d"))
    with pytest.raises(ValueError, match="no counterpart"):
        key_map(create_model("resnet18", activation="prelu"), "resnet")
    with pytest.raises(ValueError, match="timm layouts hold ds/mbconv"):
        export_timm(create_model("shufflenet_v2_x0_5"))
    assert set(LAYOUTS) >= {"resnet", "regnet", "efficientnet", "timm_efficientnet",
                            "timm_resnet"}


def test_files(tmp_path: Path, resnet):
    sd = export_torchvision(resnet)
    path = tmp_path / "r18.pt"
    save_file(sd, path)
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    back = load_file(path)
    assert back.keys() == sd.keys() and all(torch.equal(back[k], sd[k]) for k in sd)
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pt")
    assert load_file(tmp_path / "ckpt.pt").keys() == sd.keys()
    torch.save({"a": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_file(tmp_path / "bad.pt")
    with open(tmp_path / "evil.pt", "wb") as fh:  # not loadable with weights_only=True
        pickle.dump(Path("x"), fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        load_file(tmp_path / "evil.pt")


# -- against the real libraries (the ``compare`` extra) -------------------------------------------
REF_MODELS = [r["model"] for r in reference_rows()]
EXTRA = ["mnasnet0_5", "mnasnet1_0", "regnet_x_1_6gf", "regnet_y_1_6gf"]


def _compare(ref: torch.nn.Module, ir: torch.nn.Module, res: int = 64) -> float:
    torch.manual_seed(0)
    x = torch.randn(2, 3, res, res)
    with torch.no_grad():
        return (ref.eval()(x) - ir.eval()(x)).abs().max().item()


@pytest.mark.parametrize("name", REF_MODELS + EXTRA)
def test_torchvision_logits(name):
    tv_models = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    tv = getattr(tv_models, name)(weights=None)
    _perturb(tv)
    ir = load_torchvision(create_model(name), tv.state_dict())
    assert sum(p.numel() for p in ir.parameters()) == sum(p.numel() for p in tv.parameters())
    assert _compare(tv, ir) <= 1e-5
    back = export_torchvision(ir)
    assert back.keys() == tv.state_dict().keys()


TIMM = [("efficientnet_b0", "efficientnet_b0", {}), ("efficientnet_b2", "efficientnet_b2", {}),
        ("mobilenetv3_large_100", "mobilenet_v3_large", {"norm": {"eps": 1e-5}}),
        ("mobilenetv3_small_100", "mobilenet_v3_small", {"norm": {"eps": 1e-5}}),
        ("efficientnetv2_s", "efficientnet_v2_s", {"norm": {"eps": 1e-5}}),
        ("mobilenetv3_large_100", "mobilenetv3_large_100", {}),
        ("mnasnet_100", "mnasnet_100", {})]


def test_load_timm_refuses_another_bn_eps():
    """timm's MobileNetV3 has BN eps 1e-5, the zoo's (torchvision's) 1e-3: loading would change
    the function (issue 15: logits off by 2.6e-4), so it is refused; the timm alias carries it."""
    sd = export_timm(create_model("mobilenetv3_small_100"))
    with pytest.raises(ValueError, match=r"eps \[0.001\] differs from timm's eps=1e-05"):
        load_timm(create_model("mobilenet_v3_small"), sd)
    model = load_timm(create_model("mobilenetv3_small_100"), sd)
    assert {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-5}


@pytest.mark.parametrize("timm_name, name, overrides", TIMM, ids=[t[0] for t in TIMM])
def test_timm_logits(timm_name, name, overrides):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model(timm_name, pretrained=False)
    _perturb(ref)
    ir = load_timm(create_model(name, **overrides), ref.state_dict())
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = ref.eval()(x), ir.eval()(x)
    # timm's hard_sigmoid is relu6(x + 3) / 6, torch's Hardsigmoid one fused kernel: last-bit
    # differences, so the bound is relative to the logits' scale
    assert (a - b).abs().max().item() <= 1e-5 * max(1.0, a.abs().max().item())
    assert export_timm(ir).keys() == ref.state_dict().keys()


def test_timm_resnet_d_param_count():
    timm = pytest.importorskip("timm")
    ref = timm.create_model("resnet50d", pretrained=False)
    ir = create_model("resnet50d")
    assert sum(p.numel() for p in ir.parameters()) == sum(p.numel() for p in ref.parameters())
