"""Conv layers: symmetric and TF 'same' padding, the depthwise conv that pads small maps itself,
and the conv registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scaling.nn.layers import Conv2dDepthwise, Conv2dSame, build_conv_layer, make_conv


@pytest.mark.parametrize("k,s,d", [(1, 1, 1), (3, 1, 1), (3, 2, 1), (5, 2, 1), (7, 2, 1),
                                   (3, 1, 2), (5, 2, 2)])
@pytest.mark.parametrize("size", [7, 8])
def test_conv_paddings_give_ceil_size(k, s, d, size):
    x = torch.randn(1, 2, size, size)
    sym = make_conv(2, 4, k, s, dilation=d, padding="symmetric")
    same = make_conv(2, 4, k, s, dilation=d, padding="same")
    assert type(sym) is nn.Conv2d and sym.padding == (d * (k - 1) // 2,) * 2
    assert isinstance(same, Conv2dSame)
    expected = -(-size // s)
    assert sym(x).shape[-2:] == same(x).shape[-2:] == (expected, expected)


def test_conv2d_same_matches_tf_padding():
    torch.manual_seed(0)
    conv = Conv2dSame(2, 3, 3, stride=2, bias=False)
    x = torch.randn(1, 2, 8, 8)
    # TF 'same', k=3, s=2, H=8: total padding (4-1)*2 + 3 - 8 = 1, all of it bottom/right
    expected = F.conv2d(F.pad(x, [0, 1, 0, 1]), conv.weight, stride=2)
    torch.testing.assert_close(conv(x), expected)
    # stride 1, odd kernel: same as symmetric padding
    conv1 = Conv2dSame(2, 3, 5, bias=False)
    torch.testing.assert_close(conv1(x), F.conv2d(x, conv1.weight, padding=2))
    with pytest.raises(ValueError, match="padding"):
        Conv2dSame(2, 3, 3, padding=1)


def test_depthwise_convs_are_conv2d_depthwise_with_symmetric_padding_only():
    assert type(make_conv(8, 8, 5, 2, groups=8)) is Conv2dDepthwise
    assert type(make_conv(8, 8, 1, groups=8)) is nn.Conv2d  # no padding to move
    assert type(make_conv(8, 16, 3, groups=8)) is nn.Conv2d  # a channel multiplier
    assert type(make_conv(8, 8, 3, groups=4)) is nn.Conv2d
    assert isinstance(make_conv(8, 8, 3, groups=8, padding="same"), Conv2dSame)
    assert make_conv(8, 8, 5, groups=8).state_dict().keys() == {"weight"}


@pytest.mark.parametrize("size,k,s", [(2, 5, 1), (4, 5, 1), (4, 5, 2), (2, 3, 1), (1, 3, 1),
                                      (7, 5, 1), (8, 3, 2)])
def test_conv2d_depthwise_is_the_padded_conv_on_small_and_large_maps(size, k, s):
    """The function, its input gradient (bit for bit) and its weight gradient (up to summation
    order) are nn.Conv2d's; under no_grad, and where the map is not smaller than the kernel,
    it is nn.Conv2d's own path."""
    torch.manual_seed(0)
    dw = make_conv(6, 6, k, s, groups=6)
    ref = nn.Conv2d(6, 6, k, s, k // 2, groups=6, bias=False)
    ref.load_state_dict(dw.state_dict())
    x = torch.randn(3, 6, size, size).contiguous(memory_format=torch.channels_last)
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    outs = [dw(xs[0]), ref(xs[1])]
    assert torch.equal(outs[0], outs[1])
    g = torch.randn_like(outs[0])
    gx0, gw0 = torch.autograd.grad(outs[0], [xs[0], dw.weight], g)
    gx1, gw1 = torch.autograd.grad(outs[1], [xs[1], ref.weight], g)
    assert torch.equal(gx0, gx1)
    torch.testing.assert_close(gw0, gw1, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(dw(x), ref(x))


def test_conv2d_depthwise_traces_as_one_call():
    net = nn.Sequential(make_conv(4, 4, 5, groups=4))
    traced = torch.fx.symbolic_trace(net)
    calls = [n.target for n in traced.graph.nodes if n.op == "call_function"]
    assert [c.__name__ for c in calls] == ["depthwise_conv2d"]
    x = torch.randn(2, 4, 2, 2)
    assert torch.equal(traced(x), net(x))


def test_build_conv_layer():
    assert type(build_conv_layer(None, 2, 3, 3)) is nn.Conv2d
    assert isinstance(build_conv_layer({"type": "Conv2dSame"}, 2, 3, 3), Conv2dSame)
    with pytest.raises(KeyError, match="Conv2d"):
        build_conv_layer({"type": "Conv9d"}, 2, 3, 3)
    with pytest.raises(TypeError):
        build_conv_layer(3, 2, 3, 3)
    with pytest.raises(ValueError, match="padding"):
        make_conv(2, 3, 3, padding="valid")
