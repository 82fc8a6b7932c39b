"""The parts of a spec that a latency table times: its stem, each block, its head, with keys.

A part's key is made of what the deployed module and its input depend on and nothing else: for a
block its resolved geometry (in/mid/out channels, SE squeeze, groups, kernel, stride, dilation,
input size, residual and projection), activation, SE gate and activation, shortcut, style, the
norm type and padding; not its stage, position or drop-path rate (identity in inference). So two
specs that share a block share its entry, as in the per-block lookup tables of FBNet (Wu et al.
2019) and Once-for-All (Cai et al. 2020). Torch-free.
"""


from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from scaling.ir import NetworkSpec
from scaling.ir.geometry import BlockGeometry
from scaling.ir.parts import StageSpec
from scaling.ir.spec import stem_out_size

__all__ = ["Part", "parts"]

#: BlockGeometry fields that do not change the deployed module (where it sits, drop path)
_PLACE = ("stage", "index", "position", "drop_path")


@dataclass(frozen=True)
class Part:
    """One timed unit of a spec: ``kind`` stem, block or head; ``key`` its table key; ``shape``
    its input (C, H, W); the spec (and for a block its geometry and stage) to build it."""

    kind: str
    key: str
    shape: tuple[int, int, int]
    spec: NetworkSpec
    geometry: BlockGeometry | None = None
    stage: StageSpec | None = None

    def describe(self) -> str:
        """The key on one line, without JSON noise: ``block mbconv in=16 ...``."""
        fields = json.loads(self.key.split(" ", 1)[1])
        return f"{self.kind} " + " ".join(f"{k}={v}" for k, v in fields.items())


def _key(kind: str, fields: dict[str, Any]) -> str:
    return f"{kind} " + json.dumps(fields, sort_keys=True, separators=(",", ":"))


def _norm(spec: NetworkSpec) -> dict[str, Any]:
    """The norm fields that change a deployed module's time (eps/momentum only change values)."""
    n = spec.norm
    return {"norm": n.type, "norm_groups": n.num_groups, "padding": spec.padding}


def parts(spec: NetworkSpec) -> list[Part]:
    """The stem, every block in order, and the head of ``spec``, each with its key."""
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    stem = spec.stem
    out = [Part("stem", _key("stem", {
        "in": spec.in_channels, "res": spec.resolution, "channels": list(stem.channels),
        "kernels": list(stem.kernels), "strides": list(stem.strides), "pool": stem.pool,
        "act": stem.activation, **_norm(spec)}),
        (spec.in_channels, spec.resolution, spec.resolution), spec)]
    channels, size = stem.out_channels, stem_out_size(spec)
    for g in spec.blocks():
        stage = spec.stages[g.stage]
        fields = {k: v for k, v in vars(g).items() if k not in _PLACE}
        se = stage.se if g.squeeze else None
        fields.update(act=stage.activation, shortcut=stage.shortcut, style=stage.style,
                      expand=stage.expand, se_gate=se.gate if se else None,
                      se_act=se.activation if se else None, **_norm(spec))
        out.append(Part("block", _key("block", fields), (channels, size, size), spec, g, stage))
        channels, size = g.out_channels, g.out_size
    head = spec.head
    out.append(Part("head", _key("head", {
        "in": channels, "res": size, "channels": head.channels, "act": head.activation,
        "hidden": head.hidden, "hidden_act": head.hidden_activation if head.hidden else None,
        "classes": spec.num_classes, **_norm(spec)}), (channels, size, size), spec))
    return out


