"""timm's keywords, methods and feature levels (issue 32): our behaviour without timm, then the
same answers as timm 1.0's where timm is installed (the compare extra)."""

from __future__ import annotations

import pytest
import torch

from scaling.nn.features import feature_levels
from scaling.zoo import create_model, get_spec

X = torch.randn(2, 3, 64, 64)

#: timm's feature levels on names both have: reductions 2..32, channels of each level
LEVELS = {
    "resnet50": [64, 256, 512, 1024, 2048],
    "regnet_x_400mf": [32, 32, 64, 160, 400],
    "efficientnet_b0": [16, 24, 40, 112, 320],
    "mnasnet1_0": [16, 24, 40, 96, 320],
    "mobilenet_v2": [16, 24, 32, 96, 320],
    "mobilenet_v3_large": [16, 24, 40, 112, 960],
    "mobilenet_v3_small": [16, 16, 24, 48, 576],
}


@pytest.mark.parametrize("name", LEVELS)
def test_feature_levels_are_the_last_of_each_reduction(name):
    levels = feature_levels(get_spec(name))
    assert [lv["reduction"] for lv in levels] == [2, 4, 8, 16, 32]
    assert [lv["num_chs"] for lv in levels] == LEVELS[name]


def test_features_only_list_negative_indices_and_deploy_contiguous():
    import scaling

    model = create_model("mobilenet_v3_small", features_only=True, out_indices=(1, -1)).eval()
    assert model.feature_info.out_indices == (1, 4)
    assert model.feature_info.module_name() == ["stages.0", "head.conv"]
    with torch.no_grad():
        feats = model(X)
        assert isinstance(feats, list)
        assert [tuple(f.shape[1:]) for f in feats] == [(16, 16, 16), (576, 2, 2)]
        deployed = scaling.deploy(model)
        out = deployed(X)
    assert all(f.is_contiguous() for f in out)
    assert out[1].view(2, -1).shape == (2, 576 * 4)
    torch.testing.assert_close(out[1], feats[1], rtol=1e-4, atol=1e-4)


def test_timm_keywords():
    model = create_model("resnet18", drop_rate=0.3, global_pool="max", num_classes=4,
                         exportable=True, scriptable=False, output_stride=32).eval()
    assert model.spec.head.dropout == 0.3 and model.head.dropout.p == 0.3
    with torch.no_grad():
        feats = model.forward_features(X)
        pooled = model.forward_head(feats, pre_logits=True)
        assert torch.equal(pooled, feats.amax((2, 3)))
        model.reset_classifier(0, "avgmax")
        assert torch.allclose(model(X), 0.5 * (feats.mean((2, 3)) + feats.amax((2, 3))))
        model.reset_classifier(0, "")
        assert torch.equal(model(X), feats)  # no pooling: the feature maps
    with pytest.raises(ValueError, match="global_pool='' .* needs num_classes=0"):
        model.reset_classifier(3, "")
    with pytest.raises(ValueError, match="global_pool='sum' is not allowed"):
        create_model("resnet18", global_pool="sum")


def test_catavgmax_doubles_the_pooled_features():
    """timm's 'catavgmax': avg and max concatenated; the classifier (or a hidden layer, built
    for it) takes twice the channels, num_features stays the trunk's width."""
    torch.manual_seed(0)
    model = create_model("resnet18", global_pool="catavgmax", num_classes=4).eval()
    v3 = create_model("mobilenet_v3_small", global_pool="catavgmax", num_classes=4).eval()
    assert model.head.fc.in_features == 2 * model.num_features == 1024
    assert v3.head.hidden.in_features == 2 * v3.num_features
    with torch.no_grad():
        feats = model.forward_features(X)
        assert torch.equal(model.forward_head(feats, pre_logits=True),
                           torch.cat([feats.mean((2, 3)), feats.amax((2, 3))], 1))
        assert v3(X).shape == (len(X), 4)
        model.reset_classifier(7, "avg")
        assert model.head.fc.in_features == 512 and model(X).shape == (len(X), 7)
    with pytest.raises(ValueError, match="global_pool='avg' changes the pooled width"):
        v3.reset_classifier(7, "avg")
    with pytest.raises(ValueError, match="global_pool='sum' is not allowed"):
        create_model("resnet18", global_pool="sum")
    with pytest.raises(ValueError, match="output_stride=16 is not supported; expected 32"):
        create_model("resnet18", output_stride=16)
    with pytest.raises(ValueError, match="drop_rate=0.1 and dropout=0.2"):
        create_model("resnet18", drop_rate=0.1, dropout=0.2)
    with pytest.raises(TypeError, match="exportable must be a bool"):
        create_model("resnet18", exportable="yes")


def test_no_pool_head_with_a_hidden_layer_acts_per_position():
    model = create_model("mobilenet_v3_small", num_classes=0, global_pool="").eval()
    with torch.no_grad():
        maps = model(X)
        assert maps.shape == (2, 1024, 2, 2)
        model.reset_classifier(0, "avg")
        pooled = model(X)
    # the hidden linear commutes with nothing, so compare one position by hand
    feats = model.forward_features(X)
    head = model.head
    by_hand = head.hidden_act(head.hidden(feats[:, :, 0, 0]))
    torch.testing.assert_close(maps[:, :, 0, 0], by_hand.detach())
    assert pooled.shape == (2, 1024)


def test_forward_intermediates_and_prune():
    model = create_model("resnet18", num_classes=5).eval()
    with torch.no_grad():
        final, inter = model.forward_intermediates(X)
        assert torch.equal(final, model.forward_features(X))
        assert [f.shape[1] for f in inter] == [64, 64, 128, 256, 512]
        assert [f.shape[-1] for f in inter] == [32, 16, 8, 4, 2]
        last2 = model.forward_intermediates(X, indices=2, intermediates_only=True)
        assert [torch.equal(a, b) for a, b in zip(last2, inter[3:])] == [True, True]
        early = model.forward_intermediates(X, indices=[0, -4], stop_early=True)
        assert early[0].shape[1] == 64 and len(early[1]) == 2
    with pytest.raises(ValueError, match="indices=6 is not allowed"):
        model.forward_intermediates(X, indices=6)
    with pytest.raises(ValueError, match="output_fmt='NHWC'"):
        model.forward_intermediates(X, output_fmt="NHWC")
    assert model.prune_intermediate_layers([1, 2]) == [1, 2]
    assert len(model.stages) == 2 and model.num_classes == 0
    with torch.no_grad():
        assert torch.equal(model(X), inter[2])  # no pool, no classifier: the last kept map


def test_effnet_intermediates_end_with_the_head_conv():
    model = create_model("efficientnet_b0").eval()
    with torch.no_grad():
        final, inter = model.forward_intermediates(X, indices=[1, 4])
    assert final.shape[1] == 1280 and [f.shape[1] for f in inter] == [24, 320]


def test_grad_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = create_model("mobilenet_v3_small", num_classes=3, resolution=32).train()
    x = torch.randn(2, 3, 32, 32)

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout mask both times
        model(x).square().sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.set_grad_checkpointing()
    assert model.grad_checkpointing
    checkpointed = grads()
    for a, b in zip(plain, checkpointed):
        torch.testing.assert_close(a, b)


def test_group_matcher_covers_every_backbone_parameter():
    import re

    model = create_model("resnet18")
    for coarse in (False, True):
        matcher = model.group_matcher(coarse)
        patterns = [matcher["stem"]] + [p for p, _ in matcher["blocks"]]
        names = [n for n, _ in model.named_parameters() if not n.startswith("head.fc")]
        assert all(any(re.match(p, n) for p in patterns) for n in names)


def test_against_timm():
    timm = pytest.importorskip("timm")
    pairs = {"resnet50": "resnet50", "efficientnet_b0": "efficientnet_b0",
             "mobilenet_v3_large": "mobilenetv3_large_100",
             "mobilenet_v3_small": "mobilenetv3_small_100", "regnet_y_800mf": "regnety_008_tv",
             "mnasnet1_0": "mnasnet_100", "mobilenet_v2": "mobilenetv2_100"}
    for ours, theirs in pairs.items():
        for idx in (None, (1, 2, 3, 4), (0, -1)):
            kw = {} if idx is None else {"out_indices": idx}
            a = create_model(ours, features_only=True, **kw).eval()
            b = timm.create_model(theirs, features_only=True, **kw).eval()
            assert (a.feature_info.channels(), a.feature_info.reduction()) == \
                (b.feature_info.channels(), b.feature_info.reduction()), (ours, idx)
            with torch.no_grad():
                fa, fb = a(X[:1]), b(X[:1])
            assert type(fa) is type(fb) and [f.shape for f in fa] == [f.shape for f in fb]
    ta, tb = create_model("resnet18"), timm.create_model("resnet18")
    assert [len(x) for x in ta.forward_intermediates(X[:1])[1:]] == \
        [len(x) for x in tb.forward_intermediates(X[:1])[1:]]
    assert timm.list_models("resnet") == [] and timm.list_models("resnet1*")[:2] == \
        ["resnet10t", "resnet14t"]  # the natural order ours follows
