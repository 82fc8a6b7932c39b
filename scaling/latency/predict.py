"""The latency of a spec predicted from a table, without building the model.

A spec is cut into parts (:func:`parts`): its stem, each block, its head. A part's key is made of
what the deployed module and its input depend on and nothing else: for a block its resolved
geometry (in/mid/out channels, SE squeeze, groups, kernel, stride, dilation, input size,
residual and projection), activation, SE gate and activation, shortcut, style, the norm type and
padding; not its stage, position or drop-path rate (identity in inference). So two specs that
share a block share its entry, as in the per-block lookup tables of FBNet (Wu et al. 2019) and
Once-for-All (Cai et al. 2020).

Prediction (:func:`predict`) = the sum of the parts' entries + the table's ``overhead_ms``.
What sums badly, and how it is handled:

- memory-bound layers and cache effects: each entry is measured *in context*, i.e. the deployed
  block (norms folded, activations in place, channels_last, :func:`scaling.nn.deploy.deploy`)
  on an input of its real size and layout, so a depthwise or 1x1 layer pays the memory traffic
  it pays inside the model;
- fused ops: BN folding and packing happen per block exactly as in the deployed model (no fusion
  crosses a block boundary in :func:`deploy`), so there is nothing to fuse across entries;
- per-model costs that no block has (the model's forward, input check, NCHW to channels_last
  conversion at the first conv): one constant per table, ``overhead_ms``, fitted on a few whole
  models by ``profile --calibrate`` (the median of measured - summed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scaling.ir import NetworkSpec
from scaling.ir.geometry import BlockGeometry
from scaling.ir.parts import StageSpec
from scaling.ir.spec import stem_out_size
from scaling.latency.table import LatencyTable

__all__ = ["MissingEntryError", "Part", "parts", "predict"]

#: BlockGeometry fields that do not change the deployed module (where it sits, drop path)
_PLACE = ("stage", "index", "position", "drop_path")


class MissingEntryError(ValueError):
    """The table has no entry for a part of the spec."""


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


def predict(spec: NetworkSpec, table: LatencyTable, *,
            measure: bool | Callable[[list[Part]], dict[str, float]] = False) -> float:
    """Predicted latency of ``spec`` in ms: the sum of its parts' entries in ``table`` plus the
    table's overhead. A part without an entry is a :class:`MissingEntryError` naming it (and how
    many are missing), unless ``measure``: True measures the missing parts in the table's
    environment (:func:`scaling.latency.profile.measure_parts`, on this machine), a callable
    ``parts -> {key: ms}`` is used instead; either way the returned time counts them, the table
    itself is not changed.

    >>> from scaling.zoo import get_spec
    >>> from scaling.latency import LatencyTable
    >>> spec = get_spec("mobilenet_v2").replace(resolution=32)
    >>> env = {"device": "cpu", "torch": "x", "threads": 1, "batch": 1, "dtype": "float32"}
    >>> table = LatencyTable(env, {p.key: 0.5 for p in parts(spec)})
    >>> predict(spec, table) == 0.5 * len(parts(spec))
    True
    """
    if not isinstance(table, LatencyTable):
        raise TypeError(f"table must be a LatencyTable, got {type(table).__name__}")
    items = parts(spec)
    missing = {p.key: p for p in items if p.key not in table.entries}
    found: dict[str, float] = {}
    if missing and measure is False:
        first = next(iter(missing.values()))
        raise MissingEntryError(
            f"latency table ({table.describe()}) has no entry for {len(missing)} of "
            f"{len(items)} parts of {spec.name or 'the spec'}, e.g. {first.describe()}; profile "
            "them (python -m scaling.latency profile) or predict(..., measure=True)")
    if missing:
        if measure is True:
            from scaling.latency.profile import measure_parts

            found = measure_parts(list(missing.values()), **_measure_options(table))
        else:
            found = measure(list(missing.values()))
    times = {**table.entries, **found}
    return sum(times[p.key] for p in items) + (table.overhead_ms or 0.0)


def _measure_options(table: LatencyTable) -> dict[str, Any]:
    """The environment a missing entry is measured in, checked against this machine's."""
    from scaling.latency.profile import environment

    env = table.environment
    kind = env.get("device_kind", "cpu")
    here = environment(kind, env["threads"], env["batch"], env["dtype"])
    table.check_environment(here, what="measurement on this machine")
    return {"device": kind, "threads": env["threads"], "batch": env["batch"],
            "dtype": env["dtype"]}
