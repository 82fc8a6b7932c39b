"""The latency of a spec predicted from a table, without building the model.

Prediction (:func:`predict`) = the sum of the entries of the spec's parts
(:func:`scaling.latency.parts.parts`: stem, blocks, head) + the table's ``overhead_ms``.
What sums badly, and how it is handled:

- memory-bound layers and cache effects: each entry is measured *in context*, i.e. the deployed
  block (norms folded, activations in place, channels_last, :func:`scaling.nn.deploy.deploy`)
  on an input of its real size and layout, so a depthwise or 1x1 layer pays the memory traffic
  it pays inside the model;
- fused ops: BN folding and weight packing happen per block exactly as in the deployed model (no
  fusion of :func:`deploy` crosses a block boundary), so there is nothing to fuse across entries;
- per-model costs that no block has (the model's forward, its input check, the NCHW input's
  conversion at the first conv): one constant per table, ``overhead_ms``, fitted on a few whole
  models by :func:`calibrate` (the median of measured - summed).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

from scaling.ir import NetworkSpec
from scaling.latency.parts import Part, parts
from scaling.latency.table import LatencyTable

__all__ = ["MissingEntryError", "calibrate", "predict"]


class MissingEntryError(ValueError):
    """The table has no entry for a part of the spec."""


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
            f"latency table ({table.describe()}) has no entry for {len(missing)} distinct "
            f"part(s) of the {len(items)} of {spec.name or 'the spec'}, e.g. {first.describe()}; "
            "profile them (python -m scaling.latency profile) or predict(..., measure=True)")
    if missing:
        if measure is True:
            from scaling.latency.profile import measure_parts

            found = measure_parts(list(missing.values()), **measure_options(table))
        else:
            found = measure(list(missing.values()))
    times = {**table.entries, **found}
    return sum(times[p.key] for p in items) + (table.overhead_ms or 0.0)


def measure_options(table: LatencyTable) -> dict[str, Any]:
    """The options of :func:`scaling.latency.profile.measure_parts` for ``table``'s environment
    (ValueError unless it is this machine's)."""
    from scaling.latency.profile import environment

    env = table.environment
    kind = env.get("device_kind", "cpu")
    here = environment(kind, env["threads"], env["batch"], env["dtype"])
    table.check_environment(here, what="measurement on this machine")
    return {"device": kind, "threads": env["threads"], "batch": env["batch"],
            "dtype": env["dtype"]}


def calibrate(table: LatencyTable, specs: Sequence[NetworkSpec], **timing: Any
              ) -> LatencyTable:
    """``table`` with ``overhead_ms`` fitted: the median over ``specs`` of measured whole-model
    time minus the sum of its entries (all must be in the table)."""
    from scaling.latency.profile import measure_models

    env = table.environment
    kind = env.get("device_kind", "cpu")
    measured = measure_models(specs, kind, env["threads"], env["batch"], env["dtype"], **timing)
    bare = LatencyTable(env, table.entries)
    gaps = [m - predict(s, bare) for s, m in zip(specs, measured)]
    return LatencyTable(env, table.entries, statistics.median(gaps))
