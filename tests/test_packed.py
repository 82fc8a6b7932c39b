"""scaling.nn.packed: a conv with a pre-packed oneDNN weight computes what nn.Conv2d does, repacks
when the weight changes, and takes the plain path where the packed one cannot run."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

import scaling
from scaling.nn.layers import Conv2dSame, SqueezeExcite
from scaling.nn.packed import MAX_SHAPES, PackedConv2d, mkldnn_packing_available, pack_convs

needs_mkldnn = pytest.mark.skipif(not mkldnn_packing_available(), reason="torch without oneDNN")


def _pair(**kwargs) -> tuple[nn.Conv2d, PackedConv2d]:
    torch.manual_seed(0)
    conv = nn.Conv2d(**kwargs).eval().requires_grad_(False)
    return conv, PackedConv2d.from_conv(copy.deepcopy(conv))


@needs_mkldnn
@pytest.mark.parametrize("kwargs", [
    dict(in_channels=8, out_channels=16, kernel_size=3, padding=1),
    dict(in_channels=8, out_channels=16, kernel_size=1, bias=False),
    dict(in_channels=8, out_channels=8, kernel_size=5, stride=2, padding=4, dilation=2, groups=8),
    dict(in_channels=8, out_channels=12, kernel_size=3, stride=2, padding=(0, 1), groups=2),
])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_packed_conv_equals_conv(kwargs, layout):
    conv, packed = _pair(**kwargs)
    x = torch.randn(3, 8, 13, 16)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.randn(3, 8, 26, 16)[:, :, ::2]
    with torch.no_grad():
        assert torch.allclose(packed(x), conv(x), atol=1e-5, rtol=1e-5)
    assert len(packed._packed) == 1  # the oneDNN path ran (and cached its weight)


@needs_mkldnn
def test_repacks_when_the_weight_changes():
    conv, packed = _pair(in_channels=4, out_channels=6, kernel_size=3, padding=1)
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        packed(x)
        packed.weight.mul_(-2.0)  # in place: the version counter moves
        conv.weight.mul_(-2.0)
        assert torch.allclose(packed(x), conv(x), atol=1e-5)
        new = {k: torch.randn_like(v) for k, v in conv.state_dict().items()}
        conv.load_state_dict(new)
        packed.load_state_dict(new)
        assert torch.allclose(packed(x), conv(x), atol=1e-5)
        for size in range(MAX_SHAPES + 2):  # one entry per input shape, bounded
            packed(torch.randn(1, 4, 5 + size, 5))
    assert 1 <= len(packed._packed) <= MAX_SHAPES


@needs_mkldnn
def test_plain_path_for_grad_other_dtypes_and_1x1_inputs():
    conv, packed = _pair(in_channels=4, out_channels=6, kernel_size=1)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    packed(x).square().sum().backward()
    grad, x.grad = x.grad, None
    conv(x).square().sum().backward()
    assert torch.equal(grad, x.grad)
    with torch.no_grad():
        for inp in (torch.randn(2, 4, 1, 1), torch.randn(2, 4, 7, 7, dtype=torch.float64)):
            conv_d = copy.deepcopy(conv).to(inp.dtype)
            assert torch.allclose(PackedConv2d.from_conv(conv_d)(inp), conv_d(inp))
    assert packed._packed == {}  # none of these packed a weight


@needs_mkldnn
def test_copy_pickle_trace_and_export():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1)).eval()
    assert pack_convs(model, min_weight=0) == 2
    model.requires_grad_(False)
    x = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        y = model(x)
        assert model[0]._packed  # the cache holds oneDNN tensors ...
        clone = copy.deepcopy(model)  # ... which a copy or a pickle leaves behind
        assert clone[0]._packed == {} and torch.allclose(clone(x), y)
        buf = io.BytesIO()
        torch.save(model, buf)
        buf.seek(0)
        assert torch.allclose(torch.load(buf, weights_only=False)(x), y)
        traced = torch.fx.symbolic_trace(model)  # tracing records the plain conv
        assert "mkldnn" not in traced.code and torch.allclose(traced(x), y, atol=1e-5)
    exported = torch.export.export(model, (x,))
    assert torch.allclose(exported.module()(x), y, atol=1e-5)


def test_pack_convs_selection_and_errors():
    model = nn.Sequential(nn.Conv2d(64, 64, 3), nn.Conv2d(64, 8, 1), Conv2dSame(64, 64, 3),
                          nn.Conv2d(64, 64, 3, padding="same"),
                          nn.Conv2d(64, 64, 3, padding_mode="reflect"),
                          SqueezeExcite(64, 1024))
    assert pack_convs(model, min_weight=1 << 12) == 1  # only the first: large, plain, zeros
    assert type(model[0]) is PackedConv2d and type(model[1]) is nn.Conv2d
    assert type(model[2]) is Conv2dSame and type(model[5].fc1) is nn.Conv2d
    assert pack_convs(nn.Sequential(nn.Conv2d(64, 8, 1)), min_weight=0) == 1
    with pytest.raises(TypeError, match="nn.Module"):
        pack_convs("resnet50")
    with pytest.raises(ValueError, match="min_weight=-1"):
        pack_convs(model, min_weight=-1)
    with pytest.raises(TypeError, match="Conv2dSame"):
        PackedConv2d.from_conv(model[2])
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        PackedConv2d.from_conv(model[4])


@needs_mkldnn
def test_deploy_packs_and_keeps_the_state_dict():
    torch.manual_seed(0)
    model = scaling.create_model("resnet50", resolution=64)
    packed, plain = scaling.deploy(model), scaling.deploy(model, pack=False)
    n = sum(isinstance(m, PackedConv2d) for m in packed.modules())
    assert packed.deployed_packs == n > 0 and plain.deployed_packs == 0
    assert not any(isinstance(m, PackedConv2d) for m in plain.modules())
    sd, sd_plain = packed.state_dict(), plain.state_dict()
    assert sd.keys() == sd_plain.keys() and all(torch.equal(sd[k], sd_plain[k]) for k in sd)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = plain(x)
        assert (packed(x) - logits).abs().max().item() <= 1e-4 * max(1.0, logits.abs().max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_packed_conv_on_cuda_takes_the_plain_path():
    conv, packed = _pair(in_channels=4, out_channels=6, kernel_size=3, padding=1)
    conv, packed = conv.cuda(), packed.cuda()
    x = torch.randn(2, 4, 9, 9, device="cuda")
    with torch.no_grad():
        assert torch.allclose(packed(x), conv(x), atol=1e-4)
    assert packed._packed == {}
