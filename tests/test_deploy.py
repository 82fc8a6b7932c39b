"""scaling.deploy: BatchNorm folded into the conv before it, activations in place, eval mode; the
logits stay within 1e-4 of the unfused model's on every zoo model (small resolution)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import scaling
from scaling.nn.blocks import INPLACE_TYPES
from scaling.nn.deploy import deploy, fold_conv_bn
from scaling.zoo import create_model, list_models

#: the largest zoo models take seconds each to build and run; their blocks are the same types
HEAVY = ("efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_b8",
         "efficientnet_l2", "efficientnet_v2_m", "efficientnet_v2_l", "resnet152", "resnet152d",
         "resnext101_32x8d", "wide_resnet101_2")


def _random_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine parameters, so folding is exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _calibrate(model: nn.Module, x: torch.Tensor) -> None:
    """Running statistics from one pass over ``x`` (as after training: logits of order 1)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch gives its statistics
    model.train()
    with torch.no_grad():
        model(x)
    model.eval()


@pytest.mark.parametrize("name", [n for n in list_models() if n not in HEAVY])
def test_deploy_matches_unfused(name):
    """The fold's algebra, over the zoo: in float64 the deploy logits equal the unfused ones to
    rounding (random-init nets have logits up to ~1e3, so float32 would measure their scale)."""
    torch.manual_seed(0)
    model = create_model(name, resolution=32)
    _random_bn(model)
    model = model.double().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeployWarning: every norm of a zoo model folds
        fused = scaling.deploy(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert fused.deployed_folds > 0 and fused.deployed_unfolded == () and not fused.training
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is kept
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        assert (fused(x) - model(x)).abs().max().item() <= 1e-8


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "mobilenet_v3_large",
                                  "efficientnet_b0", "regnet_y_800mf"])
def test_deploy_float32_within_1e4(name):
    """float32, BN statistics from a calibration pass (logits of order 1, as a trained net's):
    max abs logit difference <= 1e-4 per unit of logit scale."""
    torch.manual_seed(0)
    model = create_model(name, resolution=64)
    _calibrate(model, torch.randn(8, 3, 64, 64))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        diff = (scaling.deploy(model)(x) - logits).abs().max().item()
    assert diff <= 1e-4 * max(1.0, logits.abs().max().item())


def test_deploy_in_place_and_state():
    model = create_model("mobilenet_v3_small", resolution=32)
    acts = [m for m in model.modules() if isinstance(m, INPLACE_TYPES)]
    assert acts and all(m.inplace for m in acts)  # built in place, as torchvision's
    fused = deploy(model, copy_model=False)
    assert fused is model and not any(p.requires_grad for p in fused.parameters())
    assert fused.stem[0][0].bias is not None and isinstance(fused.stem[0][1], nn.Identity)


def test_fold_conv_bn_equation():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4)
    _random_bn(nn.Sequential(bn))
    bn.eval()
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = bn(conv(x))
        assert torch.allclose(fold_conv_bn(conv, bn)(x), expected, atol=1e-6)
    with pytest.raises(TypeError, match="Conv2d and a BatchNorm"):
        fold_conv_bn(bn, conv)
    with pytest.raises(TypeError, match="nn.Module"):
        deploy("resnet18")


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "shufflenet_v2_x0_5",
                                  "regnet_y_400mf"])
def test_in_place_activations_keep_training_gradients(name):
    """Built in place, the activations give the same outputs and gradients as out of place
    (each one's input is a fresh tensor no backward needs)."""
    torch.manual_seed(0)
    model = create_model(name, resolution=32).train()
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if isinstance(m, INPLACE_TYPES):
            m.inplace = False
    x = torch.randn(4, 3, 32, 32)
    for net in (model, reference):
        torch.manual_seed(1)  # the same dropout / drop-path draws
        net(x).square().mean().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p.grad, q.grad)
