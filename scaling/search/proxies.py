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

Every proxy works on its own copy of one model initialised under ``torch.manual_seed(seed)``, and
re-seeds before its forward pass, so the scores are a function of (spec, minibatch, seed).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from scaling.search.names import PROXIES, check_proxies

__all__ = ["PROXIES", "check_proxies", "compute_proxies", "grad_norm", "naswot", "param_count",
           "synflow"]

_GATES = (nn.Sigmoid, nn.Hardsigmoid)
_ACTS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.Hardswish, nn.SiLU, nn.GELU)


def _weights(model: nn.Module) -> Iterable[torch.Tensor]:
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            yield m.weight


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def synflow(model: nn.Module, input_shape: tuple[int, int, int], seed: int = 0) -> float | None:
    """log of the SynFlow score of ``model`` for (C, H, W) inputs; None if it under/overflows."""
    for dtype in (torch.float32, torch.float64):
        net = copy.deepcopy(model).to(dtype).eval()
        with torch.no_grad():
            for p in net.state_dict().values():
                if p.is_floating_point():
                    p.abs_()
        device = next(net.parameters()).device
        torch.manual_seed(seed)
        net.zero_grad(set_to_none=True)
        x = torch.ones((1, *input_shape), dtype=dtype, device=device)
        net(x).sum().backward()
        total = sum(float((w.detach().double() * w.grad.double()).sum())
                    for w in _weights(net) if w.grad is not None)
        if math.isfinite(total) and all(torch.isfinite(w.grad).all() for w in _weights(net)
                                        if w.grad is not None):
            break
    return _finite(math.log(total)) if total > 0 else None


def naswot(model: nn.Module, x: torch.Tensor, seed: int = 0) -> float | None:
    """log|det K| of the activation-code kernel of a minibatch ``x`` (Mellor et al. 2021)."""
    model = copy.deepcopy(model).train()
    n = x.shape[0]
    kernel = torch.zeros((n, n), dtype=torch.float64, device=x.device)

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        codes = (output.detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T).add_((1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(hook) for name, m in model.named_modules()
               if isinstance(m, _ACTS) and not isinstance(m, _GATES)
               and not name.endswith("scale_activation")]
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not handles:
        return None
    sign, logabs = torch.linalg.slogdet(kernel)
    return _finite(float(logabs)) if float(sign) != 0 else None


def grad_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    """Sum of the L2 norms of the cross-entropy gradients of the conv/linear weights."""
    model = copy.deepcopy(model).train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return float(sum(float(w.grad.norm()) for w in _weights(model) if w.grad is not None))


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def compute_proxies(spec_or_model: Any, batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                    names: Iterable[str] = PROXIES, seed: int = 0,
                    device: str | torch.device = "cpu",
                    build: Callable[[Any], nn.Module] | None = None) -> dict[str, float | None]:
    """Every proxy in ``names`` for a spec (built under ``torch.manual_seed(seed)``) or a model.

    ``batch`` = (float images, int labels), already normalised; needed by naswot and grad_norm.
    ``params`` of a spec is analytic (scaling.cost.complexity), so ``names=('params',)`` builds
    nothing.
    """
    names = check_proxies(names)
    out: dict[str, float | None] = {}
    model: nn.Module | None = spec_or_model if isinstance(spec_or_model, nn.Module) else None
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
    if "params" in names and "params" not in out:
        out["params"] = param_count(model)
    needs_batch = [n for n in names if n in ("naswot", "grad_norm")]
    if needs_batch and batch is None:
        raise ValueError(f"proxies {needs_batch} need a minibatch; got batch=None")
    if batch is not None:
        x, y = batch[0].to(device), batch[1].to(device)
    if "synflow" in names:
        shape = tuple(x.shape[1:]) if batch is not None else _input_shape(spec_or_model)
        out["synflow"] = synflow(model, shape, seed)
    if "naswot" in names:
        out["naswot"] = naswot(model, x, seed)
    if "grad_norm" in names:
        out["grad_norm"] = grad_norm(model, x, y, seed)
    return {n: out[n] for n in names}


def _input_shape(spec: Any) -> tuple[int, int, int]:
    if isinstance(spec, nn.Module):
        raise ValueError("synflow of a bare model needs a batch (for the input shape)")
    return (spec.in_channels, spec.resolution, spec.resolution)
