"""build_model: shapes vs the walk, torchvision parity, backbone options, with_cp, property test."""

from __future__ import annotations

import copy

import pytest
import torch
from foundation_specs import (
    ACTIVATIONS,
    BLOCK_SPECS,
    MIXED,
    NORMS_2D,
    SAME_PADDING,
    TORCHVISION,
    small,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from scaling.ir import HeadSpec, NetworkSpec, NormSpec, SESpec, StageSpec, StemSpec
from scaling.nn.build import ScalingNet, build_model
from scaling.nn.layers import Conv2dSame, Conv2dSubsample, DropPath


def assert_walk(spec: NetworkSpec, resolution: int | None = None, train: bool = False) -> None:
    """Every stage's output shape equals spec.walk(); the head gives (N, num_classes)."""
    res = spec.resolution if resolution is None else resolution
    model = build_model(spec).train(train)
    x = torch.randn(2, spec.in_channels, res, res)
    shapes = []
    with torch.no_grad():
        y = model.stem(x)
        for stage in model.stages:
            y = stage(y)
            shapes.append(tuple(y.shape[1:]))
        assert model(x).shape == (2, spec.num_classes)
    assert shapes == [w.output for w in spec.walk(res)]


@pytest.mark.parametrize("name", sorted(BLOCK_SPECS))
def test_shapes_equal_walk_per_block_type(name):
    assert_walk(BLOCK_SPECS[name])
    assert_walk(BLOCK_SPECS[name], resolution=19)  # odd sizes through every stride-2 step


@pytest.mark.parametrize("spec", [MIXED, SAME_PADDING], ids=["symmetric", "same"])
def test_shapes_equal_walk_mixed(spec):
    assert_walk(spec, train=True)
    assert_walk(spec, resolution=27)


def test_same_padding_uses_conv2d_same():
    convs = {n: m for n, m in build_model(SAME_PADDING).named_modules()
             if isinstance(m, nn.Conv2d) and ".fc" not in n}  # SE convs are plain 1x1 convs
    pointwise_strided = {n for n, m in convs.items() if isinstance(m, Conv2dSubsample)}
    assert all(convs[n].kernel_size == (1, 1) and convs[n].stride != (1, 1)
               for n in pointwise_strided)  # 'same' pads a 1x1 conv by 0: Conv2dSubsample
    assert len(convs) > 20 and all(isinstance(m, Conv2dSame) for n, m in convs.items()
                                   if n not in pointwise_strided)
    assert not any(isinstance(m, Conv2dSame) for m in build_model(MIXED).modules())


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_every_activation(act):
    spec = small([StageSpec("basic", 1, 8, activation=act),
                  StageSpec("mbconv", 1, 16, stride=2, expansion=2, activation=act,
                            se=SESpec(activation=act, gate=act))],
                 stem=StemSpec(channels=(8,), kernels=(3,), strides=(1,), activation=act),
                 head=HeadSpec(channels=16, activation=act, hidden=8, hidden_activation=act))
    assert_walk(spec, train=True)


@pytest.mark.parametrize("norm", NORMS_2D)
def test_every_norm_type(norm):
    spec = MIXED.replace(norm=NormSpec(norm, num_groups=2 if norm == "GN" else None))
    assert_walk(spec, train=True)
    model = build_model(spec)
    kinds = {type(m).__name__ for m in model.modules()}
    expected = {"BN": "BatchNorm2d", "BN2d": "BatchNorm2d", "SyncBN": "SyncBatchNorm",
                "GN": "GroupNorm", "LN": "LayerNorm2d", "IN": "InstanceNorm2d",
                "IN2d": "InstanceNorm2d"}[norm]
    assert expected in kinds and not ({"BatchNorm2d", "GroupNorm"} - {expected}) & kinds


# -- torchvision parity: the published figures, not this package's --------------------------
@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_params_and_macs(name):
    spec, params, macs = TORCHVISION[name]
    with torch.device("meta"):
        model = build_model(spec).eval()
        x = torch.empty(1, 3, spec.resolution, spec.resolution)
        with FlopCounterMode(display=False) as counter:
            model(x)
    assert sum(p.numel() for p in model.parameters()) == params
    assert counter.get_total_flops() // 2 == macs


def test_torchvision_state_dict_keys_when_available():
    tv = pytest.importorskip("torchvision")
    ours = build_model(TORCHVISION["resnet18"][0]).state_dict()
    theirs = tv.models.resnet18().state_dict()
    inner = {k.split(".", 3)[3] for k in ours if k.startswith("stages.")}
    assert inner == {k.split(".", 2)[2] for k in theirs if k.startswith("layer")}


# -- builder options ---------------------------------------------------------------------------
def test_model_basics_and_naming():
    model = build_model(MIXED)
    assert isinstance(model, ScalingNet) and model.spec is MIXED
    keys = set(model.state_dict())
    for key in ("stem.0.0.weight", "stem.1.1.running_mean", "stages.0.0.conv1.weight",
                "stages.1.0.se.fc1.bias", "stages.3.0.block.2.fc2.weight",
                "stages.5.0.conv1_1.0.weight", "stages.6.1.branch2.6.weight",
                "head.conv.0.weight", "head.hidden.weight",
                "head.fc.weight"):
        assert key in keys, key
    assert isinstance(model.stem[2], nn.MaxPool2d)
    assert build_model(MIXED.to_dict()).state_dict().keys() == keys
    with pytest.raises(TypeError, match="NetworkSpec"):
        build_model("resnet18")


def test_num_classes_zero_returns_pooled_features():
    model = build_model(MIXED, num_classes=0).eval()
    assert model.head.fc is None
    assert model(torch.randn(2, 3, 40, 40)).shape == (2, 24)  # the hidden layer's width
    no_hidden = build_model(BLOCK_SPECS["basic"], num_classes=0).eval()
    assert no_hidden(torch.randn(1, 3, 32, 32)).shape == (1, 16)
    assert build_model(MIXED, num_classes=7)(torch.randn(2, 3, 40, 40)).shape == (2, 7)


def test_out_indices_are_timms_levels():
    """The last output at each reduction: the stem convs before the max pool (stride 1, so
    reduction 1), stages 0, 2, 4, and the head conv (a hidden head: MobileNetV3's rule)."""
    model = build_model(MIXED, out_indices=(0, 1, 3, -1)).eval()
    assert model.feature_info.module_name() == ["stem.1", "stages.0", "stages.4", "head.conv"]
    assert model.feature_info.reduction() == [1, 2, 8, 16]
    feats = model(torch.randn(1, 3, 40, 40))
    assert isinstance(feats, list) and not hasattr(model.head, "fc")
    walk = MIXED.walk()
    assert [tuple(f.shape[1:]) for f in feats] == [(8, 40, 40), walk[0].output, walk[4].output,
                                                   (32, 3, 3)]
    assert len(build_model(MIXED, out_indices=2).eval()(torch.randn(1, 3, 40, 40))) == 1


@pytest.mark.parametrize("bad", [(7,), (-6,), (1, 1), (1, -4), (), ("a",), 1.5])
def test_out_indices_errors(bad):
    with pytest.raises(ValueError, match="out_indices"):
        build_model(MIXED, out_indices=bad)


@pytest.mark.parametrize("kwargs,field", [({"frozen_stages": 8}, "frozen_stages"),
                                          ({"frozen_stages": -2}, "frozen_stages"),
                                          ({"num_classes": -1}, "num_classes")])
def test_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        build_model(MIXED, **kwargs)


def test_frozen_stages_stay_frozen_across_train():
    model = build_model(MIXED, frozen_stages=2)
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1]]
    for module in frozen:
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in (model.stages[2], model.head):
        assert all(p.requires_grad for p in module.parameters())
        assert all(m.training for m in module.modules())
    stem_only = build_model(MIXED, frozen_stages=0).train()
    assert not any(p.requires_grad for p in stem_only.stem.parameters())
    assert all(p.requires_grad for p in stem_only.stages.parameters())
    # a frozen stem's running statistics do not move in training
    before = copy.deepcopy(model.stem.state_dict())
    model(torch.randn(2, 3, 40, 40))
    for k, v in model.stem.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_norm_eval():
    model = build_model(MIXED, norm_eval=True).train()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.training and model.stages[0][0].conv1.training
    assert all(m.training for m in build_model(MIXED).train().modules())


def test_drop_path_rate_schedule():
    model = build_model(MIXED)
    total = MIXED.num_blocks
    seen = 0
    for i, block in enumerate(b for stage in model.stages for b in stage):
        g = block.geometry
        assert g.drop_path == pytest.approx(MIXED.drop_path_rate * i / total)
        if isinstance(getattr(block, "drop_path", None), DropPath):
            assert block.drop_path.p == pytest.approx(0.1 * i / total)
            seen += 1
    assert seen >= 2


def test_weight_init():
    torch.manual_seed(0)
    model = build_model(TORCHVISION["resnet50"][0])
    conv = model.stages[3][0].conv2  # 3x3, 512 -> 512: fan_out = 9 * 512
    assert conv.weight.std().item() == pytest.approx((2 / (9 * 512)) ** 0.5, rel=0.02)
    assert torch.all(model.stages[0][0].bn1.weight == 1) and torch.all(model.stem[0][1].bias == 0)
    assert model.head.fc.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.all(model.head.fc.bias == 0)


def test_input_checks():
    model = build_model(MIXED).eval()
    with pytest.raises(ValueError, match="C=3"):
        model(torch.randn(1, 1, 40, 40))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model(torch.randn(3, 40, 40))


@pytest.mark.parametrize("spec", [MIXED, BLOCK_SPECS["bottleneck"], BLOCK_SPECS["mbconv"]],
                         ids=["mixed", "bottleneck", "mbconv"])
def test_with_cp_same_outputs_and_gradients(spec):
    torch.manual_seed(0)
    plain = build_model(spec).train()
    ckpt = build_model(spec, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, spec.resolution, spec.resolution)
    calls = []
    first_conv = next(m for m in ckpt.stages[-1][0].modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda *a: calls.append(1))
    grads = []
    for model in (plain, ckpt):
        torch.manual_seed(1)  # the same drop-path masks in both runs
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out.square().sum().backward()
        grads.append((out.detach(), xi.grad, {k: p.grad for k, p in model.named_parameters()}))
    (o1, gx1, g1), (o2, gx2, g2) = grads
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(gx1, gx2)
    assert g1.keys() == g2.keys()
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], msg=k)
    assert len(calls) == 2  # recomputed in backward: checkpointing was really used
    # the recomputation does not update the running statistics a second time
    for (k, v1), v2 in zip(plain.state_dict().items(), ckpt.state_dict().values()):
        torch.testing.assert_close(v1, v2, msg=k)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.eval()(x), plain.eval()(x))


# -- property test: random valid specs over all block types --------------------------------------
ACTS = st.sampled_from(ACTIVATIONS)
SE_OPT = st.none() | st.builds(SESpec, ratio=st.sampled_from([0.25, 0.5, 1.0]),
                               base=st.sampled_from(["in", "mid"]),
                               divisor=st.sampled_from([1, 4]),
                               rounding=st.sampled_from(["floor", "round"]),
                               activation=ACTS, gate=st.sampled_from(["sigmoid", "hsigmoid"]))


@st.composite
def specs(draw) -> NetworkSpec:
    res = draw(st.integers(16, 40))
    stem_c = draw(st.sampled_from([8, 16]))
    stem_s = draw(st.sampled_from([1, 2]))
    size = (res - 1) // stem_s + 1
    cin = stem_c
    stages = []
    for _ in range(draw(st.integers(1, 4))):
        block = draw(st.sampled_from(["basic", "bottleneck", "ds", "mbconv", "fused_mbconv",
                                      "shuffle_v1", "shuffle_v2"]))
        stride = draw(st.sampled_from([1, 2])) if size >= 2 else 1
        common = {"repeats": draw(st.integers(1, 2)), "stride": stride,
                  "kernel": draw(st.sampled_from([1, 3, 5])), "activation": draw(ACTS)}
        if block == "basic":
            stage = StageSpec(block, out_channels=draw(st.sampled_from([8, 16, 24])), **common)
        elif block == "bottleneck":
            grouping = draw(st.sampled_from([{}, {"groups": 2}, {"group_width": 4}]))
            stage = StageSpec(block, out_channels=draw(st.sampled_from([16, 32])),
                              expansion=draw(st.sampled_from([0.25, 0.5, 1.0])),
                              style=draw(st.sampled_from(["pytorch", "caffe"])),
                              shortcut=draw(st.sampled_from(["conv", "avgpool_conv"])),
                              se=draw(SE_OPT), **grouping, **common)
        elif block == "ds":
            stage = StageSpec(block, out_channels=draw(st.sampled_from([8, 16, 24])),
                              expansion=draw(st.sampled_from([1, 2])), **common)
        elif block in ("mbconv", "fused_mbconv"):
            stage = StageSpec(block, out_channels=draw(st.sampled_from([8, 16, 24])),
                              expansion=draw(st.sampled_from([1, 2, 3])),
                              mid_divisor=draw(st.sampled_from([1, 8])),
                              skip=draw(st.booleans()), se=draw(SE_OPT), **common)
        elif block == "shuffle_v1":
            out = cin + draw(st.sampled_from([8, 16])) if stride == 2 else cin
            stage = StageSpec(block, out_channels=out, expansion=0.25,
                              groups=draw(st.sampled_from([1, 2])),
                              first_groups=draw(st.sampled_from([None, 1])), **common)
        else:
            out = draw(st.sampled_from([16, 32])) if stride == 2 else cin
            stage = StageSpec(block, out_channels=out, **common)
        stages.append(stage)
        cin = stage.out_channels
        size = (size - 1) // stride + 1
    # InstanceNorm needs more than one pixel per map (torch raises on 1x1 maps)
    norm = draw(st.sampled_from([n for n in NORMS_2D if size >= 2 or not n.startswith("IN")]))
    return NetworkSpec(
        stages=tuple(stages), resolution=res, num_classes=5,
        stem=StemSpec(channels=(stem_c,), strides=(stem_s,), activation=draw(ACTS)),
        head=HeadSpec(channels=draw(st.sampled_from([None, 16])), activation=draw(ACTS)),
        norm=NormSpec(norm, num_groups=2 if norm == "GN" else None),
        padding=draw(st.sampled_from(["symmetric", "same"])),
        drop_path_rate=draw(st.sampled_from([0.0, 0.2])))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_property_random_specs_build_and_match_walk(spec):
    assert NetworkSpec.from_json(spec.to_json()) == spec
    assert_walk(spec)
