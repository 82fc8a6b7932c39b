"""Measured latency beside MACs: per-part latency tables of the user's device and a predictor.

:mod:`~scaling.latency.table` (the table file), :mod:`~scaling.latency.predict` (parts of a spec,
their keys, the prediction; the handling of what sums badly is described there),
:mod:`~scaling.latency.profile` (measuring, torch), ``python -m scaling.latency`` (the CLI).
Torch is imported only by the profiler.
"""

from scaling.latency.predict import MissingEntryError, Part, parts, predict
from scaling.latency.table import LatencyTable, load_table

__all__ = ["LatencyTable", "MissingEntryError", "Part", "load_table", "parts", "predict"]
