"""Conv -> BatchNorm pairs of any module, and folding each one that provably keeps the output.

A pair is a conv whose output feeds one norm and nothing else. They are found on the
``torch.fx`` graph of the module (convs and norms traced as leaves, so a norm subclass such as
timm's ``BatchNormAct2d`` is one call): a conv called once whose only user is a norm called once
with that output as its only argument. Where the module cannot be traced symbolically (control
flow on tensors, ``*args``), the fallback pairs are the neighbours of a plain ``nn.Sequential``
and the ``convN`` / ``norm{N}_name`` attributes of this package's residual blocks.

A pair folds (``W' = W s``, ``b' = (b - mu) s + beta``, ``s = gamma / sqrt(var + eps)``; Jacob et
al. 2018, sec. 3.2) when the norm is exactly ``nn.BatchNorm2d`` or ``nn.SyncBatchNorm`` (in eval
both compute only that affine map; it becomes ``nn.Identity``) and the conv a plain
``nn.Conv2d``. A norm subclass with an ``act`` submodule (timm's ``BatchNormAct2d``: norm, then
``drop``, then ``act``) is replaced by :class:`NormTail`, its ``drop`` and ``act``; any other
norm or conv subclass is replaced by ``nn.Identity``. Both only after a check on copies with
random running statistics and a random input gives the unfolded output; a pair that fails it is
left as it is (and reported by :func:`scaling.deploy`).
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from scaling.nn.layers import Conv2dDepthwise
from scaling.nn.packed import PackedConv2d

__all__ = ["NormTail", "fold_conv_bn", "fold_pairs", "module_pairs"]

#: norm types whose eval forward is exactly the affine normalisation
PLAIN_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)
#: conv types whose forward is exactly ``conv2d(x, weight, bias)``
PLAIN_CONVS = (nn.Conv2d, Conv2dDepthwise, PackedConv2d)


def fold_conv_bn(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """Fold the eval-mode ``bn`` into ``conv`` (in place; returned): weight scaled, bias added."""
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, _BatchNorm):
        raise TypeError(f"fold_conv_bn takes a Conv2d and a BatchNorm, got "
                        f"{type(conv).__name__} and {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("fold_conv_bn: the BatchNorm tracks no running statistics "
                         "(track_running_stats=False); it cannot be folded")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        bias = (bias - bn.running_mean) * scale
        if bn.bias is not None:
            bias = bias + bn.bias
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype))
    return conv


class NormTail(nn.Module):
    """What is left of a norm-activation module (timm's ``BatchNormAct2d``) once its norm is
    folded into the conv before it: ``act(drop(x))``, under the same attribute names."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop = drop
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


class _LeafTracer(torch.fx.Tracer):
    """fx tracer that keeps every conv and BatchNorm (subclasses too) as one call."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (nn.Conv2d, _BatchNorm)) or super().is_leaf_module(
            m, module_qualified_name)


def _traced_pairs(model: nn.Module) -> list[tuple[str, str]] | None:
    """The (conv, norm) module names adjacent on the fx graph; None where tracing fails."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = _LeafTracer().trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means: pair by names instead
        return None
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or calls[node.target] != 1 or len(node.users) != 1:
            continue
        user = next(iter(node.users))
        if (user.op == "call_module" and calls[user.target] == 1 and user.args == (node,)
                and not user.kwargs):
            pairs.append((str(node.target), str(user.target)))
    return pairs


def _named_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Pairs by construction: neighbours in a plain ``nn.Sequential`` (its forward chains them),
    and ``convN`` -> ``norm{N}_name`` in this package's blocks."""
    pairs = []
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        names = list(module._modules)
        if isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward:
            pairs += [(dot + a, dot + b) for a, b in zip(names, names[1:])]
        if type(module).__module__.startswith("scaling."):
            for i in range(1, 4):
                norm_name = getattr(module, f"norm{i}_name", None)
                if isinstance(norm_name, str) and f"conv{i}" in module._modules:
                    pairs.append((f"{dot}conv{i}", dot + norm_name))
    return pairs


def module_pairs(model: nn.Module) -> tuple[list[tuple[str, str]], bool]:
    """Candidate (conv name, norm name) pairs of ``model`` and whether fx found them."""
    traced = _traced_pairs(model)
    return (traced, True) if traced is not None else (_named_pairs(model), False)


def _replacement(bn: _BatchNorm) -> nn.Module:
    act = getattr(bn, "act", None)
    if type(bn) in PLAIN_NORMS or not isinstance(act, nn.Module):
        return nn.Identity()
    drop = getattr(bn, "drop", None)
    return NormTail(drop if isinstance(drop, nn.Module) else nn.Identity(), act)


def _checked(conv: nn.Conv2d, bn: _BatchNorm, tail: nn.Module) -> bool:
    """Whether folding gives the unfolded output on copies with random statistics."""
    c, b, t = copy.deepcopy((conv, bn, tail))
    g = torch.Generator().manual_seed(0)
    n, w = b.num_features, c.weight
    try:
        with torch.no_grad():
            b.running_mean.copy_(torch.randn(n, generator=g))
            b.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            if b.weight is not None:
                b.weight.copy_(torch.rand(n, generator=g) + 0.5)
            if b.bias is not None:
                b.bias.copy_(torch.randn(n, generator=g))
            c.eval(), b.eval(), t.eval()
            size = max((k - 1) * d + 3 for k, d in zip(c.kernel_size, c.dilation))
            x = torch.randn(2, c.in_channels, size, size, generator=g).to(w.device, w.dtype)
            ref = b(c(x))
            out = t(fold_conv_bn(c, b)(x))
    except Exception:  # noqa: BLE001 - a module that cannot run this check is not folded
        return False
    tol = 1e-4 * max(1.0, ref.abs().max().item())
    return out.shape == ref.shape and bool(torch.allclose(out, ref, rtol=1e-4, atol=tol))


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    model.get_submodule(parent)._modules[leaf] = module


def fold_pairs(model: nn.Module, pairs: list[tuple[str, str]]) -> list[str]:
    """Fold each (conv, norm) pair that provably keeps the output (module docstring), in place;
    returns the names of the folded norms."""
    folded = []
    for conv_name, bn_name in pairs:
        try:
            conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        except AttributeError:  # already replaced (a pair listed twice)
            continue
        if (not isinstance(conv, nn.Conv2d) or not isinstance(bn, _BatchNorm)
                or bn.running_mean is None or bn.running_var is None
                or conv.out_channels != bn.num_features or bn.training):
            continue
        tail = _replacement(bn)
        plain = type(conv) in PLAIN_CONVS and type(bn) in PLAIN_NORMS
        if plain or _checked(conv, bn, tail):
            fold_conv_bn(conv, bn)
            _set(model, bn_name, tail)
            folded.append(bn_name)
    return folded
