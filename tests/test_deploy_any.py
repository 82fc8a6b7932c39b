"""scaling.deploy on modules this package did not build: only conv -> BN pairs that provably keep
the output fold (a norm subclass with an activation keeps it), the rest are named and warned about
(or refused with strict=True); outputs stay within float tolerance."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from scaling.nn.deploy import DeployWarning, deploy
from scaling.nn.fold import NormTail


def _randomize(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics (negative means and shifts), so a dropped activation shows."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g))
    return model.eval()


class BatchNormAct(nn.BatchNorm2d):
    """As timm's BatchNormAct2d: a BatchNorm2d subclass whose forward is bn, drop, act."""

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.drop = nn.Dropout(0.5)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class ScaledNorm(nn.BatchNorm2d):
    """A BN subclass doing more than the norm, without an act: must not be folded."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 2 + 1


class StdConv(nn.Conv2d):
    """Weight-standardised conv: a per-channel weight scale cancels, so folding would be wrong."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / w.std((1, 2, 3), keepdim=True)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class TorchvisionLike(nn.Module):
    """A torchvision-style bottleneck: conv1/bn1 attributes, a downsample Sequential, one BN fed
    by a conv whose output is also read elsewhere, an activation whose input is read again."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.downsample = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn1(self.conv1(x))
        h = h + self.relu(h)  # relu's input is read again: it must not become in place
        y = self.conv2(h)
        return self.bn2(y) + y + self.downsample(x)  # conv2's output has two readers


class Untraceable(nn.Module):
    """Control flow on a tensor value: fx cannot trace it, so pairs come by names."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), BatchNormAct(8), nn.Conv2d(8, 4, 1),
                                  nn.BatchNorm2d(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) if x.sum() > -1e9 else x


def _deploy_quiet(model: nn.Module, **kwargs) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return deploy(model, **kwargs)


def _assert_same(model: nn.Module, fused: nn.Module, size: int = 16) -> None:
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(x)
        assert (fused(x) - expected).abs().max().item() <= 1e-5 * max(1, expected.abs().max())


def test_batchnorm_act_keeps_its_activation():
    """The issue's repro: folding BN-act into Identity dropped the ReLU (min -1.5 instead of 0)."""
    model = _randomize(nn.Sequential(nn.Conv2d(3, 8, 3), BatchNormAct(8)))
    fused = _deploy_quiet(model)
    _assert_same(model, fused)
    assert fused.deployed_folds == 1 and fused.deployed_unfolded == ()
    assert isinstance(fused[1], NormTail) and isinstance(fused[1].act, nn.ReLU)
    with torch.no_grad():
        assert fused(torch.randn(2, 3, 16, 16)).min().item() == 0.0


def test_torchvision_like_folds_adjacent_pairs_only():
    model = _randomize(TorchvisionLike())
    with pytest.warns(DeployWarning, match=r"1 of 3 BatchNorms left unfolded .*: bn2$"):
        fused = deploy(model)
    _assert_same(model, fused)
    assert fused.deployed_folds == 2 and fused.deployed_unfolded == ("bn2",)
    assert isinstance(fused.bn1, nn.Identity) and isinstance(fused.downsample[1], nn.Identity)
    assert not fused.relu.inplace  # a foreign activation is left as it was


@pytest.mark.parametrize("norm, conv", [(ScaledNorm, nn.Conv2d), (nn.BatchNorm2d, StdConv)],
                         ids=["norm-subclass", "conv-subclass"])
def test_subclass_doing_more_is_left(norm, conv):
    model = _randomize(nn.Sequential(conv(3, 8, 3), norm(8)))
    with pytest.warns(DeployWarning, match="1 of 1 BatchNorms left unfolded"):
        fused = deploy(model)
    _assert_same(model, fused)
    assert fused.deployed_folds == 0 and fused.deployed_unfolded == ("1",)


def test_strict_refuses_in_one_line_and_keeps_the_model():
    model = _randomize(nn.Sequential(nn.Conv2d(3, 8, 3), ScaledNorm(8)))
    with pytest.raises(ValueError, match=r"^deploy: 1 of 1 BatchNorms left unfolded .*: 1 "
                                         r"\(strict=True\)$"):
        deploy(model, copy_model=False, strict=True)
    assert type(model[1]) is ScaledNorm and model[0].bias is not None
    assert model[0].weight.requires_grad
    fused = _deploy_quiet(_randomize(nn.Sequential(nn.Conv2d(3, 8, 3), BatchNormAct(8))),
                          strict=True)
    assert fused.deployed_folds == 1
    with pytest.raises(TypeError, match="strict='yes' is not allowed"):
        deploy(model, strict="yes")


def test_untraceable_model_falls_back_to_names():
    model = _randomize(Untraceable())
    fused = _deploy_quiet(model)
    _assert_same(model, fused)
    assert fused.deployed_folds == 2
    assert isinstance(fused.body[1], NormTail) and isinstance(fused.body[3], nn.Identity)


def test_norm_without_statistics_is_reported():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, track_running_stats=False))
    with pytest.warns(DeployWarning, match="1 of 1"):
        fused = deploy(model.eval())
    _assert_same(model, fused)


@pytest.mark.parametrize("source, name", [("timm", "efficientnet_b0"), ("timm", "densenet121"),
                                          ("timm", "tf_efficientnet_b0"),
                                          ("torchvision", "resnet50")])
def test_deploy_timm_and_torchvision(source, name):
    """Compare extra: real timm / torchvision models fold every adjacent pair (densenet's
    pre-activation norms follow a concat and stay), outputs within float tolerance."""
    lib = pytest.importorskip(source)
    torch.manual_seed(0)
    if source == "timm":
        model = lib.create_model(name)
    else:
        model = getattr(pytest.importorskip("torchvision.models"), name)()
    model = _randomize(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeployWarning)
        fused = deploy(model)
    norms = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    expected = {"densenet121": 59}.get(name, norms)
    assert fused.deployed_folds == expected
    assert len(fused.deployed_unfolded) == norms - expected
    _assert_same(model, fused, size=64)
