"""Layer registries (mmcv semantics) and the small modules the blocks are made of.

Importing this module attaches torch builders to the name registries of :mod:`scaling.ir.registry`
(``NORM``, ``ACTIVATION``, ``CONV``); a new type is one call, e.g.
``NORM.register("XN", MyNorm)`` (its abbreviation comes from a ``_abbr_`` class attribute or, as in
mmcv, from its base class or name).

- :func:`build_norm_layer` returns ``(name, layer)`` exactly as mmcv's: ``name`` is the
  abbreviation (bn, gn, ln, in) plus ``postfix``; eps defaults to 1e-5; ``requires_grad`` is
  popped from the config and applied to the layer's parameters; GN takes ``num_groups`` and
  receives ``num_channels``.
- :func:`build_activation_layer` takes a name or ``{'type': name, **kwargs}``.
- :func:`build_conv_layer` takes ``None`` (Conv2d), a name, or a config dict; :func:`make_conv`
  picks the conv type from a spec's ``padding`` ('symmetric': ``d*(k-1)//2``; 'same': TF), and
  two same-function types that avoid slow or broken oneDNN kernels on the CPU
  (:class:`Conv2dDepthwise`, :class:`Conv2dSubsample`).
- :class:`SqueezeExcite` (Hu et al. 2018), :class:`DropPath` (stochastic depth, Huang et al.
  2016), :func:`channel_shuffle` (Zhang et al. 2018), and :func:`make_divisible`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from scaling.ir import NormSpec, make_divisible
from scaling.ir.base import is_int
from scaling.ir.registry import ACTIVATION, CONV, NORM

__all__ = [
    "Conv2dDepthwise", "Conv2dSame", "Conv2dSubsample", "ConvNormAct", "DropPath", "LayerNorm2d",
    "SqueezeExcite", "build_activation_layer", "build_conv_layer", "build_norm_layer",
    "channel_shuffle", "infer_abbr", "make_conv", "make_divisible", "norm_cfg", "NORM_TYPES",
]


# ---------------------------------------------------------------------------------------- norm
class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over channels: (N, C, H, W) is normalised per pixel over C (channels-first);
    any other rank is normalised over its last dimension, e.g. (N, C).

    The output keeps the input's memory layout, contiguous: a channels_last input (the trainer's
    CPU default) gives a channels_last output, so the next conv gets the layout of its
    channels_last weights. Forcing NCHW here fed every conv after an LN a mixed layout, which
    sends oneDNN's conv backward through its reorder path: on some CPUs that corrupted the heap
    (``double free or corruption`` at 64 px, issue 28; cf. pytorch/pytorch#23825).
    """

    _abbr_ = "ln"

    def __init__(self, normalized_shape: Any, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__(normalized_shape, eps=eps, elementwise_affine=elementwise_affine,
                         bias=bias, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return super().forward(x)
        layout = torch.channels_last if (x.is_contiguous(memory_format=torch.channels_last)
                                         and not x.is_contiguous()) else torch.contiguous_format
        y = super().forward(x.permute(0, 2, 3, 1).contiguous())  # a view if x is channels_last
        return y.permute(0, 3, 1, 2).contiguous(memory_format=layout)


NORM_TYPES: dict[str, type[nn.Module]] = {
    "BN": nn.BatchNorm2d, "BN1d": nn.BatchNorm1d, "BN2d": nn.BatchNorm2d, "BN3d": nn.BatchNorm3d,
    "SyncBN": nn.SyncBatchNorm, "GN": nn.GroupNorm, "LN": LayerNorm2d,
    "IN": nn.InstanceNorm2d, "IN1d": nn.InstanceNorm1d, "IN2d": nn.InstanceNorm2d,
    "IN3d": nn.InstanceNorm3d,
}
for _name, _cls in NORM_TYPES.items():
    NORM.register(_name, _cls)


def infer_abbr(class_type: type) -> str:
    """The name prefix of a norm class (mmcv's rule): ``_abbr_``, else base class, else name."""
    if not inspect.isclass(class_type):
        raise TypeError(f"class_type must be a type, got {type(class_type).__name__}")
    if hasattr(class_type, "_abbr_"):
        return class_type._abbr_
    for base, abbr in ((_InstanceNorm, "in"), (_BatchNorm, "bn"), (nn.GroupNorm, "gn"),
                       (nn.LayerNorm, "ln")):
        if issubclass(class_type, base):
            return abbr
    name = class_type.__name__.lower()
    for word, abbr in (("batch", "bn"), ("group", "gn"), ("layer", "ln"), ("instance", "in")):
        if word in name:
            return abbr
    return "norm_layer"


def build_norm_layer(cfg: dict, num_features: int,
                     postfix: int | str = "") -> tuple[str, nn.Module]:
    """Build a norm layer from ``cfg`` (mmcv semantics); returns ``(abbr + postfix, layer)``."""
    if not isinstance(cfg, dict):
        raise TypeError(f"norm cfg must be a dict, got {type(cfg).__name__} {cfg!r}")
    if "type" not in cfg:
        raise KeyError(f"norm cfg must contain the key 'type'; got keys {sorted(cfg)}")
    if not (is_int(postfix) or isinstance(postfix, str)):
        raise TypeError(f"postfix must be an int or a str, got {type(postfix).__name__} "
                        f"{postfix!r}")
    cfg_ = dict(cfg)
    layer_type = cfg_.pop("type")
    norm_layer = NORM.get(layer_type)  # KeyError listing the known types
    name = infer_abbr(norm_layer) + str(postfix)
    requires_grad = cfg_.pop("requires_grad", True)
    cfg_.setdefault("eps", 1e-5)
    if layer_type == "GN":
        if "num_groups" not in cfg_:
            raise ValueError("norm cfg of type 'GN' must contain 'num_groups'")
        layer = norm_layer(num_channels=num_features, **cfg_)
    else:
        layer = norm_layer(num_features, **cfg_)
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return name, layer


def norm_cfg(norm: NormSpec | dict) -> dict:
    """The mmcv-style config of a :class:`NormSpec`, keeping only the keys its layer accepts
    (GN and LN take no momentum; only GN takes num_groups)."""
    if isinstance(norm, dict):
        return dict(norm)
    if not isinstance(norm, NormSpec):
        raise TypeError(f"norm must be a NormSpec or a dict, got {type(norm).__name__}")
    cfg: dict[str, Any] = {"type": norm.type, "eps": norm.eps, "requires_grad": norm.requires_grad}
    accepted = inspect.signature(NORM.get(norm.type)).parameters
    if "momentum" in accepted:
        cfg["momentum"] = norm.momentum
    if norm.num_groups is not None:
        cfg["num_groups"] = norm.num_groups
    return cfg


# ---------------------------------------------------------------------------------- activation
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "leaky_relu": nn.LeakyReLU, "prelu": nn.PReLU,
    "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid, "silu": nn.SiLU,
    "swish": nn.SiLU, "gelu": nn.GELU, "identity": nn.Identity,
}
for _name, _cls in _ACTIVATIONS.items():
    ACTIVATION.register(_name, _cls)


def build_activation_layer(name_or_cfg: str | dict) -> nn.Module:
    """Build an activation from a registered name ('relu', 'hswish', ...) or ``{'type': ...}``.

    hsigmoid is torchvision's ``relu6(x + 3) / 6`` (nn.Hardsigmoid); swish is SiLU; prelu has one
    learnable slope (torch's default).
    """
    if isinstance(name_or_cfg, str):
        return ACTIVATION.get(name_or_cfg)()
    if not isinstance(name_or_cfg, dict):
        raise TypeError("activation must be a name or a dict with 'type', got "
                        f"{type(name_or_cfg).__name__} {name_or_cfg!r}")
    if "type" not in name_or_cfg:
        raise KeyError("activation cfg must contain the key 'type'; got keys "
                       f"{sorted(name_or_cfg)}")
    cfg = dict(name_or_cfg)
    return ACTIVATION.get(cfg.pop("type"))(**cfg)


# ---------------------------------------------------------------------------------------- conv
def _same_amount(size: int, k: int, s: int, d: int) -> int:
    return max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)


def pad_same(x: torch.Tensor, kernel: tuple[int, ...], stride: tuple[int, ...],
             dilation: tuple[int, ...]) -> torch.Tensor:
    """``x`` padded for TensorFlow's 'same' conv (see :class:`Conv2dSame`). The amounts depend
    on the input size, which a ``torch.fx`` symbolic trace does not know, so the function is an
    fx leaf (``torch.fx.wrap``): a traced graph calls it with the real tensor at run time."""
    h, w = x.shape[-2:]
    ph = _same_amount(h, kernel[0], stride[0], dilation[0])
    pw = _same_amount(w, kernel[1], stride[1], dilation[1])
    if ph or pw:
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
    return x


torch.fx.wrap("pad_same")


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's 'same' padding, computed from the input size at each call.

    Output size ``ceil(H / s)``; the total padding ``max((ceil(H/s)-1)*s + d*(k-1) + 1 - H, 0)``
    is split with the extra pixel at the bottom/right, as TF does (:func:`pad_same`, which fx
    and ``create_feature_extractor`` trace as one call).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = True,
                 **kwargs: Any) -> None:
        if padding not in (0, "same", (0, 0)):
            raise ValueError(f"Conv2dSame computes its own padding; got padding={padding!r}")
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups,
                         bias, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        return super().forward(x)


class Conv2dSubsample(nn.Conv2d):
    """A strided 1x1 conv computed as the stride-1 conv of every s-th pixel: the same function
    and parameters (without padding a 1x1 kernel only reads those pixels), by another kernel.

    Why: on AVX2 CPUs (torch 2.13, oneDNN 3.12) the weight gradient of a strided 1x1 conv in
    channels_last corrupts the heap when it has 2-7 input channels per group (double free,
    SIGSEGV), and the trainer uses channels_last on the CPU by default. :func:`make_conv` builds
    this class where the input channels per group are not a multiple of 16 (AVX-512's width, as
    the kernels there are blocked by 16), so plain torchvision layouts keep ``nn.Conv2d``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1,
                 stride: int = 2, padding: int = 0, dilation: int = 1, groups: int = 1,
                 bias: bool = True, **kwargs: Any) -> None:
        if kernel_size not in (1, (1, 1)) or padding not in (0, (0, 0), "same"):
            raise ValueError(f"Conv2dSubsample is a 1x1 conv without padding; got kernel_size="
                             f"{kernel_size!r}, padding={padding!r}")
        super().__init__(in_channels, out_channels, 1, stride, 0, dilation, groups, bias,
                         **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sh, sw = self.stride
        return F.conv2d(x[:, :, ::sh, ::sw], self.weight, self.bias, 1, 0, 1, self.groups)


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     stride: tuple[int, ...], padding: tuple[int, ...],
                     dilation: tuple[int, ...], groups: int) -> torch.Tensor:
    """``F.conv2d``, with the zero padding applied by ``F.pad`` first where the weight's gradient
    is computed on the CPU and the input's map is smaller than the kernel (see
    :class:`Conv2dDepthwise`). An fx leaf, as :func:`pad_same`."""
    if (x.device.type == "cpu" and weight.requires_grad and torch.is_grad_enabled()
            and any(padding) and min(x.shape[-2:]) < max(weight.shape[-2:])):
        ph, pw = padding
        x, padding = F.pad(x, [pw, pw, ph, ph]), (0, 0)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


torch.fx.wrap("depthwise_conv2d")


class Conv2dDepthwise(nn.Conv2d):
    """A depthwise conv (one filter per channel) that pads explicitly, by ``F.pad``, where its
    input map is smaller than the kernel on the CPU: the same function, parameters and output.

    Why: on x86 CPUs (torch 2.13, oneDNN 3.12) the weight gradient of a padded depthwise conv
    whose input is smaller than its kernel (a 5x5 kernel on the 4x4 or 2x2 maps of a 28x28 net's
    last stages) falls back from oneDNN's depthwise kernel to im2col + GEMM per channel, 5-20x
    slower; with the padding already in the input it keeps the depthwise kernel. The output and
    the input gradient are bit-identical; the weight gradient differs by summation order.
    Inference (no weight gradient) keeps the plain path. Measured by
    ``python experiments/depthwise_grad.py`` (``results/bench/depthwise``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super().forward(x)
        return depthwise_conv2d(x, self.weight, self.bias, self.stride, self.padding,
                                self.dilation, self.groups)


CONV.register("Conv2d", nn.Conv2d)
CONV.register("Conv2dDepthwise", Conv2dDepthwise)
CONV.register("Conv2dSame", Conv2dSame)
CONV.register("Conv2dSubsample", Conv2dSubsample)
CONV_FOR_PADDING = {"symmetric": "Conv2d", "same": "Conv2dSame"}


def _subsamples(in_channels: int, kernel: int, stride: int, groups: int) -> bool:
    """Whether :func:`make_conv` builds a :class:`Conv2dSubsample` (see its docstring)."""
    return kernel == 1 and stride > 1 and (in_channels // groups) % 16 != 0


def build_conv_layer(cfg: None | str | dict, *args: Any, **kwargs: Any) -> nn.Module:
    """Build a conv layer: ``cfg`` None means Conv2d; a name or ``{'type': ..., **kwargs}``."""
    if cfg is None:
        cfg = {"type": "Conv2d"}
    elif isinstance(cfg, str):
        cfg = {"type": cfg}
    if not isinstance(cfg, dict):
        raise TypeError(f"conv cfg must be None, a name or a dict, got {type(cfg).__name__}")
    if "type" not in cfg:
        raise KeyError(f"conv cfg must contain the key 'type'; got keys {sorted(cfg)}")
    cfg_ = dict(cfg)
    layer = CONV.get(cfg_.pop("type"))
    return layer(*args, **kwargs, **cfg_)


def make_conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
              dilation: int = 1, bias: bool = False, padding: str = "symmetric") -> nn.Module:
    """A kxk conv whose type follows ``NetworkSpec.padding``; symmetric padding is d*(k-1)//2."""
    if padding not in CONV_FOR_PADDING:
        raise ValueError(f"padding={padding!r} is not allowed; expected one of "
                         f"{tuple(CONV_FOR_PADDING)}")
    pad = dilation * (kernel - 1) // 2 if padding == "symmetric" else 0
    if _subsamples(in_channels, kernel, stride, groups):
        kind = "Conv2dSubsample"
    elif padding == "symmetric" and kernel > 1 and groups == in_channels == out_channels:
        kind = "Conv2dDepthwise"
    else:
        kind = CONV_FOR_PADDING[padding]
    return build_conv_layer(kind, in_channels, out_channels, kernel,
                            stride=stride, padding=pad, dilation=dilation, groups=groups,
                            bias=bias)


class ConvNormAct(nn.Sequential):
    """conv (0) -> norm (1) [-> activation (2)], like torchvision's Conv2dNormActivation."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 groups: int = 1, dilation: int = 1, norm: NormSpec | dict | None = None,
                 act: str | dict | None = None, padding: str = "symmetric") -> None:
        layers = [make_conv(in_channels, out_channels, kernel, stride, groups, dilation,
                            padding=padding),
                  build_norm_layer(norm_cfg(norm if norm is not None else NormSpec()),
                                   out_channels)[1]]
        if act is not None:
            layers.append(build_activation_layer(act))
        super().__init__(*layers)
        self.out_channels = out_channels


# -------------------------------------------------------------------------------- SE, DropPath
class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): x * gate(fc2(act(fc1(avgpool(x))))).

    fc1/fc2 are 1x1 convs with bias, as torchvision's SqueezeExcitation (same parameter names).
    """

    def __init__(self, channels: int, squeeze: int, activation: str | dict = "relu",
                 gate: str | dict = "sigmoid") -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = build_activation_layer(activation)
        self.scale_activation = build_activation_layer(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016): zero a sample's residual branch with
    probability p and scale survivors by 1/(1-p); the identity in eval mode or at p = 0."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"drop path p={p!r} is not allowed; expected 0 <= p < 1")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups (Zhang et al. 2018): (g, C/g) -> (C/g, g)."""
    n, c, h, w = x.shape
    if c % groups:
        raise ValueError(f"channel_shuffle: groups={groups} does not divide the {c} channels")
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)
