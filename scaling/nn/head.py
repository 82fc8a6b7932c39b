"""The classifier head: [1x1 conv] -> global pool -> [hidden linear] -> dropout -> [classifier].

``global_pool`` is timm's: ``'avg'`` (the default), ``'max'``, ``'avgmax'`` (the mean of the two,
timm's ``adaptive_avgmax_pool2d``), ``'catavgmax'`` (the two concatenated: twice the channels
into the hidden layer or classifier, as timm's; a build option, so :func:`scaling.cost.complexity`
of the spec counts the avg-pooled head) or ``''`` (no pooling: the head returns feature maps, so
it takes no classifier; a hidden linear layer then acts per position, as timm's 1x1
``conv_head``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from scaling.ir import NetworkSpec
from scaling.nn.layers import ConvNormAct, build_activation_layer, norm_cfg

__all__ = ["GLOBAL_POOLS", "GlobalPool", "Head"]

GLOBAL_POOLS = ("avg", "max", "avgmax", "catavgmax", "")


class GlobalPool(nn.Module):
    """timm's ``SelectAdaptivePool2d`` without flattening: (N, C, H, W) -> (N, C, 1, 1)."""

    def __init__(self, pool_type: str = "avg") -> None:
        super().__init__()
        if not isinstance(pool_type, str) or pool_type not in GLOBAL_POOLS:
            raise ValueError(f"global_pool={pool_type!r} is not allowed; expected one of "
                             f"{list(GLOBAL_POOLS)} ('' = no pooling)")
        self.pool_type = pool_type

    @property
    def feat_mult(self) -> int:
        """Pooled channels per input channel (timm's ``feat_mult``): 2 for 'catavgmax'."""
        return 2 if self.pool_type == "catavgmax" else 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "avg":
            return F.adaptive_avg_pool2d(x, 1)
        if self.pool_type == "max":
            return F.adaptive_max_pool2d(x, 1)
        if self.pool_type == "avgmax":
            return 0.5 * (F.adaptive_avg_pool2d(x, 1) + F.adaptive_max_pool2d(x, 1))
        if self.pool_type == "catavgmax":
            return torch.cat([F.adaptive_avg_pool2d(x, 1), F.adaptive_max_pool2d(x, 1)], 1)
        return x

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type!r}"


class Head(nn.Module):
    """[1x1 conv N A] -> global pool -> [linear A] -> dropout -> [linear classifier].

    The conv is part of :meth:`ScalingNet.forward_features` (as timm's ``conv_head``); the rest is
    :meth:`forward` (``pre_logits=True`` stops before dropout and the classifier)."""

    def __init__(self, spec: NetworkSpec, in_channels: int, num_classes: int,
                 global_pool: str = "avg") -> None:
        super().__init__()
        head = spec.head
        channels = in_channels
        self.conv = None
        if head.channels is not None:
            self.conv = ConvNormAct(channels, head.channels, 1, norm=norm_cfg(spec.norm),
                                    act=head.activation, padding=spec.padding)
            channels = head.channels
        self.in_features = channels
        self.pool = GlobalPool(global_pool)
        channels *= self.pool.feat_mult
        self.hidden = self.hidden_act = None
        if head.hidden is not None:
            self.hidden = nn.Linear(channels, head.hidden)
            self.hidden_act = build_activation_layer(head.hidden_activation)
            channels = head.hidden
        self.num_features = channels
        self._dropout_p = head.dropout
        self.dropout: nn.Module | None = None
        self.fc: nn.Linear | None = None
        self.reset(num_classes)

    def reset(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new (freshly initialised) classifier for ``num_classes`` (0: none) and, when given,
        another global pool (``''``: none, only without a classifier, as in timm)."""
        pool = self.pool.pool_type if global_pool is None else global_pool
        if pool == "" and num_classes:
            raise ValueError(f"global_pool='' (no pooling) needs num_classes=0, got "
                             f"num_classes={num_classes}: a classifier needs pooled features")
        new = GlobalPool(pool)
        if new.feat_mult != self.pool.feat_mult:
            if self.hidden is not None:
                raise ValueError(f"global_pool={pool!r} changes the pooled width, which the "
                                 "hidden layer was built for; build the model with it instead")
            self.num_features = self.in_features * new.feat_mult
        self.pool = new
        self.dropout = nn.Dropout(self._dropout_p) if self._dropout_p > 0 and num_classes \
            else None
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else None
        if self.fc is not None:
            nn.init.normal_(self.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x)
        if self.pool.pool_type == "":
            if self.hidden is not None:  # per position, as a 1x1 conv
                x = self.hidden_act(self.hidden(x.movedim(1, -1))).movedim(-1, 1)
            return x
        x = torch.flatten(x, 1)
        if self.hidden is not None:
            x = self.hidden_act(self.hidden(x))
        if pre_logits or self.fc is None:
            return x
        if self.dropout is not None:
            x = self.dropout(x)
        return self.fc(x)
