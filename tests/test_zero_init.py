"""zero_init_last: every residual branch's last norm starts at zero, so each block that adds a
shortcut starts as the identity (Goyal et al. 2017); nothing else in the init changes."""

from __future__ import annotations

import pytest
import torch
from foundation_specs import small
from torch import nn

from scaling.bench.data import synthetic_data
from scaling.ir import StageSpec, StemSpec
from scaling.nn import init_weights
from scaling.nn.blocks import Block
from scaling.nn.build import build_model
from scaling.train import TrainConfig, train
from scaling.zoo import create_model, get_spec

NETS = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
        "efficientnet_v2_s", "shufflenet_v1_g3", "shufflenet_v2_x1_0", "regnet_y_400mf"]


def zeroed_norms(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and not m.weight.any()]


@pytest.mark.parametrize("name", NETS)
def test_one_zeroed_norm_per_residual_block_and_nothing_else_changes(name):
    spec = get_spec(name)
    torch.manual_seed(0)
    plain = build_model(spec)
    torch.manual_seed(0)
    zero = build_model(spec, zero_init_last=True)
    assert zeroed_norms(plain) == []
    zeroed = zeroed_norms(zero)
    # ShuffleNetV2's stride-1 "residual" is a channel split and concat: nothing is added
    assert len(zeroed) == sum(g.residual and g.block != "shuffle_v2" for g in spec.blocks())
    blocks = [m for m in zero.modules() if isinstance(m, Block)]
    assert {id(n) for b in blocks if (n := b.last_norm()) is not None} == {
        id(zero.get_submodule(n)) for n in zeroed}
    # no random numbers drawn: every other tensor is the plain init's, to the bit
    a, b = plain.state_dict(), zero.state_dict()
    differ = {k.rsplit(".", 1)[0] for k in a if not torch.equal(a[k], b[k])}
    assert differ == set(zeroed)


@pytest.mark.parametrize("block, kwargs", [
    ("basic", {}), ("bottleneck", {"expansion": 0.25}), ("mbconv", {"expansion": 4}),
    ("fused_mbconv", {"expansion": 4}),
])
def test_a_residual_block_starts_as_its_shortcut(block, kwargs):
    spec = small([StageSpec(block, 2, 16, **kwargs)], resolution=8,
                 stem=StemSpec(channels=(16,), kernels=(3,), strides=(1,)))
    net = build_model(spec, out_indices=(0,), zero_init_last=True).eval()
    stage = net.stages[0]
    x = torch.relu(torch.randn(2, 16, 8, 8))  # a post-activation input, as inside a net
    with torch.no_grad():
        for blk in stage:
            assert blk.geometry.residual
            torch.testing.assert_close(blk(x), x)


def test_blocks_without_a_shortcut_add_are_left_alone():
    net = create_model("shufflenet_v2_x0_5", zero_init_last=True)
    assert zeroed_norms(net) == []
    assert all(b.last_norm() is None for b in net.modules() if isinstance(b, Block))


def test_init_weights_and_train_reject_bad_input():
    with pytest.raises(TypeError, match="zero_init_last must be a bool"):
        init_weights(nn.Linear(2, 2), zero_init_last="yes")
    with pytest.raises(TypeError, match="zero_init_last must be a bool"):
        TrainConfig(epochs=1, zero_init_last=1)
    with pytest.raises(ValueError, match="zero_init_last=True applies to a net that train builds"):
        train(nn.Linear(2, 2), data=synthetic_data(8, 8), epochs=1, zero_init_last=True,
              progress=False)


def test_train_builds_the_net_with_zeroed_last_norms():
    spec = small([StageSpec("mbconv", 2, 8, expansion=2)], resolution=28, in_channels=1)
    seen: list[list[str]] = []
    for flag in (False, True):
        train(spec, synthetic_data(8, 8), samples=4, batch_size=4, device="cpu",
              zero_init_last=flag, progress=False,
              before_train=lambda m: seen.append(zeroed_norms(m)))
    assert seen[0] == [] and len(seen[1]) == 2


def test_a_search_trial_trains_with_it_when_asked(tmp_path):
    from scaling.search import evaluators
    from scaling.search.config import SearchConfig

    spec = small([StageSpec("mbconv", 2, 8, expansion=2)], resolution=28, in_channels=1)
    seen: list[list[str]] = []
    for flag in (False, True):
        cfg = SearchConfig(study="zi", device="cpu", epochs=1, batch_size=32, val_size=50,
                           subset=64, threads=1, out_dir=str(tmp_path), quiet=True,
                           zero_init_last=flag).validate()
        ctx = evaluators.SearchContext(cfg, data=synthetic_data(64, 50))
        evaluators.train_spec(ctx, spec, before_train=lambda m: seen.append(zeroed_norms(m)))
    assert seen[0] == [] and len(seen[1]) == 2
