"""An inference form of a model: :func:`deploy` folds BatchNorms into the conv that feeds them.

A conv ``y = W * x (+ b)`` followed by an eval-mode BatchNorm ``gamma (y - mu) / sqrt(var + eps) +
beta`` is one conv with ``W' = W * s`` and ``b' = (b - mu) * s + beta``, ``s = gamma / sqrt(var +
eps)`` per output channel (Jacob et al. 2018, sec. 3.2). Which pairs fold, on any module
(torchvision's, timm's with ``BatchNormAct2d``), is :mod:`scaling.nn.fold`'s rule: only where the
output provably stays the same; the rest are named in ``deployed_unfolded`` and a warning. A
folded norm becomes ``nn.Identity`` (or its ``drop`` and ``act``), so module names stay and hooks
/ feature extractors still find them. The activations of this package's blocks compute in place
(:func:`scaling.nn.blocks.inplace`), and the weights are in ``channels_last`` memory format
(NHWC): on CPU (oneDNN) depthwise and 1x1 convs run much faster that way, and an NCHW input is
converted by the first conv; outputs are equal up to rounding.
Where torch has oneDNN, every plain conv with a large weight (>= 256K elements) becomes a
:class:`scaling.nn.packed.PackedConv2d` (a ``nn.Conv2d`` subclass with the same parameters) that
keeps its weight pre-packed for float32 CPU inference: without it resnet50 at batch 1 on one
thread ran 1.02-1.18x torchvision's speed (weight reorders on every call), with it 1.27-1.28x
(``python -m scaling.bench deploy``, AMD EPYC and Xeon; the mobile nets' small convs stay plain).
The result is in eval mode and meant for inference only: it has no running statistics to train.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from scaling.nn.blocks import INPLACE_TYPES
from scaling.nn.fold import fold_conv_bn, fold_pairs, module_pairs
from scaling.nn.packed import mkldnn_packing_available, pack_convs

__all__ = ["DeployWarning", "deploy", "fold_conv_bn"]


class DeployWarning(UserWarning):
    """:func:`deploy` left BatchNorms unfolded (the model is still exact, only slower)."""


def _own_inplace(module: nn.Module, own: bool = False) -> None:
    """Activations in place inside this package's modules only (safe there, see
    :func:`scaling.nn.blocks.inplace`); a foreign module's activation may feed a tensor that is
    read again, so it is left as it was. Containers inherit their parent's ownership."""
    if not isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        own = type(module).__module__.startswith("scaling.")
    for child in module.children():
        if own and isinstance(child, INPLACE_TYPES):
            child.inplace = True
        _own_inplace(child, own)


def _unfolded_message(names: list[str], total: int) -> str:
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"deploy: {len(names)} of {total} BatchNorms left unfolded (no conv feeds them "
            f"alone, or their forward is more than the norm): {shown}")


def deploy(model: nn.Module, copy_model: bool = True, channels_last: bool = True,
           pack: bool = True, strict: bool = False) -> nn.Module:
    """The inference form of ``model``: eval mode, BatchNorms folded into the conv that feeds
    them (:mod:`scaling.nn.fold`: only where the output provably stays the same), activations of
    this package's blocks in place, weights channels_last (unless ``channels_last=False``), plain
    convs with pre-packed oneDNN weights where torch has oneDNN (unless ``pack=False``; the
    module type stays). ``copy_model=False`` changes ``model`` itself.

    The result records ``deployed_folds`` (how many norms were folded), ``deployed_unfolded``
    (the names of the BatchNorms left, which still compute as before) and ``deployed_packs``.
    Norms left unfolded give a :class:`DeployWarning` naming them, or with ``strict=True`` a
    ValueError (before ``model`` is changed). The outputs equal the model's up to float rounding
    (tests/test_deploy.py)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"deploy takes an nn.Module, got {type(model).__name__}")
    if not isinstance(strict, bool):
        raise TypeError(f"deploy: strict={strict!r} is not allowed; expected True or False")
    if strict and not copy_model:  # refuse before changing the caller's model
        deploy(model, copy_model=True, channels_last=False, pack=False, strict=True)
    model = copy.deepcopy(model) if copy_model else model
    model.eval()
    total = sum(isinstance(m, _BatchNorm) for m in model.modules())
    folded = fold_pairs(model, module_pairs(model)[0])
    unfolded = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)]
    if unfolded and strict:
        raise ValueError(_unfolded_message(unfolded, total) + " (strict=True)")
    if unfolded:
        warnings.warn(_unfolded_message(unfolded, total), DeployWarning, stacklevel=2)
    _own_inplace(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    model.deployed_folds = len(folded)
    model.deployed_unfolded = tuple(unfolded)
    model.deployed_packs = pack_convs(model) if pack and mkldnn_packing_available() else 0
    return model
