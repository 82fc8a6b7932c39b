"""The proxy trainer: budgets, determinism, divergence, pruning, precise BN, CLI; and a real
Fashion-MNIST run that a broken trainer cannot pass."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
import torch.nn as nn

from scaling.data import ImageData, TensorSplit, load_dataset
from scaling.ir import HeadSpec, NetworkSpec, StageSpec, StemSpec
from scaling.train import TrainConfig, evaluate, pruning_callback, train
from scaling.train.common import lr_at, param_groups, recalibrate_bn

FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def synthetic(n_train: int = 600, n_val: int = 200, seed: int = 0) -> ImageData:
    """10 classes: a fixed random 7x7 binary template per class, upscaled to 28x28, plus
    noise; easy enough for a tiny net to learn in a few dozen steps (no augmentation)."""
    g = torch.Generator().manual_seed(seed)
    templates = (torch.rand(10, 1, 7, 7, generator=g) < 0.5).float()
    templates = torch.nn.functional.interpolate(templates, size=(28, 28)) * 160

    def split(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = templates[y] + torch.randint(0, 96, (n, 1, 28, 28), generator=g)
        return TensorSplit(x.to(torch.uint8), y)

    return ImageData("synthetic", split(n_train), split(n_val), split(n_val), 10, 1, 28,
                     (0.5,), (0.3,), flip=False, pad=0)


def tiny_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10))


def tiny_spec() -> NetworkSpec:
    return NetworkSpec(stages=(StageSpec("mbconv", 1, 8, stride=2, expansion=1),
                               StageSpec("mbconv", 1, 16, stride=2, expansion=2)),
                       stem=StemSpec(channels=(8,), strides=(1,)), head=HeadSpec(channels=None),
                       in_channels=1, resolution=28, num_classes=10)


FAST = {"batch_size": 50, "threads": 1, "progress": False}


def test_learns_synthetic_and_reports():
    data = synthetic()
    res = train(tiny_net(), data, epochs=3, lr=0.2, device="cpu", **FAST)
    assert res.status == "ok" and len(res.history) == 3
    assert res.final_val_top1 >= 0.9  # chance is 0.1
    assert res.best_val_top1 == max(res.val_top1)
    assert res.train_loss[-1] < res.train_loss[0]
    assert res.samples == 3 * 600 and res.steps == 36 and res.images_per_s > 0
    assert res.channels_last and res.amp is None and res.device == "cpu"
    assert res.wall_time >= res.train_time > 0
    assert abs(evaluate(res.model, data, split="val") - res.final_val_top1) < 1e-12
    json.dumps(res.to_dict())  # plain data, no model


def test_auto_device_is_cuda_exactly_when_cuda_is_visible():
    """``device='auto'`` means CUDA when a GPU is visible, the CPU otherwise; amp follows."""
    from scaling.train.common import amp_dtype, resolve_device

    dev = resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cpu":
        assert amp_dtype("auto", dev) is None
    else:
        assert amp_dtype("auto", dev) in (torch.bfloat16, torch.float16)


def test_deterministic_same_seed():
    data = synthetic(200, 50)

    def run(seed, threads=1, epochs=2):
        torch.manual_seed(123)  # the global RNG state before train() must not matter
        res = train(tiny_spec(), data, epochs=epochs, seed=seed, batch_size=50, threads=threads,
                    precise_bn=2, progress=False)
        weights = torch.cat([p.detach().flatten() for p in res.model.parameters()])
        return [(h["train_loss"], h["val_top1"], h["val_loss"]) for h in res.history], weights

    h1, w1 = run(0)
    h2, w2 = run(0)
    assert h1 == h2 and torch.equal(w1, w2)
    h3, _ = run(1)
    assert h3 != h1
    n = torch.get_num_threads()  # torch's default thread count: also repeatable
    h4, w4 = run(0, threads=n, epochs=0.5)
    h5, w5 = run(0, threads=n, epochs=0.5)
    assert h4 == h5 and torch.equal(w4, w5)


def test_diverged_status_no_exception():
    res = train(tiny_net(), synthetic(), epochs=2, lr=1e6, **FAST)
    assert res.status == "diverged" and "non-finite" in res.message
    assert res.final_val_top1 is None and res.steps < 24
    assert not math.isfinite(res.history[-1]["train_loss"])


def test_budget_by_samples_and_epochs():
    data = synthetic()
    res = train(tiny_net(), data, samples=1020, precise_bn=0, **FAST)
    assert res.steps == 21 and res.samples == 1050  # rounded up to whole batches
    assert [h["samples"] for h in res.history] == [600, 1050]
    res = train(tiny_net(), data, epochs=0.5, **FAST)
    assert res.steps == 6 and len(res.history) == 1
    res = train(tiny_net(), data, epochs=5, samples=200, **FAST)  # the first budget reached
    assert res.steps == 4


def test_budget_by_seconds():
    res = train(tiny_net(), synthetic(), seconds=1.0, eval_every=1000, **FAST)
    assert res.status == "ok" and res.steps > 0
    assert 1.0 <= res.train_time < 4.0
    base_lr = TrainConfig(seconds=1.0, batch_size=50).base_lr
    assert res.history[-1]["lr"] < 0.05 * base_lr  # the schedule annealed by the deadline
    assert res.final_val_top1 is not None  # the last epoch is always evaluated


def test_lr_schedule_and_param_groups():
    lrs = [lr_at(p / 100, 1.0, 0.1) for p in range(101)]
    assert lrs[0] == 0 and abs(lrs[5] - 0.5) < 1e-9 and lrs[10] == 1.0 and lrs[100] < 1e-12
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # cosine decays monotonically
    assert abs(lr_at(0.55, 1.0, 0.1) - 0.5) < 1e-9  # halfway through the decay
    decay, no_decay = param_groups(tiny_net(), 1e-4)
    assert all(p.ndim > 1 for p in decay["params"]) and len(decay["params"]) == 3
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0
    assert TrainConfig(epochs=1, batch_size=512).base_lr == 0.2  # linear scaling rule


def test_callback_false_prunes_and_exception_propagates():
    data = synthetic()
    seen = []
    res = train(tiny_net(), data, epochs=4, callback=lambda e, m: seen.append(m) or e < 2,
                **FAST)
    assert res.status == "pruned" and len(res.history) == 2 and len(seen) == 2
    assert seen[0]["val_top1"] is not None and seen[0]["epoch"] == 1

    class Stop(Exception):
        pass

    def boom(epoch, metrics):
        raise Stop

    with pytest.raises(Stop) as info:
        train(tiny_net(), data, epochs=3, callback=boom, **FAST)
    assert len(info.value.result.history) == 1 and info.value.result.model is not None


def test_optuna_pruning():
    optuna = pytest.importorskip("optuna")
    data = synthetic(n_train=200, n_val=50)

    def objective(trial):
        return train(tiny_net(), data, epochs=3, callback=pruning_callback(trial),
                     **FAST).final_val_top1

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=1.5))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [1]


def test_only_optunas_trial_pruned_marks_a_run_pruned():
    optuna = pytest.importorskip("optuna")
    data = synthetic(n_train=100, n_val=50)

    class TrialPruned(Exception):  # same name, not Optuna's
        pass

    for exc, status in ((optuna.TrialPruned("cut"), "pruned"), (TrialPruned("x"), "ok")):
        def stop(epoch, metrics, exc=exc):
            raise exc

        with pytest.raises(type(exc)) as info:
            train(tiny_net(), data, epochs=2, callback=stop, **FAST)
        assert info.value.result.status == status


def test_precise_bn_is_the_plain_average():
    bn = nn.Sequential(nn.BatchNorm2d(3))
    batches = [torch.randn(8, 3, 4, 4) * (i + 1) + i for i in range(4)]
    assert recalibrate_bn(bn, iter(batches)) == 4
    means = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    assert torch.allclose(bn[0].running_mean, means, atol=1e-5)
    assert bn[0].momentum == 0.1 and bn[0].training  # restored


def test_evaluate_tensors_and_errors():
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [2.0, 1.0]]).view(4, 2, 1, 1)
    assert evaluate(model, x, torch.tensor([0, 1, 1, 0])) == 0.75
    with pytest.raises(TypeError, match="evaluate expects"):
        evaluate(model, [1, 2])


@pytest.mark.parametrize("kwargs, match", [
    ({}, "no budget"), ({"epochs": 0}, "epochs=0"), ({"epochs": 1, "optimizer": "adam"},
                                                     "optimizer='adam'"),
    ({"epochs": 1, "batch_size": 0}, "batch_size=0"), ({"epochs": 1, "warmup": 1.0}, "warmup"),
    ({"epochs": 1, "amp": "fp8"}, "amp='fp8'"), ({"epochs": 1, "device": "tpu9"}, "device"),
    ({"epochs": 1, "threads": 0}, "threads=0"),
    ({"epochs": 1, "evals_per_epoch": 0.5}, "evals_per_epoch=0.5"),
    ({"epochs": 1, "evals_per_epoch": True}, "evals_per_epoch=True"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train(tiny_net(), synthetic(20, 10), progress=False, **kwargs)


def test_spec_mismatch_and_wrong_output_are_clear():
    data = synthetic(60, 20)
    with pytest.raises(ValueError, match="in_channels=3"):
        train(tiny_spec().replace(in_channels=3), data, epochs=1)
    with pytest.raises(ValueError, match="resolution=32"):
        train(tiny_spec().replace(resolution=32), data, epochs=1)
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(784, 7))
    with pytest.raises(ValueError, match=r"expected \(N, 10\)"):
        train(wrong, data, epochs=1, **FAST)


def test_amp_bf16_on_cpu_runs():
    res = train(tiny_net(), synthetic(100, 20), epochs=1, amp="bf16", **FAST)
    assert res.status == "ok" and res.amp == "bfloat16"
    res = train(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), synthetic(100, 20), epochs=1,
                **FAST)
    assert not res.channels_last  # no convolution: nothing to gain


@pytest.mark.data
@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason=f"Fashion-MNIST absent from "
                    f"{FASHION_DIR} (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_small_ir_net():
    """A 3M-MAC IR net, 10,000 images seen (about 10-25 CPU seconds): chance is 10%; a trainer
    with a broken schedule, loss, BN handling or data pipeline stays far below 75%."""
    spec = NetworkSpec(stages=(StageSpec("mbconv", 1, 16, stride=1, expansion=1),
                               StageSpec("mbconv", 2, 24, stride=2, expansion=3),
                               StageSpec("mbconv", 2, 32, stride=2, expansion=3)),
                       stem=StemSpec(channels=(16,), strides=(1,)),
                       head=HeadSpec(channels=None), in_channels=1, resolution=28,
                       num_classes=10)
    data = load_dataset("fashion-mnist", val_size=2000, subset=5000)
    res = train(spec, data, epochs=2, batch_size=64, lr=0.1, augment=False, threads=1,
                eval_every=2, progress=False)
    assert res.status == "ok"
    assert res.final_val_top1 >= 0.75, res.history


def test_image_folder_through_dataloader(tmp_path):
    from PIL import Image

    for c, color in (("a", (250, 20, 20)), ("b", (20, 20, 250))):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.new("RGB", (20 + i, 18), color).save(tmp_path / c / f"{i}.png")
    data = load_dataset("imagefolder", tmp_path, val_size=4, resolution=16)
    assert data.test is None and data.num_classes == 2
    net = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))
    res = train(net, data, epochs=3, lr=0.2, precise_bn=2, **{**FAST, "batch_size": 4})
    assert res.status == "ok" and res.samples == 3 * 16 and res.final_val_top1 == 1.0


def _host_epoch(model: nn.Module, data: ImageData, batch_size: int) -> tuple[float, float]:
    """The old host-side way: per batch a float()/int() read of loss and correct count."""
    import torch.nn.functional as F

    from scaling.data import make_loader

    tf, loss_sum, correct, seen = data.transform(train=False), 0.0, 0, 0
    for x, y in make_loader(data.train, batch_size, shuffle=True, drop_last=True, seed=0):
        with torch.no_grad():
            out = model(tf(x))
        loss_sum += float(F.cross_entropy(out, y, label_smoothing=0.1)) * y.numel()
        correct += int((out.argmax(1) == y).sum())
        seen += y.numel()
    return loss_sum / seen, correct / seen


def test_device_side_metrics_equal_the_host_side_ones():
    """Loss, train and validation accuracy summed on the device and read once an epoch equal
    a per-batch host-side computation (lr=0: the weights stay, so the reference can replay)."""
    import copy

    import torch.nn.functional as F

    data = synthetic(n_train=300, n_val=130)
    torch.manual_seed(3)
    net = tiny_net()
    ref = copy.deepcopy(net).train()
    res = train(net, data, epochs=1, lr=0.0, momentum=0.0, augment=False, precise_bn=0,
                channels_last=False, eval_batch_size=64, device="cpu", **FAST)
    loss, top1 = _host_epoch(ref, data, FAST["batch_size"])
    h = res.history[0]
    assert math.isclose(h["train_loss"], loss, rel_tol=1e-5) and h["train_top1"] == top1
    ref.load_state_dict(res.model.state_dict())  # the running statistics of the epoch
    ref.eval()
    with torch.no_grad():
        tf = data.transform(train=False)
        outs = [(ref(tf(data.val.x[i:i + 64])), data.val.y[i:i + 64]) for i in range(0, 130, 64)]
    val_loss = sum(float(F.cross_entropy(o, y, reduction="sum")) for o, y in outs) / 130
    val_top1 = sum(int((o.argmax(1) == y).sum()) for o, y in outs) / 130
    assert h["val_top1"] == val_top1 and math.isclose(h["val_loss"], val_loss, rel_tol=1e-5)


def test_autotune_only_for_runs_that_repay_it():
    from scaling.train.common import AUTOTUNE_STEPS, autotune

    assert not autotune("auto", 300, None) and autotune("auto", AUTOTUNE_STEPS, None)
    assert autotune("auto", None, 3600.0) and not autotune("auto", None, 10.0)
    assert autotune(True, 1, None) and not autotune(False, 10**6, None)
    with pytest.raises(ValueError, match="benchmark='fast'"):
        TrainConfig(epochs=1, benchmark="fast")
    with pytest.raises(TypeError, match="compile"):
        TrainConfig(epochs=1, compile="yes")


def test_before_train_sees_the_model_and_changes_nothing():
    data = synthetic(n_train=200, n_val=100)
    seen = []

    def hook(model: nn.Module) -> None:
        seen.append(model)
        torch.manual_seed(123)  # global RNG use must not leak into the run
        torch.rand(1000)

    spec = tiny_spec().replace(head=HeadSpec(channels=None, dropout=0.5))  # draws from the RNG
    a = train(spec, data, epochs=1, device="cpu", before_train=hook, **FAST)
    b = train(spec, data, epochs=1, device="cpu", **FAST)
    assert seen and seen[0] is a.model
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"]
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(),
                                                 b.model.state_dict().values()))


@pytest.mark.parametrize("field", ["epochs", "samples", "seconds"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), 0, -1])
def test_budgets_must_be_finite_and_positive(field, value):
    with pytest.raises(ValueError, match=rf"{field}=.* is not allowed; expected None or a finite"):
        TrainConfig(**{field: value})


def test_evaluate_one_shape_pads_the_last_batch_and_keeps_the_accuracy():
    """``one_shape``: every forward pass at ``batch_size`` (the last batch padded, its padding
    dropped), with the same top-1 as plain batching."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 6 * 6, 10))
    shapes: list[int] = []
    model[0].register_forward_hook(lambda m, i, o: shapes.append(i[0].shape[0]))
    x, y = torch.randn(70, 1, 8, 8), torch.randint(0, 10, (70,))
    plain = evaluate(model, x, y, batch_size=32)
    assert shapes == [32, 32, 6]
    shapes.clear()
    assert evaluate(model, x, y, batch_size=32, one_shape=True) == plain
    assert shapes == [32, 32, 32]
