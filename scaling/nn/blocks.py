"""Block modules, one class per ``StageSpec.block`` type, named by its record (scaling.ir.blocks).

Every block is built as ``cls(geometry, stage, norm, padding, with_cp)`` from a
:class:`~scaling.ir.geometry.BlockGeometry` (all channel counts, groups, strides, SE squeeze, skip
and drop-path rate come from it), the :class:`~scaling.ir.parts.StageSpec` (activation, SE config,
style, shortcut), the network's :class:`~scaling.ir.parts.NormSpec` and its ``padding``. Norms,
activations and convs come only from the registries of :mod:`scaling.nn.layers`. The layer
structure is the one the :mod:`scaling.ir.blocks` docstring defines (and its cost functions
count); parameter names follow torchvision where torchvision has the block (see each class).
Every activation position is its own module (one PReLU slope each).

``with_cp`` runs the block under ``torch.utils.checkpoint`` when its input requires grad: the
same outputs and gradients, less memory. Unlike mmcv, the recomputation in backward leaves the
norm layers' running statistics as the forward left them (they are not updated twice).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.utils.checkpoint import checkpoint

from scaling.ir import BLOCK_TYPES, BlockGeometry, NormSpec, StageSpec
from scaling.ir.blocks import check_pair
from scaling.nn.layers import (
    ConvNormAct,
    DropPath,
    SqueezeExcite,
    build_activation_layer,
    build_norm_layer,
    channel_shuffle,
    make_conv,
    norm_cfg,
)

# torch.fx: channel_shuffle unpacks x.shape, so a traced graph calls it as one leaf function
torch.fx.wrap("channel_shuffle")

__all__ = ["INPLACE_TYPES", "BasicBlock", "Block", "Bottleneck", "DepthwiseSeparable",
           "FusedMBConv", "MBConv", "ShuffleV1Block", "ShuffleV2Block", "build_block", "inplace"]


class Block(nn.Module):
    """Base class: keeps the geometry and the layer settings; handles ``with_cp``."""

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__()
        if not isinstance(geometry, BlockGeometry):
            raise TypeError(f"geometry must be a BlockGeometry, got {type(geometry).__name__}")
        check_pair(geometry, stage)
        self.geometry = geometry
        self.with_cp = bool(with_cp)
        self._norm_cfg = norm_cfg(norm)
        self._padding = padding
        self._act = stage.activation

    # -- layer helpers (all through the registries) ------------------------------------------
    def _conv(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             dilation: int = 1) -> nn.Module:
        return make_conv(cin, cout, k, stride, groups, dilation, padding=self._padding)

    def _norm(self, channels: int, postfix: int | str = "") -> tuple[str, nn.Module]:
        return build_norm_layer(self._norm_cfg, channels, postfix)

    def _act_layer(self) -> nn.Module:
        return build_activation_layer(self._act)

    def _cna(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
            dilation: int = 1, act: bool = True) -> ConvNormAct:
        return ConvNormAct(cin, cout, k, stride, groups, dilation, self._norm_cfg,
                           self._act if act else None, self._padding)

    def _se(self, stage: StageSpec, channels: int) -> SqueezeExcite:
        if stage.se is None:
            raise ValueError(f"stage.se is None; block {stage.block!r} asked for SE")
        return SqueezeExcite(channels, self.geometry.squeeze, stage.se.activation, stage.se.gate)

    def _drop_path(self) -> nn.Module:
        p = self.geometry.drop_path if self.geometry.residual else 0.0
        return DropPath(p) if p > 0 else nn.Identity()

    def last_norm(self) -> nn.Module | None:
        """The norm that ends the residual branch (its output is added to the shortcut), or None
        where the block adds no shortcut; zeroing its weight makes the block start as identity."""
        return None

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False,
                              context_fn=self._checkpoint_contexts)
        return self._forward(x)

    def _checkpoint_contexts(self) -> tuple[contextlib.AbstractContextManager, ...]:
        return contextlib.nullcontext(), _keep_running_stats(self)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


@contextlib.contextmanager
def _keep_running_stats(module: nn.Module) -> Iterator[None]:
    """Restore the norm buffers (running mean/var, batch count) after a checkpoint recompute."""
    saved = [(b, b.clone()) for m in module.modules() if isinstance(m, _NormBase)
             for b in m.buffers(recurse=False)]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class _ResidualBlock(Block):
    """ResNet-style blocks: named convs/norms as torchvision/mmcv (conv1, bn1, ..., downsample)."""

    def _add_norm(self, channels: int, postfix: int) -> str:
        name, layer = self._norm(channels, postfix)
        self.add_module(name, layer)
        return name

    def _shortcut(self, stage: StageSpec) -> nn.Module | None:
        """1x1 conv(stride) + norm, or (D variant) avg pool(stride) then 1x1 conv + norm."""
        g = self.geometry
        if not g.projection:
            return None
        layers: list[nn.Module] = []
        stride = g.stride
        if stage.shortcut == "avgpool_conv" and g.stride != 1:
            layers.append(nn.AvgPool2d(g.stride, g.stride, ceil_mode=True,
                                       count_include_pad=False))
            stride = 1
        layers += [self._conv(g.in_channels, g.out_channels, 1, stride),
                   self._norm(g.out_channels)[1]]
        return nn.Sequential(*layers)

    def last_norm(self) -> nn.Module | None:
        return getattr(self, self._last_norm_name) if self.geometry.residual else None

    def _merge(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.geometry.residual:
            identity = x if self.downsample is None else self.downsample(x)
            out = self.drop_path(out) + identity
        return out


class BasicBlock(_ResidualBlock):
    """He et al. 2016: kxk/s N A, kxk N, + shortcut, A. Names as torchvision's BasicBlock
    (conv1, bn1, conv2, bn2, downsample.{0,1}); acts act1, act2. Dilation on conv1, as mmcv."""

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__(geometry, stage, norm, padding, with_cp)
        g = geometry
        k = g.kernel
        self.conv1 = self._conv(g.in_channels, g.mid_channels, k, g.stride, dilation=g.dilation)
        self.norm1_name = self._add_norm(g.mid_channels, 1)
        self.act1 = self._act_layer()
        self.conv2 = self._conv(g.mid_channels, g.out_channels, k)
        self.norm2_name = self._last_norm_name = self._add_norm(g.out_channels, 2)
        self.downsample = self._shortcut(stage)
        self.drop_path = self._drop_path()
        self.act2 = self._act_layer()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(getattr(self, self.norm1_name)(self.conv1(x)))
        out = getattr(self, self.norm2_name)(self.conv2(out))
        return self.act2(self._merge(out, x))


class Bottleneck(_ResidualBlock):
    """1x1 N A, kxk/s (groups) N A, [SE], 1x1 N, + shortcut, A (ResNet, ResNeXt, RegNet X/Y).

    style 'pytorch' strides the kxk conv, 'caffe' the first 1x1. Names as torchvision's
    Bottleneck (conv1..3, bn1..3, downsample) plus se (fc1, fc2) and act1..3.
    """

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__(geometry, stage, norm, padding, with_cp)
        g = geometry
        s1, s2 = (g.stride, 1) if stage.style == "caffe" else (1, g.stride)
        self.conv1 = self._conv(g.in_channels, g.mid_channels, 1, s1)
        self.norm1_name = self._add_norm(g.mid_channels, 1)
        self.act1 = self._act_layer()
        self.conv2 = self._conv(g.mid_channels, g.mid_channels, g.kernel, s2, g.groups, g.dilation)
        self.norm2_name = self._add_norm(g.mid_channels, 2)
        self.act2 = self._act_layer()
        self.se = self._se(stage, g.mid_channels) if stage.se is not None else None
        self.conv3 = self._conv(g.mid_channels, g.out_channels, 1)
        self.norm3_name = self._last_norm_name = self._add_norm(g.out_channels, 3)
        self.downsample = self._shortcut(stage)
        self.drop_path = self._drop_path()
        self.act3 = self._act_layer()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(getattr(self, self.norm1_name)(self.conv1(x)))
        out = self.act2(getattr(self, self.norm2_name)(self.conv2(out)))
        if self.se is not None:
            out = self.se(out)
        out = getattr(self, self.norm3_name)(self.conv3(out))
        return self.act3(self._merge(out, x))


class _SequentialBlock(Block):
    """Blocks whose main path is one ``block`` Sequential of ConvNormAct/SE (torchvision's MBConv
    naming: block.{i}.0 conv, block.{i}.1 norm, block.{i}.fc1/fc2 for SE), plus an optional skip.

    ``roles`` names each entry of DepthwiseSeparable/MBConv/FusedMBConv: 'pw' (1x1 expansion),
    'exp' (kxk expansion), 'conv' (the single kxk conv), 'dw' (depthwise), 'se', 'pwl' (1x1
    projection); the timm weight converter maps by role.
    """

    roles: tuple[str, ...] = ()

    def _set_block(self, layers: dict[str, nn.Module]) -> None:
        self.roles = tuple(layers)
        self.block = nn.Sequential(*layers.values())

    def last_norm(self) -> nn.Module | None:
        if not self.geometry.residual:
            return None
        last = next(m for m in reversed(self.block) if isinstance(m, ConvNormAct))
        return last[1]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.geometry.residual:
            out = self.drop_path(out) + x
        return out


class DepthwiseSeparable(_SequentialBlock):
    """MobileNetV1 (Howard et al. 2017): depthwise kxk/s N A (in -> mid, groups=in), 1x1 N A."""

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__(geometry, stage, norm, padding, with_cp)
        g = geometry
        self._set_block({
            "dw": self._cna(g.in_channels, g.mid_channels, g.kernel, g.stride, g.in_channels,
                            g.dilation),
            "pwl": self._cna(g.mid_channels, g.out_channels, 1)})
        self.drop_path = self._drop_path()


class MBConv(_SequentialBlock):
    """Inverted residual (Sandler et al. 2018; MobileNetV3; EfficientNet): [1x1 N A] (only when
    mid != in or ``stage.expand``), depthwise kxk/s N A, [SE], 1x1 N, + skip (stride 1 and
    in == out)."""

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__(geometry, stage, norm, padding, with_cp)
        g = geometry
        layers: dict[str, nn.Module] = {}
        if g.mid_channels != g.in_channels or stage.expand:
            layers["pw"] = self._cna(g.in_channels, g.mid_channels, 1)
        layers["dw"] = self._cna(g.mid_channels, g.mid_channels, g.kernel, g.stride,
                                 g.mid_channels, g.dilation)
        if stage.se is not None:
            layers["se"] = self._se(stage, g.mid_channels)
        layers["pwl"] = self._cna(g.mid_channels, g.out_channels, 1, act=False)
        self._set_block(layers)
        self.drop_path = self._drop_path()


class FusedMBConv(_SequentialBlock):
    """EfficientNetV2 (Tan & Le 2021): kxk/s N A, [SE], 1x1 N; when mid == in (and not
    ``stage.expand``) a single kxk/s N A (in -> out) [SE on out], as torchvision's FusedMBConv;
    + skip."""

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__(geometry, stage, norm, padding, with_cp)
        g = geometry
        expand = g.mid_channels != g.in_channels or stage.expand
        first_out = g.mid_channels if expand else g.out_channels
        layers: dict[str, nn.Module] = {
            "exp" if expand else "conv": self._cna(g.in_channels, first_out, g.kernel, g.stride,
                                                   dilation=g.dilation)}
        if stage.se is not None:
            layers["se"] = self._se(stage, first_out)
        if expand:
            layers["pwl"] = self._cna(g.mid_channels, g.out_channels, 1, act=False)
        self._set_block(layers)
        self.drop_path = self._drop_path()


class ShuffleV1Block(Block):
    """ShuffleNet unit (Zhang et al. 2018): 1x1 (first_groups) N A, shuffle(groups), depthwise
    kxk/s N, 1x1 (groups) N; stride 1: + input; stride 2: concat with AvgPool2d(3, 2, 1) of the
    input (the branch gives out - in channels); then A. Names as mmpretrain's ShuffleUnit:
    conv1_1, conv2, conv1_2 (each a ConvNormAct), avgpool, act."""

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__(geometry, stage, norm, padding, with_cp)
        g = geometry
        branch_out = BLOCK_TYPES[g.block].branch_out(g)
        self.groups = g.groups
        self.conv1_1 = self._cna(g.in_channels, g.mid_channels, 1, groups=g.first_groups)
        self.conv2 = self._cna(g.mid_channels, g.mid_channels, g.kernel, g.stride, g.mid_channels,
                              g.dilation, act=False)
        self.conv1_2 = self._cna(g.mid_channels, branch_out, 1, groups=g.groups, act=False)
        self.avgpool = nn.AvgPool2d(3, 2, 1) if g.stride == 2 else None
        self.drop_path = self._drop_path()
        self.act = self._act_layer()

    def last_norm(self) -> nn.Module | None:
        return self.conv1_2[1] if self.avgpool is None else None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1_1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.conv1_2(self.conv2(out))
        if self.avgpool is not None:
            out = torch.cat((self.avgpool(x), out), dim=1)
        else:
            out = x + self.drop_path(out)
        return self.act(out)


class ShuffleV2Block(Block):
    """ShuffleNetV2 unit (Ma et al. 2018), module for module torchvision's InvertedResidual:
    branch1 (stride 2 only): dw kxk/s N, 1x1 N A; branch2: 1x1 N A, dw kxk/s N, 1x1 N A; stride 1
    splits the input in halves and runs branch2 on the second; concat, channel_shuffle(2).
    There is no additive residual, so no drop path."""

    def __init__(self, geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                 padding: str = "symmetric", with_cp: bool = False) -> None:
        super().__init__(geometry, stage, norm, padding, with_cp)
        g = geometry
        bf, cin = g.mid_channels, g.in_channels
        k, s, d = g.kernel, g.stride, g.dilation
        if s == 2:
            self.branch1 = nn.Sequential(
                self._conv(cin, cin, k, s, cin, d), self._norm(cin)[1],
                self._conv(cin, bf, 1), self._norm(bf)[1], self._act_layer())
        else:
            self.branch1 = None
        self.branch2 = nn.Sequential(
            self._conv(cin if s == 2 else bf, bf, 1), self._norm(bf)[1], self._act_layer(),
            self._conv(bf, bf, k, s, bf, d), self._norm(bf)[1],
            self._conv(bf, bf, 1), self._norm(bf)[1], self._act_layer())

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch1 is None:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


#: activations that compute in place when asked (``inplace=True``), as torchvision builds them
INPLACE_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.Hardsigmoid, nn.SiLU)


def inplace(module: nn.Module) -> nn.Module:
    """``module`` with its activations (and those of its children) computing in place.

    Safe in every block and head: each activation's input is a fresh tensor (a norm, conv,
    linear or residual-sum output) that nothing else reads (torchvision's choice). A forward
    hook that keeps such an input sees it overwritten.
    """
    for m in module.modules():
        if isinstance(m, INPLACE_TYPES):
            m.inplace = True
    return module


def build_block(geometry: BlockGeometry, stage: StageSpec, norm: NormSpec,
                padding: str = "symmetric", with_cp: bool = False) -> Block:
    """The block of ``geometry.block``: the module class its record names."""
    cls = BLOCK_TYPES[geometry.block].module_class()
    return cls(geometry, stage, norm, padding, with_cp)
