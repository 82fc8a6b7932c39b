"""Registries (mmcv semantics for norms), activations, convs, SE, DropPath, channel shuffle."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scaling.ir import NormSpec
from scaling.ir.registry import NORM
from scaling.nn import layers
from scaling.nn.layers import (
    DropPath,
    LayerNorm2d,
    SqueezeExcite,
    build_activation_layer,
    build_norm_layer,
    channel_shuffle,
    norm_cfg,
)

# -- build_norm_layer, case by case (the seed's mmcv tests) -----------------------------------
ABBR = {"BN": "bn", "BN1d": "bn", "BN2d": "bn", "BN3d": "bn", "SyncBN": "bn", "GN": "gn",
        "LN": "ln", "IN": "in", "IN1d": "in", "IN2d": "in", "IN3d": "in"}
CLASSES = {"BN": nn.BatchNorm2d, "BN1d": nn.BatchNorm1d, "BN2d": nn.BatchNorm2d,
           "BN3d": nn.BatchNorm3d, "SyncBN": nn.SyncBatchNorm, "GN": nn.GroupNorm,
           "LN": nn.LayerNorm, "IN": nn.InstanceNorm2d, "IN1d": nn.InstanceNorm1d,
           "IN2d": nn.InstanceNorm2d, "IN3d": nn.InstanceNorm3d}


def test_norm_cfg_must_be_a_dict():
    with pytest.raises(TypeError, match="dict"):
        build_norm_layer("BN", 3)


def test_norm_cfg_needs_type():
    with pytest.raises(KeyError, match="type"):
        build_norm_layer({}, 3)


def test_unknown_norm_type_lists_known_types():
    with pytest.raises(KeyError) as exc:
        build_norm_layer({"type": "FancyNorm"}, 3)
    msg = str(exc.value)
    assert "FancyNorm" in msg and all(t in msg for t in ("BN", "GN", "LN", "IN3d", "SyncBN"))


def test_postfix_must_be_int_or_str():
    with pytest.raises(TypeError, match="postfix"):
        build_norm_layer({"type": "BN"}, 3, postfix=[1, 2])


def test_gn_needs_num_groups():
    with pytest.raises(ValueError, match="num_groups"):
        build_norm_layer({"type": "GN"}, 4)


@pytest.mark.parametrize("type_name", sorted(ABBR))
@pytest.mark.parametrize("postfix", ["_test", 1, ""])
def test_norm_types_names_and_sizes(type_name, postfix):
    cfg = {"type": type_name}
    if type_name == "GN":
        cfg["num_groups"] = 3
    name, layer = build_norm_layer(cfg, 3, postfix=postfix)
    assert name == ABBR[type_name] + str(postfix)
    assert type(layer) is CLASSES[type_name] or isinstance(layer, CLASSES[type_name])
    assert layer.eps == 1e-5
    if type_name == "GN":
        assert (layer.num_channels, layer.num_groups) == (3, 3)
    elif type_name == "LN":
        assert tuple(layer.normalized_shape) == (3,)
    else:
        assert layer.num_features == 3
    assert cfg == ({"type": type_name, "num_groups": 3} if type_name == "GN"
                   else {"type": type_name})  # the caller's cfg is not modified


def test_norm_eps_and_kwargs_pass_through():
    _, bn = build_norm_layer({"type": "BN", "eps": 1e-3, "momentum": 0.01}, 8)
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


@pytest.mark.parametrize("requires_grad", [True, False])
def test_norm_requires_grad_applied(requires_grad):
    for cfg in ({"type": "BN"}, {"type": "GN", "num_groups": 2}, {"type": "LN"}):
        _, layer = build_norm_layer({**cfg, "requires_grad": requires_grad}, 4)
        params = list(layer.parameters())
        assert len(params) == 2 and all(p.requires_grad is requires_grad for p in params)


def test_instance_norm_keeps_torch_default_not_affine():
    _, layer = build_norm_layer({"type": "IN"}, 4)
    assert not layer.affine and list(layer.parameters()) == []


def test_register_new_norm_is_one_call(monkeypatch):
    # keep the global registry clean for the other tests
    monkeypatch.setattr(NORM, "_builders", dict(NORM._builders))
    monkeypatch.setattr(NORM, "_declared", dict(NORM._declared))

    class FancyBatchNorm(nn.BatchNorm2d):
        pass

    class XNorm(nn.Module):
        _abbr_ = "xn"

        def __init__(self, num_features: int, eps: float = 1e-5) -> None:
            super().__init__()
            self.num_features, self.eps = num_features, eps

    NORM.register("FancyBN", FancyBatchNorm, force=True)
    NORM.register("XN", XNorm, force=True)
    assert build_norm_layer({"type": "FancyBN"}, 5, 2)[0] == "bn2"
    name, layer = build_norm_layer({"type": "XN"}, 5, "_a")
    assert name == "xn_a" and isinstance(layer, XNorm) and layer.num_features == 5


def test_infer_abbr_falls_back_on_the_name():
    assert layers.infer_abbr(type("MyGroupThing", (), {})) == "gn"
    assert layers.infer_abbr(type("Whatever", (), {})) == "norm_layer"
    with pytest.raises(TypeError):
        layers.infer_abbr("BN")


def test_layernorm_channels_first_on_conv_features_and_plain_on_vectors():
    torch.manual_seed(0)
    _, ln = build_norm_layer({"type": "LN"}, 6)
    assert isinstance(ln, LayerNorm2d)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 6, 5, 4)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, unbiased=False, keepdim=True)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * ln.weight.view(1, 6, 1, 1) \
        + ln.bias.view(1, 6, 1, 1)
    torch.testing.assert_close(ln(x), expected)
    v = torch.randn(3, 6)
    torch.testing.assert_close(ln(v), F.layer_norm(v, (6,), ln.weight, ln.bias, 1e-5))


@pytest.mark.parametrize("train", [True, False])
def test_syncbn_runs_on_cpu_without_distributed(train):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5)
    _, sync = build_norm_layer({"type": "SyncBN"}, 3)
    _, bn = build_norm_layer({"type": "BN"}, 3)
    sync.train(train)
    bn.train(train)
    torch.testing.assert_close(sync(x), bn(x))
    torch.testing.assert_close(sync.running_mean, bn.running_mean)


def test_norm_cfg_of_a_spec_keeps_only_accepted_keys():
    assert norm_cfg(NormSpec("BN", 1e-3, 0.01)) == {"type": "BN", "eps": 1e-3, "momentum": 0.01,
                                                      "requires_grad": True}
    assert norm_cfg(NormSpec("GN", num_groups=4)) == {"type": "GN", "eps": 1e-5, "num_groups": 4,
                                                        "requires_grad": True}
    assert "momentum" not in norm_cfg(NormSpec("LN"))
    with pytest.raises(TypeError):
        norm_cfg("BN")


# -- activations ------------------------------------------------------------------------------
ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "prelu": nn.PReLU,
        "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid,
        "silu": nn.SiLU, "swish": nn.SiLU, "gelu": nn.GELU, "identity": nn.Identity}


@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_types(name):
    act = build_activation_layer(name)
    assert type(act) is ACTS[name]
    assert type(build_activation_layer({"type": name})) is ACTS[name]


def test_activation_values():
    x = torch.linspace(-6, 6, 49)
    torch.testing.assert_close(build_activation_layer("hsigmoid")(x), F.relu6(x + 3) / 6)
    torch.testing.assert_close(build_activation_layer("hswish")(x), x * F.relu6(x + 3) / 6)
    torch.testing.assert_close(build_activation_layer("swish")(x), x * torch.sigmoid(x))
    leaky = build_activation_layer({"type": "leaky_relu", "negative_slope": 0.2})
    torch.testing.assert_close(leaky(x), torch.where(x > 0, x, 0.2 * x))
    assert sum(p.numel() for p in build_activation_layer("prelu").parameters()) == 1


def test_activation_errors():
    with pytest.raises(KeyError, match="relu6"):  # lists the known names
        build_activation_layer("mish2")
    with pytest.raises(TypeError):
        build_activation_layer(3)
    with pytest.raises(KeyError, match="type"):
        build_activation_layer({"negative_slope": 0.1})


# -- SE, DropPath, channel shuffle ------------------------------------------------------------
def test_squeeze_excite_structure_and_value():
    torch.manual_seed(0)
    se = SqueezeExcite(8, 2, activation="relu", gate="hsigmoid")
    assert sum(p.numel() for p in se.parameters()) == 8 * 2 + 2 + 2 * 8 + 8
    x = torch.randn(3, 8, 4, 4)
    pooled = x.mean((2, 3))
    hidden = F.relu(pooled @ se.fc1.weight.view(2, 8).T + se.fc1.bias)
    scale = F.hardsigmoid(hidden @ se.fc2.weight.view(8, 2).T + se.fc2.bias)
    torch.testing.assert_close(se(x), x * scale[:, :, None, None])


def test_drop_path():
    x = torch.ones(400, 3, 2, 2)
    dp = DropPath(0.25)
    dp.eval()
    assert dp(x) is x
    assert DropPath(0.0).train()(x) is x
    torch.manual_seed(0)
    out = dp.train()(x)
    per_sample = out.flatten(1)
    # each sample is dropped whole or kept and scaled by 1 / (1 - p)
    assert torch.all((per_sample == 0).all(1) | torch.isclose(per_sample, torch.tensor(4 / 3))
                     .all(1))
    dropped = (per_sample == 0).all(1).float().mean().item()
    assert 0.15 < dropped < 0.35
    with pytest.raises(ValueError, match="p="):
        DropPath(1.0)


def test_channel_shuffle():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    y = torch.randn(2, 12, 3, 3)
    torch.testing.assert_close(channel_shuffle(channel_shuffle(y, 3), 4), y)
    with pytest.raises(ValueError, match="groups=5"):
        channel_shuffle(y, 5)


def test_make_divisible_reexported():
    from scaling.ir import make_divisible

    assert layers.make_divisible is make_divisible
    assert layers.make_divisible(16 * 1.2) == 24


def test_registries_attach_builders_on_first_use():
    import subprocess
    import sys

    code = ("from scaling.ir.registry import BLOCK_TYPES, NORM\n"
            "assert BLOCK_TYPES['mbconv'].module_class().__name__ == 'MBConv'\n"
            "assert NORM.get('LN').__name__ == 'LayerNorm2d'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_layer_norm_2d_keeps_the_input_layout_and_matches_the_definition(layout):
    ln = LayerNorm2d(6)
    x = torch.randn(2, 6, 5, 5).contiguous(memory_format=layout)
    y = ln(x)
    assert y.is_contiguous(memory_format=layout)  # the next conv gets its weights' layout
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, ln.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(y, ref)


def test_layer_norm_before_a_strided_conv_trains_at_64_px_through_the_cli(tmp_path):
    """Issue 28: ``tests/data/ln64.json`` (LN before a stride-2 conv, 64 px) trained by the CLI
    with its defaults (channels_last on CPU) died natively (double free); a subprocess, so a crash
    fails this test instead of the test run."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from idx_files import make_idx_dir

    root = make_idx_dir(tmp_path / "fm", n_train=96, n_test=8)
    spec = Path(__file__).parent / "data" / "ln64.json"
    done = subprocess.run(
        [sys.executable, "-m", "scaling.train", str(spec), "--data-root", str(root),
         "--samples", "64", "--val-size", "32", "--threads", "1", "--no-test", "--batch-size",
         "32", "--json"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    assert out["status"] == "ok" and out["channels_last"] is True and out["samples"] == 64


@pytest.mark.parametrize("cin,groups,expected", [
    (6, 1, "Conv2dSubsample"), (8, 1, "Conv2dSubsample"), (16, 1, "Conv2d"), (32, 2, "Conv2d"),
    (48, 2, "Conv2dSubsample")])
def test_strided_pointwise_conv_subsamples_where_onednn_corrupts_the_heap(cin, groups, expected):
    """A strided 1x1 conv with input channels per group not a multiple of 16 is built as a
    Conv2dSubsample, which computes the plain strided conv's output and gradients exactly."""
    conv = layers.make_conv(cin, 12, 1, stride=2, groups=groups)
    assert type(conv).__name__ == expected
    plain = nn.Conv2d(cin, 12, 1, 2, 0, groups=groups, bias=False)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(3, cin, 9, 8).contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = conv(xa), plain(xb)
    torch.testing.assert_close(ya, yb)
    (ya * ya).sum().backward()
    (yb * yb).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(conv.weight.grad, plain.weight.grad)


def test_a_net_with_a_narrow_strided_shortcut_trains_in_channels_last():
    """A ResNet stage with 6 input channels and a 1x1 stride-2 shortcut, trained in channels_last
    (the CPU default of the trainer): oneDNN's strided 1x1 weight gradient corrupted the heap on
    AVX2 CPUs (the tiny study aborted); a subprocess, so a native crash fails this test."""
    import os
    import subprocess
    import sys

    code = (
        "import torch\n"
        "from scaling import build_model\n"
        "from scaling.ir import NetworkSpec, StageSpec, StemSpec\n"
        "torch.manual_seed(0); torch.set_num_threads(1)\n"
        "spec = NetworkSpec(stages=(StageSpec('basic', 1, 6),\n"
        "                           StageSpec('basic', 1, 10, stride=2)),\n"
        "                   stem=StemSpec(channels=(6,), kernels=(3,), strides=(2,)),\n"
        "                   in_channels=1, resolution=28, num_classes=10)\n"
        "model = build_model(spec).train().to(memory_format=torch.channels_last)\n"
        "for _ in range(40):\n"
        "    x = torch.randn(64, 1, 28, 28).contiguous(memory_format=torch.channels_last)\n"
        "    model(x).sum().backward()\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
