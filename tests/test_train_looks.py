"""The trainer's evaluation points: looks at one run (``evals_per_epoch``), which of them
validate (``eval_points``), and that neither changes the run (dropout included)."""

from __future__ import annotations

import pytest
import torch
from test_train import FAST, synthetic, tiny_net, tiny_spec

from scaling.ir import HeadSpec
from scaling.train import train


def test_evaluation_points_are_looks_at_the_same_run():
    """Three points an epoch look at the run of one point an epoch: the same schedule, weights
    and BN statistics at the epoch ends (precise BN on: looks inside an epoch draw their own
    batches), so every third look is the per-epoch one. Points are evenly spaced (fractional K
    too: the end is the same run), at most one per step."""
    data = synthetic()  # 12 steps an epoch
    looks = []
    one = train(tiny_spec(), data, epochs=2, **FAST)
    three = train(tiny_spec(), data, epochs=2, evals_per_epoch=3,
                  callback=lambda report, m: looks.append((report, m["step"])), **FAST)
    assert looks == [(1, 4), (2, 8), (3, 12), (4, 16), (5, 20), (6, 24)]
    for a, b in zip(one.model.state_dict().values(), three.model.state_dict().values()):
        assert torch.equal(a, b)
    keys = ("epoch", "val_top1", "val_loss", "lr", "samples", "step")
    assert ([{k: h[k] for k in keys} for h in three.history[2::3]]
            == [{k: h[k] for k in keys} for h in one.history])
    assert three.history[1]["epoch"] == 1 and three.history[1]["epochs"] == 8 / 12
    frac = train(tiny_spec(), data, epochs=2, evals_per_epoch=4.5, **FAST)
    assert [h["step"] for h in frac.history] == [3, 6, 8, 11, 14, 16, 19, 22, 24]
    assert frac.history[-1]["val_loss"] == one.history[-1]["val_loss"]
    many = train(tiny_net(), synthetic(100, 50), epochs=1, evals_per_epoch=5, **FAST)
    assert [h["step"] for h in many.history] == [1, 2]


def test_eval_points_validate_only_there_and_leave_the_run_alone():
    """``eval_points``: validation (and precise BN) at those points and at the end only; the
    callback still sees every point; the weights are those of the run that validates at all."""
    data = synthetic()  # 12 steps an epoch
    # dropout in the head: a look's precise-BN passes run it in train mode, and must not move
    # the global RNG that the training's own dropout draws from
    spec = tiny_spec().replace(head=HeadSpec(channels=None, dropout=0.5))
    seen = []
    one = train(spec, data, epochs=2, **FAST)
    every = train(spec, data, epochs=2, evals_per_epoch=4.5, **FAST)
    some = train(spec, data, epochs=2, evals_per_epoch=4.5, eval_points=(1, 3),
                 callback=lambda report, m: seen.append((report, m["val_top1"] is None)), **FAST)
    assert [r for r, skipped in seen if not skipped] == [1, 3, 9] and len(seen) == 9
    for run in (every, some):
        for a, b in zip(one.model.state_dict().values(), run.model.state_dict().values()):
            assert torch.equal(a, b)
        assert run.final_val_top1 == one.final_val_top1
    with pytest.raises(ValueError, match=r"eval_points=\(0,\)"):
        train(tiny_spec(), data, epochs=1, eval_points=(0,), **FAST)


def test_skipped_epoch_ends_keep_the_run_with_one_point_an_epoch():
    """``eval_points`` at one point an epoch: an epoch end that does not validate still runs its
    precise-BN pass (and its dropout draws), so the run is the one that validates every epoch."""
    spec = tiny_spec().replace(head=HeadSpec(channels=None, dropout=0.5))
    every = train(spec, synthetic(), epochs=3, **FAST)
    last = train(spec, synthetic(), epochs=3, eval_points=(3,), **FAST)
    assert [h["val_top1"] is None for h in last.history] == [True, True, False]
    for a, b in zip(every.model.state_dict().values(), last.model.state_dict().values()):
        assert torch.equal(a, b)
    assert last.final_val_top1 == every.final_val_top1
