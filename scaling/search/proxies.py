"""Zero-cost proxies: score an untrained network from one minibatch (Abdelfattah et al. 2021,
"Zero-Cost Proxies for Lightweight NAS").

- ``synflow`` (Tanaka et al. 2020): weights replaced by their absolute values, an all-ones input,
  eval mode (BN at init is the identity); score = sum over conv/linear weights of
  ``theta * dR/dtheta`` with R = sum of the outputs. Reported as ``log(score)``. Computed in
  float32 (CPU float64 convolutions take a slow path: 3.8 s instead of ~50 ms for a small
  MBConv net), and again in float64 only if float32 overflows.
- ``naswot`` (Mellor et al. 2021): binary codes ``x > 0`` of every non-gate activation's output
  on the minibatch (train mode), kernel ``K = C C^T + (1-C)(1-C)^T``; score = ``log|det K|``.
  For hswish/SiLU/GELU the code is the sign of the pre-activation (their output is > 0 iff it is).
- ``grad_norm``: sum over conv/linear weights of ``||dL/dW||_2`` for the cross-entropy of one
  minibatch (train mode).
- ``params``: trainable parameter count, the baseline proxy (analytic when given a spec).

Every proxy runs one model initialised under ``torch.manual_seed(seed)`` on its own copies of
the weights and buffers (``torch.func.functional_call``: the model is never deep-copied nor
changed) and re-seeds before its forward pass, so the scores are a function of (spec, minibatch,
seed). naswot and grad_norm share one forward pass. A trial that trains passes the model it
trains (``model=``), so a trial builds its net once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from scaling.search.names import PROXIES, check_proxies
from scaling.train.common import autocast

__all__ = ["PROXIES", "check_proxies", "compute_proxies", "grad_norm", "naswot", "param_count",
           "synflow"]

_GATES = (nn.Sigmoid, nn.Hardsigmoid)
_ACTS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardswish, nn.SiLU, nn.GELU)


def _weight_names(model: nn.Module) -> list[str]:
    """Names of the conv/linear weights, in module order (the proxies' sums run in this order)."""
    return [f"{name}.weight" if name else "weight" for name, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear))]


def _state(model: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``model`` passed through ``fn``, by name: the tensors a
    proxy runs the model on (``torch.func.functional_call``), so the model itself is never
    copied (a deepcopy cost ~15 ms a proxy) nor changed."""
    named = [*model.named_parameters(), *model.named_buffers()]
    return {k: fn(v.detach()) for k, v in named}


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def synflow(model: nn.Module, input_shape: tuple[int, int, int], seed: int = 0,
            batch: int = 1, amp: torch.dtype | None = None, channels_last: bool = False
            ) -> float | None:
    """log of the SynFlow score of ``model`` for (C, H, W) inputs; None if it under/overflows.

    ``batch``: the all-ones input repeated (eval mode: the rows do not interact, so the score
    is ``batch`` times the one-row score, and ``log(batch)`` is subtracted); ``amp``: under
    autocast to this dtype; ``channels_last``: the input in that layout. They let a trial's
    proxies run at the shape and precision it trains in (:func:`compute_proxies`)."""
    names, was_training = _weight_names(model), model.training
    model.eval()
    try:
        for dtype in (torch.float32, torch.float64):
            state = _state(model, lambda t, d=dtype: t.to(d).abs() if t.is_floating_point() else t)
            weights = [state[n].requires_grad_() for n in names]
            device = next(iter(state.values())).device
            torch.manual_seed(seed)
            x = torch.ones((batch, *input_shape), dtype=dtype, device=device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, amp if dtype == torch.float32 else None):
                out = torch.func.functional_call(model, state, (x,))
            grads = torch.autograd.grad(out.to(dtype).sum(), weights, allow_unused=True)
            pairs = [(w, g) for w, g in zip(weights, grads) if g is not None]
            total = sum(float((w.detach().double() * g.double()).sum()) for w, g in pairs)
            if math.isfinite(total) and all(torch.isfinite(g).all() for _, g in pairs):
                break
    finally:
        model.train(was_training)
    return _finite(math.log(total) - math.log(batch)) if total > 0 else None


def _batch_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None, seed: int,
                want_naswot: bool, amp: torch.dtype | None = None
                ) -> tuple[float | None, float | None]:
    """(naswot, grad_norm) from ONE train-mode forward of ``model`` on ``x`` (and one backward
    when ``y`` is given), on copies of its buffers (BatchNorm statistics) so the model is left
    as it was: both proxies see the same activations, so sharing the pass halves the work and
    changes neither score. None where a proxy is not asked for."""
    n, names, was_training = x.shape[0], _weight_names(model), model.training
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        # K = C C^T + (1-C)(1-C)^T = 2 C C^T - |c_i| - |c_j| + d: one product, not two. The
        # counts are integers <= d < 2^24, exact in float32, so K is the float64 one exactly.
        codes = (output.detach().reshape(n, -1) > 0).float()
        ones = codes.sum(1, dtype=torch.float64)
        kernel.add_(2 * (codes @ codes.T).double() - ones[:, None] - ones[None, :]
                    + codes.shape[1])

    handles = ([m.register_forward_hook(hook) for name, m in model.named_modules()
                if isinstance(m, _ACTS) and not isinstance(m, _GATES)
                and not name.endswith("scale_activation")] if want_naswot else [])
    state = _state(model, lambda t: t.clone())
    weights = [state[k].requires_grad_(y is not None) for k in names]
    model.train()
    try:
        torch.manual_seed(seed)
        with torch.set_grad_enabled(y is not None), autocast(x.device, amp):
            out = torch.func.functional_call(model, state, (x,)).float()
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    score = norm = None
    if handles:
        sign, logabs = torch.linalg.slogdet(kernel)
        score = _finite(float(logabs)) if float(sign) != 0 else None
    if y is not None:
        grads = torch.autograd.grad(nn.functional.cross_entropy(out, y), weights,
                                    allow_unused=True)
        norm = float(sum(float(g.norm()) for g in grads if g is not None))
    return score, norm


def naswot(model: nn.Module, x: torch.Tensor, seed: int = 0) -> float | None:
    """log|det K| of the activation-code kernel of a minibatch ``x`` (Mellor et al. 2021)."""
    return _batch_pass(model, x, None, seed, want_naswot=True)[0]


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    """Sum of the L2 norms of the cross-entropy gradients of the conv/linear weights."""
    return _batch_pass(model, x, y, seed, want_naswot=False)[1]  # type: ignore[return-value]


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def compute_proxies(spec_or_model: Any, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                    names: Iterable[str] = PROXIES, seed: int = 0,
                    device: str | torch.device = "cpu",
                    build: Callable[[Any], nn.Module] | None = None,
                    model: nn.Module | None = None, channels_last: bool = False,
                    one_shape: bool = False, amp: torch.dtype | None = None
                    ) -> dict[str, float | None]:
    """Every proxy in ``names`` for a spec (built under ``torch.manual_seed(seed)``) or a model.

    ``batch`` = (float images, int labels), already normalised; needed by naswot and grad_norm.
    ``params`` of a spec is analytic (scaling.cost.complexity), so ``names=('params',)`` builds
    nothing. ``model``: the spec's model already built (the one a trial trains, so a trial
    builds once); the proxies work on copies and leave it unchanged. ``channels_last``: run in
    that memory layout (the model is converted in place, as the trainer does): 1.5x faster for
    these nets on one CPU thread (``python -m scaling.bench gpu --device cpu``), scores equal
    up to float rounding. ``one_shape``: synflow runs at the minibatch's size too (the score
    is the same, :func:`synflow`), so every proxy meets the net at the one batch shape the trial
    trains at; ``amp``: every forward pass under autocast to that dtype (the trial's precision).
    Both keep a GPU trial from planning each layer again for the proxies' shapes and dtypes.
    """
    names = check_proxies(names)
    out: dict[str, float | None] = {}
    if isinstance(spec_or_model, nn.Module):
        model = spec_or_model
    if "params" in names and model is None:
        from scaling.cost import complexity

        out["params"] = complexity(spec_or_model).params
    if all(n == "params" for n in names):
        return out
    if model is None:
        if build is None:
            from scaling.nn.build import build_model as build
        torch.manual_seed(seed)
        model = build(spec_or_model)
    model = model.to(device)
    cl = channels_last and any(p.dim() == 4 for p in model.parameters())
    if cl:
        model = model.to(memory_format=torch.channels_last)
    if "params" in names and "params" not in out:
        out["params"] = param_count(model)
    needs_batch = [n for n in names if n in ("naswot", "grad_norm")]
    if needs_batch and batch is None:
        raise ValueError(f"proxies {needs_batch} need a minibatch; got batch=None")
    if batch is not None:
        x, y = batch[0].to(device), batch[1].to(device)
        if cl and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
    if "synflow" in names:
        shape = tuple(x.shape[1:]) if batch is not None else _input_shape(spec_or_model)
        rows = x.shape[0] if one_shape and batch is not None else 1
        out["synflow"] = synflow(model, shape, seed, batch=rows, amp=amp,
                                 channels_last=cl and one_shape)
    if needs_batch:
        out["naswot"], out["grad_norm"] = _batch_pass(
            model, x, y if "grad_norm" in names else None, seed, "naswot" in names, amp)
    return {n: out[n] for n in names}


def _input_shape(spec: Any) -> tuple[int, int, int]:
    if isinstance(spec, nn.Module):
        raise ValueError("synflow of a bare model needs a batch (for the input shape)")
    return (spec.in_channels, spec.resolution, spec.resolution)
