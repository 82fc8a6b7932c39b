"""The latency of a spec predicted from a table, without building the model.

Prediction (:func:`predict`) = ``scale * sum(entries) + per_part_ms * parts + overhead_ms``
over the spec's parts (:func:`scaling.latency.parts.parts`: stem, blocks, head), the constants
the table's (:class:`scaling.latency.table.LatencyTable`). What sums badly, and how:

- memory-bound layers and cache effects: each entry is measured *in context*, i.e. the deployed
  block (norms folded, activations in place, channels_last, :func:`scaling.nn.deploy.deploy`)
  on an input of its real size and layout, so a depthwise or 1x1 layer pays the memory traffic
  it pays inside the model; each sample is many back-to-back calls (``min_ms``, 10 ms by the
  CLIs), so that the part's input is warm in cache as inside the model, where the block before
  just wrote it (timed over 2 ms, MobileNetV2's and B0's expand-6 blocks at 112x112 ran cold
  and summed to 1.2x their whole model at 224x224); what is left (weights evicted by the other
  blocks) is a proportion of the sum, ``scale``;
- fused ops: BN folding and weight packing happen per block exactly as in the deployed model (no
  fusion of :func:`deploy` crosses a block boundary), so there is nothing to fuse across entries;
- what no entry has: the timing harness's own cost is subtracted from each entry when measured
  (an identity timed in the same rounds); the dispatch of a part inside the model (Python
  ``Module.__call__`` and the sequential containers) is ``per_part_ms`` per part; the model's own
  forward (input check, NCHW input to the first conv) is ``overhead_ms``.

:func:`calibrate` fits the constants on whole models measured as deployed, each model weighted
by 1/measured so that the fit minimises the relative error, which is what the predictor is
judged on (:func:`fit_constants`). By default the scale alone (``terms='scale'``): calibration
models drawn like the models it predicts (one budget of the space) do not tell a per-model or
per-part term from the scale, and in cross-validation over the 50 samples of the benchmark at
bc75657 the scale alone predicted held-out models as well as all three or better;
``terms='all'`` fits least squares on ``[sum of entries, number of parts, 1]`` (the FBNet and
Once-for-All tables add a fixed per-model term; the per-part term is this package's). The
calibration models should not be the ones the error is reported on (``python -m scaling.bench
latency`` keeps them apart).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from scaling.ir import NetworkSpec
from scaling.latency.parts import Part, parts
from scaling.latency.table import LatencyTable

__all__ = ["FIT_TERMS", "MissingEntryError", "calibrate", "fit_constants", "predict"]


class MissingEntryError(ValueError):
    """The table has no entry for a part of the spec."""


def predict(spec: NetworkSpec, table: LatencyTable, *,
            measure: bool | Callable[[list[Part]], dict[str, float]] = False) -> float:
    """Predicted latency of ``spec`` in ms: the sum of its parts' entries in ``table``, scaled,
    plus the per-part and per-model terms (the module docstring). A part without an entry is a
    :class:`MissingEntryError` naming it (and how many are missing), unless ``measure``: True
    measures the missing parts in the table's environment
    (:func:`scaling.latency.profile.measure_parts`, on this machine), a callable
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
    return (table.scale * sum(times[p.key] for p in items) + table.per_part_ms * len(items)
            + (table.overhead_ms or 0.0))


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


#: what :func:`fit_constants` fits: the scale alone (per-part and per-model terms 0), or all three
FIT_TERMS = ("scale", "all")


def fit_constants(sums: Sequence[float], counts: Sequence[int], measured: Sequence[float],
                  terms: str = "all") -> tuple[float, float, float]:
    """``(scale, per_part_ms, overhead_ms)`` minimising the squared relative error of
    ``scale * sum + per_part_ms * count + overhead_ms`` against ``measured`` (weighted least
    squares, numpy's ``lstsq``). Where the models do not determine all three (fewer than 3,
    part counts and sums collinear, or a fitted scale <= 0), the largest nested model they
    determine is fitted instead: ``per_part_ms`` 0, then also ``scale`` 1 (one constant).
    ``terms='scale'``: the scale alone, ``sum(s/m) / sum(s^2/m^2)`` (the other two 0): what
    models of one budget determine (their sums differ by less than 2x, so a per-model term and a
    scale trade off within noise)."""
    import numpy as np

    if terms not in FIT_TERMS:
        raise ValueError(f"terms={terms!r} is not allowed; expected one of {FIT_TERMS}")

    s, n, m = (np.asarray(v, dtype=float) for v in (sums, counts, measured))
    if not (len(s) == len(n) == len(m)) or len(m) < 1:
        raise ValueError(f"calibration needs as many sums, counts and measured times, at least "
                         f"one each; got {len(s)}, {len(n)}, {len(m)}")
    if not (np.all(np.isfinite(m)) and np.all(m > 0) and np.all(np.isfinite(s))):
        raise ValueError("calibration: every measured time must be finite and > 0 ms")
    ones = np.ones_like(m)
    if terms == "scale":
        if not np.any(s > 0):
            raise ValueError("calibration: a scale needs a model whose sum of entries is > 0")
        return float(np.sum(s / m) / np.sum(s * s / (m * m))), 0.0, 0.0
    for design, rest in (((s, n, ones), ()), ((s, ones), (0.0,))):
        a = np.stack([c / m for c in design], axis=1)
        if len(m) < a.shape[1] or np.linalg.matrix_rank(a) < a.shape[1]:
            continue
        fit = np.linalg.lstsq(a, ones, rcond=None)[0]
        if fit[0] > 0:
            scale, *more = (float(v) for v in fit)
            per_part, overhead = (more[0], more[1]) if not rest else (0.0, more[0])
            return scale, per_part, overhead
    overhead = float(np.sum((m - s) / m ** 2) / np.sum(1 / m ** 2))  # scale 1, no per-part term
    return 1.0, 0.0, overhead


def calibrate(table: LatencyTable, specs: Sequence[NetworkSpec], terms: str = "scale",
              **timing: Any) -> LatencyTable:
    """``table`` with its constants fitted (:func:`fit_constants`, ``terms``) on ``specs`` timed
    whole and deployed in the table's environment (all their parts must be in the table)."""
    from dataclasses import replace

    from scaling.latency.profile import measure_models

    env = table.environment
    kind = env.get("device_kind", "cpu")
    measured = measure_models(specs, kind, env["threads"], env["batch"], env["dtype"], **timing)
    bare = LatencyTable(env, table.entries)
    scale, per_part, overhead = fit_constants([predict(s, bare) for s in specs],
                                              [len(parts(s)) for s in specs], measured,
                                              terms)
    return replace(table, scale=scale, per_part_ms=per_part, overhead_ms=overhead)
