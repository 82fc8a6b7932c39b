"""An inference form of a built model: :func:`deploy` folds every BatchNorm into the conv before it.

A conv ``y = W * x (+ b)`` followed by an eval-mode BatchNorm ``gamma (y - mu) / sqrt(var + eps) +
beta`` is one conv with ``W' = W * s`` and ``b' = (b - mu) * s + beta``, ``s = gamma / sqrt(var +
eps)`` per output channel (Jacob et al. 2018, sec. 3.2). The folded norm becomes ``nn.Identity``,
so module names (``stem.0.0``, ``block.1.0`` ...) stay and hooks / feature extractors still find
them. Activations compute in place (:func:`scaling.nn.blocks.inplace`), and the weights are in
``channels_last`` memory format (NHWC): on CPU (oneDNN) depthwise and 1x1 convs run much faster
that way, and an NCHW input is converted by the first conv; outputs are equal up to rounding.
Where torch has oneDNN, every plain conv with a large weight (>= 256K elements) becomes a
:class:`scaling.nn.packed.PackedConv2d` (a ``nn.Conv2d`` subclass with the same parameters) that
keeps its weight pre-packed for float32 CPU inference: without it resnet50 at batch 1 on one
thread ran 1.02-1.18x torchvision's speed (weight reorders on every call), with it 1.27-1.28x
(``python -m scaling.bench deploy``, AMD EPYC and Xeon; the mobile nets' small convs stay plain).
The result is in eval mode and meant for inference only: it has no running statistics to train.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from scaling.nn.blocks import inplace
from scaling.nn.packed import mkldnn_packing_available, pack_convs

__all__ = ["deploy", "fold_conv_bn"]


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


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, _BatchNorm)
            and bn.running_mean is not None and conv.out_channels == bn.num_features)


def _fold_children(module: nn.Module) -> int:
    """Fold conv -> BN pairs among ``module``'s direct children: consecutive entries of a
    Sequential, or the ``convN`` / ``norm{N}_name`` pairs of the residual blocks."""
    folded = 0
    names = list(module._modules)
    pairs = list(zip(names, names[1:])) if isinstance(module, nn.Sequential) else []
    for i in range(1, 4):
        norm_name = getattr(module, f"norm{i}_name", None)
        if isinstance(norm_name, str) and f"conv{i}" in module._modules:
            pairs.append((f"conv{i}", norm_name))
    for conv_name, bn_name in pairs:
        conv, bn = module._modules[conv_name], module._modules[bn_name]
        if _foldable(conv, bn):
            fold_conv_bn(conv, bn)
            module._modules[bn_name] = nn.Identity()
            folded += 1
    return folded


def deploy(model: nn.Module, copy_model: bool = True, channels_last: bool = True,
           pack: bool = True) -> nn.Module:
    """The inference form of ``model``: eval mode, every BatchNorm that follows a conv folded into
    it, activations in place, weights channels_last (unless ``channels_last=False``), plain convs
    with pre-packed oneDNN weights where torch has oneDNN (unless ``pack=False``; the module type
    stays, ``model.deployed_packs`` counts them). ``copy_model=False`` changes ``model`` itself.
    The logits equal the unfused model's up to float rounding (tests/test_deploy.py: max abs
    difference <= 1e-4)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"deploy takes an nn.Module, got {type(model).__name__}")
    model = copy.deepcopy(model) if copy_model else model
    model.eval()
    folded = sum(_fold_children(m) for m in list(model.modules()))
    inplace(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    model.deployed_folds = folded
    model.deployed_packs = pack_convs(model) if pack and mkldnn_packing_available() else 0
    return model
