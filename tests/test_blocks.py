"""Blocks: parameter counts written out by hand, structure and semantics of each block type."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from foundation_specs import BLOCK_SPECS, small
from torch import nn

from scaling.cost import complexity
from scaling.ir import NetworkSpec, NormSpec, StageSpec, StemSpec
from scaling.ir.codec import decode_stage, encode_stage
from scaling.ir.registry import BLOCK_TYPES
from scaling.nn.blocks import BasicBlock, Block, build_block
from scaling.nn.build import build_model
from scaling.nn.layers import DropPath, channel_shuffle


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# Hand counts. n = parameters per channel of a norm layer (2 for BN/GN/LN, 0 for IN); every
# spec has a 3x3 stem 3 -> 8 and a linear classifier to 10 classes.
def stem(n):
    return 3 * 3 * 3 * 8 + n * 8


def fc(c):
    return c * 10 + 10


def hand_basic(n):
    s0 = 2 * (3 * 3 * 8 * 8 + n * 8 + 3 * 3 * 8 * 8 + n * 8)
    s1 = (3 * 3 * 8 * 16 + n * 16 + 3 * 3 * 16 * 16 + n * 16 + 8 * 16 + n * 16  # + projection
          + 3 * 3 * 16 * 16 + n * 16 + 3 * 3 * 16 * 16 + n * 16)
    return stem(n) + s0 + s1 + fc(16)


def hand_bottleneck(n):
    # stage 0: mid = 16 * 0.25 = 4
    s0 = (8 * 4 + n * 4 + 3 * 3 * 4 * 4 + n * 4 + 4 * 16 + n * 16 + 8 * 16 + n * 16
          + 16 * 4 + n * 4 + 3 * 3 * 4 * 4 + n * 4 + 4 * 16 + n * 16)
    # stage 1: mid = 32 * 0.5 = 16, 2 groups, SE squeeze = floor(in * 0.25): 4 then 8
    s1 = (16 * 16 + n * 16 + 3 * 3 * 8 * 16 + n * 16 + (16 * 4 + 4 + 4 * 16 + 16)
          + 16 * 32 + n * 32 + 16 * 32 + n * 32
          + 32 * 16 + n * 16 + 3 * 3 * 8 * 16 + n * 16 + (16 * 8 + 8 + 8 * 16 + 16)
          + 16 * 32 + n * 32)
    # stage 2: mid 16, group width 4 -> 4 groups; avg-pool + 1x1 projection (stride 2)
    s2 = 32 * 16 + n * 16 + 3 * 3 * 4 * 16 + n * 16 + 16 * 32 + n * 32 + 32 * 32 + n * 32
    return stem(n) + s0 + s1 + s2 + fc(32)


def hand_ds(n):
    s0 = 3 * 3 * 1 * 8 + n * 8 + 8 * 16 + n * 16
    s1 = (3 * 3 * 1 * 32 + n * 32 + 32 * 24 + n * 24      # in 16, mid 32 (depth multiplier 2)
          + 3 * 3 * 1 * 48 + n * 48 + 48 * 24 + n * 24)  # in 24, mid 48
    return stem(n) + s0 + s1 + fc(24)


def hand_mbconv(n):
    s0 = 3 * 3 * 8 + n * 8 + 8 * 8 + n * 8  # e=1: no expand conv
    # SE on mid, divisor 8: squeeze make_divisible(32 // 4) = 8, make_divisible(64 // 4) = 16
    s1 = (8 * 32 + n * 32 + 5 * 5 * 32 + n * 32 + (32 * 8 + 8 + 8 * 32 + 32) + 32 * 16 + n * 16
          + 16 * 64 + n * 64 + 5 * 5 * 64 + n * 64 + (64 * 16 + 16 + 16 * 64 + 64)
          + 64 * 16 + n * 16)
    # mid 48, SE on input: squeeze 16 // 4 = 4
    s2 = 2 * (16 * 48 + n * 48 + 3 * 3 * 48 + n * 48 + (48 * 4 + 4 + 4 * 48 + 48)
              + 48 * 16 + n * 16)
    return stem(n) + s0 + s1 + s2 + fc(16)


def hand_fused(n):
    s0 = 2 * (3 * 3 * 8 * 8 + n * 8)  # e=1: a single kxk conv
    s1 = (3 * 3 * 8 * 32 + n * 32 + 32 * 16 + n * 16
          + 3 * 3 * 16 * 64 + n * 64 + 64 * 16 + n * 16)
    s2 = 3 * 3 * 16 * 32 + n * 32 + (32 * 4 + 4 + 4 * 32 + 32) + 32 * 24 + n * 24
    return stem(n) + s0 + s1 + s2 + fc(24)


def hand_shuffle_v1(n):
    # stage 0: mid = 24 * 0.25 = 6; block 0 dense first 1x1, branch 24 - 8 = 16
    s0 = (8 * 6 + n * 6 + 3 * 3 * 6 + n * 6 + (6 // 2) * 16 + n * 16
          + (24 // 2) * 6 + n * 6 + 3 * 3 * 6 + n * 6 + (6 // 2) * 24 + n * 24)
    # stage 1: mid 12, branch 48 - 24 = 24
    s1 = ((24 // 2) * 12 + n * 12 + 3 * 3 * 12 + n * 12 + (12 // 2) * 24 + n * 24
          + (48 // 2) * 12 + n * 12 + 3 * 3 * 12 + n * 12 + (12 // 2) * 48 + n * 48)
    return stem(n) + s0 + s1 + fc(48)


def hand_shuffle_v2(n):
    s0 = (3 * 3 * 8 + n * 8 + 8 * 8 + n * 8                           # branch1, in 8
          + 8 * 8 + n * 8 + 3 * 3 * 8 + n * 8 + 8 * 8 + n * 8          # branch2, in 8
          + 8 * 8 + n * 8 + 3 * 3 * 8 + n * 8 + 8 * 8 + n * 8)         # stride 1, half of 16
    s1 = (5 * 5 * 16 + n * 16 + 16 * 16 + n * 16
          + 16 * 16 + n * 16 + 5 * 5 * 16 + n * 16 + 16 * 16 + n * 16
          + 16 * 16 + n * 16 + 5 * 5 * 16 + n * 16 + 16 * 16 + n * 16)
    return stem(n) + s0 + s1 + fc(32)


HAND = {"basic": hand_basic, "bottleneck": hand_bottleneck, "ds": hand_ds,
        "mbconv": hand_mbconv, "fused_mbconv": hand_fused, "shuffle_v1": hand_shuffle_v1,
        "shuffle_v2": hand_shuffle_v2}


@pytest.mark.parametrize("block", sorted(HAND))
@pytest.mark.parametrize("norm,n", [(NormSpec("BN"), 2), (NormSpec("IN"), 0)])
def test_param_count_by_hand(block, norm, n):
    spec = BLOCK_SPECS[block].replace(norm=norm)
    assert n_params(build_model(spec)) == HAND[block](n)


def test_prelu_has_one_slope_per_activation_position():
    spec = BLOCK_SPECS["basic"]
    prelu = spec.replace(stages=tuple(s.replace(activation="prelu") for s in spec.stages))
    # 4 basic blocks, 2 activations each (after bn1, after the addition)
    assert n_params(build_model(prelu)) == hand_basic(2) + 4 * 2


def test_every_block_type_is_registered():
    for name in ("basic", "bottleneck", "ds", "mbconv", "fused_mbconv", "shuffle_v1",
                 "shuffle_v2"):
        assert issubclass(BLOCK_TYPES[name].module_class(), Block)


def test_a_block_type_is_registered_once():
    basic = BLOCK_TYPES["basic"]
    with pytest.raises(KeyError, match="name 'basic'"):
        BLOCK_TYPES.register(basic)
    with pytest.raises(KeyError, match="code 'bs'"):
        BLOCK_TYPES.register(dataclasses.replace(basic, name="basic_again"))
    with pytest.raises(ValueError, match="residual_rule"):
        dataclasses.replace(basic, residual_rule="sometimes")
    assert len({r.code for r in BLOCK_TYPES}) == len(BLOCK_TYPES.names)


def test_a_new_block_type_is_one_record(monkeypatch):
    """A record alone makes a block type: spec, codec, geometry, cost and builder all follow."""
    plain = dataclasses.replace(BLOCK_TYPES["basic"], name="plain", code="pl",
                                residual_rule="none")
    monkeypatch.setitem(BLOCK_TYPES._records, "plain", plain)
    stage = StageSpec("plain", 2, 16, stride=2)
    assert decode_stage(encode_stage(stage)) == stage
    assert encode_stage(stage).startswith("pl_")
    spec = NetworkSpec(stages=(stage,), stem=StemSpec(channels=(8,)), resolution=32,
                       num_classes=10)
    model = build_model(spec)
    assert all(type(b) is BasicBlock and b.downsample is None for b in model.stages[0])
    cost = complexity(spec)
    assert n_params(model) == cost.params
    as_basic = complexity(spec.replace(stages=(stage.replace(block="basic", skip=False),)))
    assert (cost.params, cost.macs) == (as_basic.params, as_basic.macs)
    with pytest.raises(ValueError, match="stage.groups"):
        StageSpec("plain", 1, 16, groups=2)


# -- structure and semantics --------------------------------------------------------------------
def blocks_of(spec, **kw):
    model = build_model(spec, **kw)
    return [b for stage in model.stages for b in stage]


def test_basic_block_names_match_torchvision():
    first = blocks_of(BLOCK_SPECS["basic"])[2]
    names = {k for k, _ in first.named_parameters()}
    assert names == {"conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight",
                     "bn2.bias", "downsample.0.weight", "downsample.1.weight",
                     "downsample.1.bias"}
    gn = BLOCK_SPECS["basic"].replace(norm=NormSpec("GN", num_groups=2))
    assert hasattr(blocks_of(gn)[0], "gn1")


def test_residual_identity_when_branch_is_zeroed():
    torch.manual_seed(0)
    spec = small([StageSpec("basic", 1, 8), StageSpec("mbconv", 1, 8, expansion=2)])
    basic, mb = blocks_of(spec)
    basic.eval()
    mb.eval()
    with torch.no_grad():
        basic.bn2.weight.zero_()
        basic.bn2.bias.zero_()
        mb.block[-1][1].weight.zero_()
        mb.block[-1][1].bias.zero_()
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(basic(x), torch.relu(x))
    torch.testing.assert_close(mb(x), x)


def test_bottleneck_style_and_avgpool_shortcut():
    blocks = blocks_of(BLOCK_SPECS["bottleneck"])
    pytorch_style, caffe_style = blocks[2], blocks[4]
    assert (pytorch_style.conv1.stride, pytorch_style.conv2.stride) == ((1, 1), (2, 2))
    assert (caffe_style.conv1.stride, caffe_style.conv2.stride) == ((2, 2), (1, 1))
    assert pytorch_style.conv2.groups == 2 and caffe_style.conv2.groups == 4
    pool, conv, _ = caffe_style.downsample
    assert isinstance(pool, nn.AvgPool2d) and pool.ceil_mode and not pool.count_include_pad
    assert pool.kernel_size == pool.stride == 2 and conv.stride == (1, 1)
    assert pytorch_style.se.fc1.out_channels == pytorch_style.geometry.squeeze == 4


def test_mbconv_structure_follows_torchvision():
    blocks = blocks_of(BLOCK_SPECS["mbconv"])
    assert len(blocks[0].block) == 2  # e=1: depthwise + project
    expand, dw, se, project = blocks[1].block
    assert dw[0].groups == 32 and dw[0].kernel_size == (5, 5) and dw[0].stride == (2, 2)
    assert se.fc1.out_channels == 8 and isinstance(se.scale_activation, nn.Hardsigmoid)
    assert len(project) == 2  # conv + norm, no activation
    assert isinstance(blocks[1].block[0][2], nn.Hardswish)


def test_drop_path_only_on_residual_blocks():
    spec = BLOCK_SPECS["mbconv"]
    geoms = spec.blocks()
    for g, block in zip(geoms, blocks_of(spec)):
        if g.residual and g.drop_path > 0:
            assert isinstance(block.drop_path, DropPath) and block.drop_path.p == g.drop_path
        else:
            assert isinstance(block.drop_path, nn.Identity)
    assert [round(g.drop_path, 6) for g in geoms] == [0.0, 0.04, 0.08, 0.12, 0.16]


def test_shuffle_v1_concat_and_groups():
    torch.manual_seed(0)
    b0, b1 = blocks_of(BLOCK_SPECS["shuffle_v1"])[:2]
    assert b0.conv1_1[0].groups == 1 and b1.conv1_1[0].groups == 2
    assert b0.conv1_2[0].groups == 2 and b0.conv2[0].groups == 6
    b0.eval()
    x = torch.randn(2, 8, 8, 8)
    out = b0(x)
    assert out.shape == (2, 24, 4, 4)
    torch.testing.assert_close(out[:, :8], torch.relu(nn.AvgPool2d(3, 2, 1)(x)))


def test_shuffle_v2_keeps_half_of_the_input():
    torch.manual_seed(0)
    blocks = blocks_of(BLOCK_SPECS["shuffle_v2"])
    s2, s1 = blocks[0], blocks[1]
    assert s1.branch1 is None and len(s2.branch1) == 5 and len(s2.branch2) == 8
    s1.eval()
    x = torch.randn(2, 16, 4, 4)
    out = s1(x)
    torch.testing.assert_close(out[:, 0::2], x[:, :8])
    torch.testing.assert_close(channel_shuffle(out, 8)[:, :8], x[:, :8])


def test_block_rejects_mismatched_geometry():
    spec = BLOCK_SPECS["basic"]
    g = spec.blocks()[0]
    with pytest.raises(ValueError, match="geometry.block"):
        BasicBlock(g, StageSpec("ds", 1, 8), spec.norm)
    with pytest.raises(TypeError, match="BlockGeometry"):
        BasicBlock({"block": "basic"}, spec.stages[0], spec.norm)
    assert isinstance(build_block(g, spec.stages[0], spec.norm), BasicBlock)
