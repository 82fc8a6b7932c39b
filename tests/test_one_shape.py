"""One batch shape per trial (issue 13): on CUDA a trial's net meets a single batch size and
precision (proxies, training, precise BN, validation), because cuDNN plans every new shape.
These tests force the CUDA path on the CPU, so it runs without a GPU."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from scaling.bench.data import synthetic_data
from scaling.data import make_loader
from scaling.ir import HeadSpec, NetworkSpec, SESpec, StageSpec, StemSpec
from scaling.search import evaluators
from scaling.search.config import SearchConfig
from scaling.search.proxies import compute_proxies, synflow
from scaling.train import train
from scaling.train.common import evaluate_loader, pad_batch


def small_spec() -> NetworkSpec:
    return NetworkSpec(stages=(StageSpec("mbconv", 1, 8, stride=2, expansion=1),
                               StageSpec("mbconv", 2, 16, stride=2, expansion=3, se=SESpec(0.25))),
                       stem=StemSpec(channels=(8,), strides=(1,)), head=HeadSpec(channels=32),
                       in_channels=1, resolution=28, num_classes=10)


class ConvBatches:
    """The batch sizes every Conv2d of the process sees while active (a global forward hook)."""

    def __enter__(self) -> set[int]:
        self.sizes: set[int] = set()

        def hook(module: nn.Module, args: tuple) -> None:
            if isinstance(module, nn.Conv2d) and args and isinstance(args[0], torch.Tensor):
                self.sizes.add(int(args[0].shape[0]))

        self.handle = nn.modules.module.register_module_forward_pre_hook(hook)
        return self.sizes

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def test_pad_batch_repeats_rows_and_keeps_full_batches():
    x = torch.arange(3.0).view(3, 1)
    assert pad_batch(x, 3) is x
    assert pad_batch(x, 7).flatten().tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_padded_evaluation_equals_plain():
    data = synthetic_data(64, 70)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 14 * 14, 10))
    tf = data.transform(train=False)
    dev = torch.device("cpu")
    plain = evaluate_loader(model, make_loader(data.val, 70), tf, dev, None, False)
    with ConvBatches() as sizes:
        padded = evaluate_loader(model, make_loader(data.val, 32), tf, dev, None, False,
                                 pad_to=32)
    assert sizes == {32}  # 70 images = 32 + 32 + 6, the last padded to 32
    assert padded[0] == plain[0]
    assert math.isclose(padded[1], plain[1], rel_tol=1e-5)


@pytest.mark.parametrize("one_shape", [True, False])
def test_trainer_meets_one_batch_shape(one_shape):
    data = synthetic_data(100, 50)  # 100 = 3 x 32 + 4; 50 = 32 + 18
    with ConvBatches() as sizes:
        res = train(small_spec(), data, epochs=1, batch_size=32, precise_bn=2, device="cpu",
                    one_shape=one_shape, threads=1, progress=False, augment=False)
    assert res.status == "ok" and res.final_val_top1 is not None
    if one_shape:
        assert sizes == {32}
    else:
        assert sizes == {32, 50}  # validation at eval_batch_size 256: one batch of 50


def test_one_shape_changes_no_validation_figure():
    data = synthetic_data(100, 50)
    runs = [train(small_spec(), data, epochs=2, batch_size=32, device="cpu", one_shape=flag,
                  threads=1, progress=False, augment=False) for flag in (True, False)]
    assert [h["train_loss"] for h in runs[0].history] == [h["train_loss"] for h in runs[1].history]
    for a, b in zip(runs[0].history, runs[1].history):
        assert abs(a["val_top1"] - b["val_top1"]) <= 1 / 50
        assert math.isclose(a["val_loss"], b["val_loss"], rel_tol=1e-4)


def test_one_shape_rejects_other_values():
    with pytest.raises(ValueError, match="one_shape='gpu' is not allowed"):
        train(small_spec(), synthetic_data(40, 0), epochs=1, device="cpu", one_shape="gpu")


def test_synflow_is_independent_of_the_batch_and_close_under_bf16():
    torch.manual_seed(0)
    from scaling.nn.build import build_model

    model = build_model(small_spec()).to(memory_format=torch.channels_last)
    one = synflow(model, (1, 28, 28))
    assert one is not None
    assert math.isclose(synflow(model, (1, 28, 28), batch=16, channels_last=True), one,
                        rel_tol=1e-6)
    # bf16 rounds each layer to 8 bits of mantissa: the log-score moves by well under 1%
    bf16 = synflow(model, (1, 28, 28), batch=16, amp=torch.bfloat16, channels_last=True)
    assert bf16 is not None and abs(bf16 - one) < 0.01 * abs(one)


def test_a_trial_meets_one_shape_where_the_device_asks_for_it(monkeypatch, tmp_path):
    """The CUDA path on the CPU: proxies at the trial's batch and precision, then training,
    precise BN and validation, all at one batch size."""
    cfg = SearchConfig(study="one", device="cpu", epochs=1, batch_size=32, val_size=50,
                       subset=100, zc_batch=8, threads=1, out_dir=str(tmp_path),
                       proxies=("synflow", "naswot", "grad_norm"), quiet=True).validate()
    data = synthetic_data(100, 50)
    results = {}
    for flag in (True, False):
        monkeypatch.setattr(evaluators, "one_shape", lambda ctx, flag=flag: flag)
        ctx = evaluators.SearchContext(cfg, data=data)
        proxies: dict = {}

        def before_train(model, ctx=ctx, proxies=proxies):
            proxies.update(evaluators.compute_trial_proxies(ctx, small_spec(), model, 32))

        with ConvBatches() as sizes:
            res = evaluators.train_spec(ctx, small_spec(), before_train=before_train)
        assert res.status == "ok"
        results[flag] = (set(sizes), proxies)
    assert results[True][0] == {32}
    assert results[False][0] == {1, 8, 32, 50}  # synflow, proxies' minibatch, train, val
    for name in ("synflow", "naswot", "grad_norm"):
        assert results[True][1][name] is not None and math.isfinite(results[True][1][name])


def test_cpu_trials_keep_their_proxy_scores():
    """Off CUDA the default keeps the float32 minibatch of ``zc_batch``: the scores equal a
    direct :func:`compute_proxies` call on that minibatch."""
    cfg = SearchConfig(study="cpu", device="cpu", zc_batch=8, val_size=50, subset=100,
                       proxies=("synflow", "naswot", "grad_norm"), quiet=True).validate()
    ctx = evaluators.SearchContext(cfg, data=synthetic_data(100, 50))
    assert not evaluators.one_shape(ctx)
    got = evaluators.compute_trial_proxies(ctx, small_spec(), train_batch=32)
    want = compute_proxies(small_spec(), ctx.batch(), cfg.proxies, seed=cfg.seed,
                           channels_last=True)
    assert got == want
