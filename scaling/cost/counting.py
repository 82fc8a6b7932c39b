"""Cross-checks of :mod:`scaling.cost.complexity`: counts measured on a built model. Torch is
imported by the functions that run a model, not by this module, so the cost layer stays torch-free.

- :func:`count_params`: ``sum(p.numel())`` over the (deduplicated) parameters.
- :func:`traced_macs`: ``torch.utils.flop_counter.FlopCounterMode`` total / 2 (it counts 2 FLOPs per
  multiply-add of convolutions and matrix products and ignores biases, norms and pools), i.e. the
  conv + linear MACs of DESIGN.md section 4.
- :func:`traced_activations`: fvcore ``ActivationCountAnalysis`` total (outputs of conv and linear
  layers, batch 1).
- :func:`trace_counts`: all three in one pass, also on a ``meta``-device model (shapes only).
- :func:`fvcore_report`: fvcore's ``FlopCountAnalysis`` total and by-operator table, which also
  counts ``batch_norm`` and ``adaptive_avg_pool2d`` (so it depends on how a model is written).
- :func:`latency`: median forward time after warm-up.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from scaling.ir.base import is_int

if TYPE_CHECKING:  # torch is imported by the functions that run a model, not by this module
    import torch
    from torch import nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors once); buffers such as BN running stats excluded."""
    return sum(p.numel() for p in model.parameters())


def _check_model(model: Any) -> None:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _input(model: nn.Module, resolution: int, in_channels: int, batch: int = 1,
           device: str | torch.device | None = None) -> torch.Tensor:
    import torch

    for name, value, low in (("resolution", resolution, 1), ("in_channels", in_channels, 1),
                             ("batch", batch, 1)):
        if not is_int(value) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed; expected an int >= {low}")
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else "cpu"
    return torch.zeros(batch, in_channels, resolution, resolution, device=device)


@contextlib.contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the duration; the training flag is restored after."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def traced_macs(model: nn.Module, resolution: int = 224, in_channels: int = 3) -> int:
    """Conv + linear multiply-adds of one forward pass at batch 1 (FlopCounterMode total / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    _check_model(model)
    x = _input(model, resolution, in_channels)
    counter = FlopCounterMode(display=False)
    with _eval(model), counter:
        model(x)
    flops = counter.get_total_flops()
    return flops // 2


@dataclass(frozen=True)
class TraceCounts:
    """Counts of one traced forward pass at batch 1."""

    params: int
    macs: int
    activations: int


def trace_counts(model: nn.Module, resolution: int = 224, in_channels: int = 3) -> TraceCounts:
    """Params, FlopCounterMode MACs and activations in one forward pass at batch 1.

    Activations are the elements output by the ops fvcore's ActivationCountAnalysis counts
    (convolutions and matrix products: ``aten.convolution``, ``addmm``, ``mm``, ``bmm``), counted
    at dispatch instead of by a JIT trace, so this works on a model built on the ``meta`` device:
    shapes only, no memory and no arithmetic (a whole zoo sweep takes seconds).
    """
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    counted = {aten.convolution, aten.addmm, aten.mm, aten.bmm}

    class _Outputs(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if func.overloadpacket in counted:
                self.total += out.numel()
            return out

    _check_model(model)
    x = _input(model, resolution, in_channels)
    flops, outputs = FlopCounterMode(display=False), _Outputs()
    with _eval(model), flops, outputs:
        model(x)
    return TraceCounts(count_params(model), flops.get_total_flops() // 2, outputs.total)


def _quiet(analysis: Any) -> Any:
    return analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False) \
        .tracer_warnings("none")


def traced_activations(model: nn.Module, resolution: int = 224, in_channels: int = 3) -> int:
    """fvcore ``ActivationCountAnalysis`` total at batch 1 (elements output by conv/linear ops)."""
    from fvcore.nn import ActivationCountAnalysis

    _check_model(model)
    x = _input(model, resolution, in_channels)
    with _eval(model):
        return int(_quiet(ActivationCountAnalysis(model, (x,))).total())


@dataclass(frozen=True)
class FvcoreReport:
    """fvcore's view of one forward pass at batch 1: FLOP total (1 per MAC, plus norm and pool
    terms), FLOPs by operator, activation total, and the operators it skipped."""

    total: int
    by_operator: dict[str, int]
    activations: int
    unsupported: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "by_operator": dict(self.by_operator),
                "activations": self.activations, "unsupported": dict(self.unsupported)}


def fvcore_report(model: nn.Module, resolution: int = 224, in_channels: int = 3) -> FvcoreReport:
    """fvcore ``FlopCountAnalysis`` and ``ActivationCountAnalysis`` of ``model`` at batch 1."""
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    _check_model(model)
    x = _input(model, resolution, in_channels)
    with _eval(model):
        flops = _quiet(FlopCountAnalysis(model, (x,)))
        acts = _quiet(ActivationCountAnalysis(model, (x,)))
        by_op = {k: int(v) for k, v in sorted(flops.by_operator().items())}
        return FvcoreReport(total=int(flops.total()), by_operator=by_op,
                            activations=int(acts.total()),
                            unsupported=dict(flops.unsupported_ops()))


def fvcore_flops(model: nn.Module, resolution: int = 224, in_channels: int = 3) -> int:
    """fvcore ``FlopCountAnalysis(...).total()`` alone (what the benchmark times)."""
    from fvcore.nn import FlopCountAnalysis

    _check_model(model)
    x = _input(model, resolution, in_channels)
    with _eval(model):
        return int(_quiet(FlopCountAnalysis(model, (x,))).total())


def latency(model: nn.Module, resolution: int = 224, in_channels: int = 3, batch: int = 1,
            threads: int | None = None, device: str = "cpu", warmup: int = 3,
            repeats: int = 10) -> float:
    """Median seconds of one forward pass (eval, no grad) after ``warmup`` passes."""
    import torch

    _check_model(model)
    for name, value, low in (("warmup", warmup, 0), ("repeats", repeats, 1)):
        if not is_int(value) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed; expected an int >= {low}")
    if threads is not None:
        if not is_int(threads) or threads < 1:
            raise ValueError(f"threads={threads!r} is not allowed; expected an int >= 1")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} is not available (torch.cuda.is_available() is False)")
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    model.to(dev)
    x = _input(model, resolution, in_channels, batch, dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times = []
    try:
        with _eval(model):
            for _ in range(warmup):
                model(x)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                model(x)
                sync()
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(old_threads)
    return statistics.median(times)
