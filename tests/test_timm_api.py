"""timm/torchvision conventions (issue 15): torch.fx tracing and feature extraction over the zoo,
jit.script's one-line refusal, timm's model API, create_model's timm arguments and aliases."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scaling.nn.build import FeatureNet, ScalingNet
from scaling.nn.features import FeatureInfo
from scaling.zoo import create_model, get_spec, list_models
from scaling.zoo.weights import export_torchvision, save_file

SMALL = ("resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "shufflenet_v1_g3",
         "efficientnet_b0", "regnet_y_400mf", "mnasnet0_5", "mobilenet_v1_x0_5")


@pytest.mark.parametrize("name", list_models())
def test_symbolic_trace_every_zoo_model(name):
    with torch.device("meta"):
        model = create_model(name).eval()
    graph = torch.fx.symbolic_trace(model).graph
    targets = {n.target for n in graph.nodes if n.op == "call_module"}
    assert "stem.0.0" in targets and "head.fc" in targets


@pytest.mark.parametrize("name", SMALL)
def test_traced_equals_eager(name):
    torch.manual_seed(0)
    model = create_model(name, resolution=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(torch.fx.symbolic_trace(model)(x), model(x))


@pytest.mark.parametrize("name", SMALL[:4])
def test_create_feature_extractor(name):
    fx = pytest.importorskip("torchvision.models.feature_extraction")
    model = create_model(name, resolution=64).eval()
    nodes = {info["module"]: str(i) for i, info in enumerate(model.feature_info)}
    extractor = fx.create_feature_extractor(model, return_nodes=nodes)
    with torch.no_grad():
        feats = extractor(torch.randn(1, 3, 64, 64))
    for i, info in enumerate(model.feature_info):
        assert feats[str(i)].shape[1:] == (info["num_chs"], 64 // info["reduction"],
                                           64 // info["reduction"])


@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "tf_mobilenetv3_small_100"])
def test_same_padding_models_trace(name):
    """TF 'same' padding depends on the input size: the traced graph computes it per call (one
    graph, then an odd and an even size: the eager outputs; issue 32)."""
    torch.manual_seed(0)
    model = create_model(name, resolution=64).eval()
    traced = torch.fx.symbolic_trace(model)
    assert any(n.target.__name__ == "pad_same" for n in traced.graph.nodes
               if n.op == "call_function")
    with torch.no_grad():
        for size in (61, 64):
            x = torch.randn(1, 3, size, size)
            assert torch.equal(traced(x), model(x)), size


def test_same_padding_feature_extractor():
    fx = pytest.importorskip("torchvision.models.feature_extraction")
    model = create_model("tf_efficientnet_b0", resolution=64).eval()
    nodes = {info["module"]: str(i) for i, info in enumerate(model.feature_info)}
    with torch.no_grad():
        feats = fx.create_feature_extractor(model, return_nodes=nodes)(torch.randn(1, 3, 61, 61))
    assert [f.shape[-1] for f in feats.values()] == [-(-61 // r) for r in
                                                      model.feature_info.reduction()]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_jit_script_fails_with_one_clear_line():
    with pytest.raises(TypeError, match=r"torch.jit.script does not support .*torch.jit.trace"):
        torch.jit.script(create_model("resnet18"))


def test_eager_input_check_still_names_the_shape():
    model = create_model("resnet18", resolution=32).eval()
    with pytest.raises(ValueError, match=r"input has 4 channels; expected C=3"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.randn(3, 32, 32))


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "resnet18"])
def test_forward_features_and_head(name):
    torch.manual_seed(0)
    model = create_model(name, resolution=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape[1] == model.num_features
        assert torch.equal(model.forward_head(feats), model(x))
        pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.head_hidden_size)
    assert model.get_classifier() is model.head.fc


def test_reset_classifier():
    model = create_model("mobilenet_v3_small", resolution=32).eval()
    model.reset_classifier(10)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10) and model.num_classes == 10
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, model.head_hidden_size)
    with pytest.raises(ValueError, match="num_classes=-1"):
        model.reset_classifier(-1)


def test_feature_info_and_features_only():
    model = create_model("resnet50", features_only=True, out_indices=(2, 4), resolution=64)
    assert isinstance(model, FeatureNet) and isinstance(model, ScalingNet)
    assert [(f["num_chs"], f["reduction"], f["module"]) for f in model.feature_info] == \
        [(512, 8, "stages.1"), (2048, 32, "stages.3")]
    feats = model.eval()(torch.randn(1, 3, 64, 64))
    assert isinstance(feats, list)
    assert [f.shape[1:] for f in feats] == [(512, 8, 8), (2048, 2, 2)]
    full = create_model("resnet50", features_only=True)
    assert [f["reduction"] for f in full.feature_info] == [2, 4, 8, 16, 32]
    assert full.feature_info.module_name()[0] == "stem.0"  # before the max pool, timm's act1
    assert not hasattr(ScalingNet, "out_indices_forward")  # one forward per class, no flag


def test_feature_info_answers_timms_accessors():
    info = create_model("resnet50", features_only=True, out_indices=(2, -1)).feature_info
    assert isinstance(info, FeatureInfo)
    assert (info.channels(), info.reduction(), info.module_name()) == \
        ([512, 2048], [8, 32], ["stages.1", "stages.3"])
    # an int or a list names levels among all of them, as timm's does
    assert (info.channels(1), info.reduction([0, 3]), info.out_indices) == (256, [2, 16], (2, 4))
    assert info.get_dicts(keys=["num_chs"]) == [{"num_chs": 512}, {"num_chs": 2048}]
    assert info.get_dicts(idx=3)["module"] == "stages.2"
    # still the list of the selected levels that it was
    assert len(info) == 2 and info[-1]["num_chs"] == 2048 and list(info) == info.get_dicts()
    assert info.from_other((0,)).channels() == [64]
    with pytest.raises(IndexError, match="feature level 5 is out of range; the model has 5"):
        info.channels(5)
    with pytest.raises(ValueError, match=r"out_indices=\(7,\) is not allowed"):
        info.from_other((7,))
    assert create_model("efficientnet_b0").feature_info.channels() == [16, 24, 40, 112, 320]


def test_pretrained_cfg_and_in_chans():
    model = create_model("efficientnet_b1", in_chans=1, num_classes=5)
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 240, 240) and cfg["num_classes"] == 5
    assert cfg["interpolation"] == "bicubic" and len(cfg["mean"]) == len(cfg["std"]) == 3
    assert model.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 5)
    assert model.default_cfg is cfg  # timm's older name, the same dict
    model.pretrained_cfg["crop_pct"] = 1.0  # a user's edit stays, as on timm's models
    assert model.pretrained_cfg["crop_pct"] == model.default_cfg["crop_pct"] == 1.0
    assert create_model("efficientnet_b1").pretrained_cfg["crop_pct"] == 0.875


def test_pretrained_from_own_and_torchvision_layout(tmp_path):
    torch.manual_seed(0)
    src = create_model("mobilenet_v3_small", resolution=32).eval()
    x = torch.randn(1, 3, 32, 32)
    save_file(src.state_dict(), tmp_path / "own.pth")
    save_file(export_torchvision(src), tmp_path / "tv.pth")
    with torch.no_grad():
        for file in ("own.pth", "tv.pth"):
            model = create_model("mobilenet_v3_small", resolution=32,
                                 pretrained=tmp_path / file).eval()
            assert torch.equal(model(x), src(x))
        other = create_model("mobilenet_v3_small", pretrained=str(tmp_path / "tv.pth"),
                             num_classes=7).eval()
        assert other(x).shape == (1, 7)
        assert torch.equal(other.forward_head(other.forward_features(x), pre_logits=True),
                           src.forward_head(src.forward_features(x), pre_logits=True))
        backbone = create_model("mobilenet_v3_small", pretrained=tmp_path / "own.pth",
                                features_only=True, out_indices=(2,)).eval()
        expected = src.stem(x)
        for stage in src.stages[:3]:
            expected = stage(expected)
        assert torch.equal(backbone(x)[0], expected)
    with pytest.raises(ValueError, match="nothing is downloaded"):
        create_model("resnet18", pretrained=True)


def test_timm_aliases():
    assert get_spec("resnet50.a1_in1k").replace(name="resnet50") == get_spec("resnet50")
    v3 = get_spec("mobilenetv3_large_100")
    assert v3.name == "mobilenetv3_large_100" and v3.norm.eps == 1e-5
    assert v3.stages == get_spec("mobilenet_v3_large").stages
    tf = get_spec("tf_efficientnet_b0")
    assert (tf.padding, tf.norm.eps) == ("same", 1e-3)
    assert get_spec("mnasnet_100", num_classes=3).num_classes == 3
