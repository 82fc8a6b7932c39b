"""A conv whose weight is kept pre-packed in oneDNN's layout for CPU inference.

In eager PyTorch a float32 CPU conv reorders its weight into oneDNN's blocked layout on every call,
and a 1x1 stride-1 conv at batch < 16 on one thread does not use oneDNN at all (it falls back to an
im2col/GEMM path): on resnet50 at batch 1 the weight reorders alone took ~16 of ~110 ms per
forward. :class:`PackedConv2d` reorders the weight once per input shape
(``torch.ops.mkldnn._reorder_convolution_weight``, the prepacking torch.compile's CPU backend does
at freezing) and runs ``torch.ops.mkldnn._convolution_pointwise`` with it; outputs equal
``nn.Conv2d``'s up to float rounding, in channels_last layout. Packing pays for large weights
(the reorder saved is proportional to the weight) and is a wash or a loss for small ones, where
the packed call's ~25 us extra per-call overhead and CPU-dependent kernel choice decide: measured
per conv at batch 1, one thread, resnet50's 3x3 512 and 1x1 1024/2048 convs ran up to 2.7x faster,
mobilenet_v3_large's 1x1 convs of 16K-54K weights lost 10-40 us each; on a Xeon, packing every
conv of >= 64K weights cost mobilenet_v2/v3 and efficientnet_b0 2-7%. So :func:`pack_convs` packs
only convs with >= :data:`MIN_WEIGHT` (256K) weights, which keeps nearly all of resnet50's gain.
At run time everything else (autograd, other devices and dtypes, tracing,
``torch.compile``/``torch.export``, a 1x1 spatial input) takes the plain ``nn.Conv2d`` path.

The module keeps ``weight`` and ``bias`` as ordinary parameters (state dicts, hooks and
``isinstance(m, nn.Conv2d)`` work as before); the packed copy is a cache keyed by the input shape,
the thread count and the weight's identity and version, so ``load_state_dict`` or an in-place edit
of the weight repacks on the next call. Memory: one extra copy of each packed conv weight per cached
shape (at most :data:`MAX_SHAPES`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from scaling.ir.base import is_int
from scaling.nn.layers import SqueezeExcite

__all__ = ["MAX_SHAPES", "MIN_WEIGHT", "PackedConv2d", "mkldnn_packing_available",
           "pack_convs"]

#: input shapes a PackedConv2d keeps a packed weight for (the cache is cleared past this)
MAX_SHAPES = 4
#: pack_convs packs convs whose weight has at least this many elements (1 MiB in float32)
MIN_WEIGHT = 1 << 18


def mkldnn_packing_available() -> bool:
    """Whether this torch build has oneDNN (mkldnn) and its prepacked-conv ops."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        ops = torch.ops.mkldnn
        return bool(ops._convolution_pointwise.default and ops._reorder_convolution_weight.default)
    except (AttributeError, RuntimeError):
        return False


def _plain_path(x: Any) -> bool:
    """True when the prepacked oneDNN call cannot or should not run for input ``x``."""
    if isinstance(x, torch.fx.Proxy) or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    return (x.device.type != "cpu" or x.dtype != torch.float32 or x.dim() != 4
            or x.shape[-1] * x.shape[-2] <= 1 or not torch.backends.mkldnn.enabled)


class PackedConv2d(nn.Conv2d):
    """``nn.Conv2d`` with a pre-packed oneDNN weight for float32 CPU inference (module docstring).

    Built from a conv by :meth:`from_conv` (sharing its parameters); only ``padding_mode='zeros'``
    with numeric padding.
    """

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> PackedConv2d:
        """A PackedConv2d computing what ``conv`` does, with ``conv``'s own parameters."""
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"PackedConv2d.from_conv takes an nn.Conv2d (not a subclass), got "
                            f"{type(conv).__name__}")
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"PackedConv2d.from_conv: padding={conv.padding!r}, padding_mode="
                             f"{conv.padding_mode!r} is not allowed; expected numeric padding "
                             "and padding_mode='zeros'")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                  conv.padding, conv.dilation, conv.groups, conv.bias is not None, device="meta")
        new.weight = conv.weight
        new.bias = conv.bias
        new.train(conv.training)
        return new

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._packed: dict[tuple, torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # pickling / deepcopy: the oneDNN tensors stay behind
        return {**state, "_packed": {}}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight, self.bias
        if (_plain_path(x) or w.device.type != "cpu" or w.dtype != torch.float32
                or (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad
                                                  or (b is not None and b.requires_grad)))):
            return super().forward(x)
        args = (list(self.padding), list(self.stride), list(self.dilation), self.groups)
        key = (tuple(x.shape), torch.get_num_threads(), w.data_ptr(), w._version)
        packed = self._packed.get(key)
        if packed is None:
            if len(self._packed) >= MAX_SHAPES:
                self._packed.clear()
            packed = self._packed[key] = torch.ops.mkldnn._reorder_convolution_weight(
                w.detach(), *args, list(x.shape))
        return torch.ops.mkldnn._convolution_pointwise(x, packed, b, *args, "none", [], "")


def pack_convs(model: nn.Module, min_weight: int = MIN_WEIGHT) -> int:
    """Replace every plain ``nn.Conv2d`` (zeros padding) in ``model`` whose weight has at least
    ``min_weight`` elements by a :class:`PackedConv2d` sharing its parameters, in place; returns
    how many. Subclasses (e.g. Conv2dSame) and a squeeze-excite's convs (their input is pooled to
    1x1, where the plain path is faster) are kept."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"pack_convs takes an nn.Module, got {type(model).__name__}")
    if not is_int(min_weight) or min_weight < 0:
        raise ValueError(f"min_weight={min_weight!r} is not allowed; expected an int >= 0")
    count = 0
    for module in list(model.modules()):
        if isinstance(module, SqueezeExcite):
            continue
        for name, child in list(module._modules.items()):
            if (type(child) is nn.Conv2d and child.padding_mode == "zeros"
                    and not isinstance(child.padding, str)
                    and child.weight.numel() >= min_weight):
                module._modules[name] = PackedConv2d.from_conv(child)
                count += 1
    return count
