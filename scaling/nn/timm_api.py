"""timm's feature and training methods on :class:`~scaling.nn.build.ScalingNet` (a mixin).

The indices are timm's feature levels (:func:`scaling.nn.features.feature_levels`): ``None``
takes every level, an int ``k`` the last ``k``, a list those levels (negative counts from the
end), as timm's ``feature_take_indices``. A *place* is a point of the forward walk: 0 after the
stem's convs (before its max pool), ``i + 1`` after stage ``i``, ``n + 1`` after the head conv
when that conv is a level (MobileNetV3); a level's ``stage`` is its place.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing
from torch.utils.checkpoint import checkpoint

from scaling.ir.base import is_int

__all__ = ["TimmMethods", "take_indices"]


def take_indices(num_levels: int, indices: int | Sequence[int] | None) -> tuple[list[int], int]:
    """timm's ``feature_take_indices``: the absolute level indices to take and the largest."""
    if indices is None:
        indices = num_levels
    if is_int(indices):
        if not 0 < indices <= num_levels:
            raise ValueError(f"indices={indices!r} is not allowed; an int takes the last n levels, "
                             f"n in [1, {num_levels}]")
        taken = list(range(num_levels - indices, num_levels))
    else:
        try:
            taken = list(indices)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(f"indices must be None, an int or a list of ints, got "
                            f"{type(indices).__name__} {indices!r}") from None
        if not taken or any(not is_int(i) or not -num_levels <= i < num_levels for i in taken):
            raise ValueError(f"indices={indices!r} is not allowed; expected level indices in "
                             f"[{-num_levels}, {num_levels - 1}] ({num_levels} levels)")
        taken = [i % num_levels for i in taken]
    return taken, max(taken)


class TimmMethods:
    """``forward_intermediates``, ``prune_intermediate_layers``, ``set_grad_checkpointing`` and
    ``group_matcher`` as timm's models have them (timm 1.0)."""

    spec: Any
    stem: nn.Sequential
    stages: nn.ModuleList
    head: Any
    feature_info: Any
    grad_checkpointing: bool

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage in the backward pass instead of keeping its activations
        (``torch.utils.checkpoint``, non-reentrant): less memory, one more forward per step."""
        if not isinstance(enable, bool):
            raise TypeError(f"enable must be a bool, got {enable!r}")
        self.grad_checkpointing = enable

    def _run(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled() and not is_fx_symbolic_tracing():
            return checkpoint(module, x, use_reentrant=False)
        return module(x)

    def _head_conv_is_level(self) -> bool:
        return self.feature_info.info[-1]["module"] == "head.conv"

    def _walk(self, x: torch.Tensor, last: int) -> Iterator[tuple[int, torch.Tensor]]:
        """(place, output) for the places 0..``last`` of the forward walk, in order."""
        convs = len(self.spec.stem.channels)
        for m in list(self.stem)[:convs]:
            x = m(x)
        yield 0, x
        for m in list(self.stem)[convs:]:
            x = m(x)
        for i, stage in enumerate(self.stages):
            if i + 1 > last:
                return
            x = self._run(stage, x)
            yield i + 1, x
        if last > len(self.stages) and self._head_conv_is_level() and self.head.conv is not None:
            yield len(self.stages) + 1, self.head.conv(x)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None,
                              norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCHW", intermediates_only: bool = False
                              ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's ``forward_intermediates``: the feature maps of the ``indices`` levels (a list)
        and, unless ``intermediates_only``, the final features (:meth:`forward_features`' output
        when every stage ran). ``norm`` changes nothing (no final norm, as timm's ResNet and
        EfficientNet); ``stop_early`` stops after the last level asked for."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r} is not allowed; expected 'NCHW'")
        if not isinstance(norm, bool):
            raise TypeError(f"norm must be a bool, got {norm!r}")
        self.check_input(x)  # type: ignore[attr-defined]
        levels = self.feature_info.info
        taken, top = take_indices(len(levels), indices)
        places = {levels[i]["stage"]: i for i in taken}
        end = len(self.stages) + (1 if self._head_conv_is_level() else 0)
        last = levels[top]["stage"] if stop_early else end
        out: dict[int, torch.Tensor] = {}
        place = -1
        for place, y in self._walk(x, last):
            x = y
            if place in places:
                out[places[place]] = y
        missing = [i for i in taken if i not in out]
        if missing:
            raise ValueError(f"indices={indices!r}: levels {missing} were pruned "
                             "(prune_intermediate_layers); take the kept levels")
        intermediates = [out[i] for i in taken]
        if intermediates_only:
            return intermediates
        head_conv = getattr(self.head, "conv", None)
        if place == end and head_conv is not None and not self._head_conv_is_level():
            x = head_conv(x)
        return x, intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1,
                                  prune_norm: bool = False, prune_head: bool = True) -> list[int]:
        """timm's ``prune_intermediate_layers``: drop the stages after the last level of
        ``indices`` and, with ``prune_head`` (or when stages went), the head (no pooling, no
        classifier: ``forward`` then returns the last kept level's map). Returns the levels
        kept (absolute indices)."""
        levels = self.feature_info.info
        taken, top = take_indices(len(levels), indices)
        place = levels[top]["stage"]
        pruned_end = place < len(self.stages) + (1 if self._head_conv_is_level() else 0)
        self.stages = self.stages[:min(place, len(self.stages))]
        if self.head is not None and (prune_head or pruned_end or prune_norm):
            if not (self._head_conv_is_level() and place > len(self.stages)):
                self.head.conv = None
            self.head.hidden = self.head.hidden_act = None
            self.head.in_features = self.head.num_features = levels[top]["num_chs"]
            self.head.reset(0, "")
            self.num_classes = 0
        return taken

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups (layer-wise lr decay): the stem, then each block (each stage
        with ``coarse``), then the head conv last."""
        blocks = r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)"
        return {"stem": r"^stem", "blocks": [(blocks, None), (r"^head\.conv", (99999,))]}
