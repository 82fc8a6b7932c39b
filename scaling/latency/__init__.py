"""Measured latency beside MACs: per-part latency tables of the user's device and a predictor.

:mod:`~scaling.latency.table` (the table file), :mod:`~scaling.latency.parts` (a spec's parts
and their keys), :mod:`~scaling.latency.predict` (the prediction; how it handles what sums badly
is said there), :mod:`~scaling.latency.profile` (measuring, torch), ``python -m
scaling.latency`` (the CLI). Torch is imported only by the profiler.
"""

from scaling.latency.parts import Part, parts
from scaling.latency.predict import MissingEntryError, calibrate, fit_constants, predict
from scaling.latency.table import LatencyTable, load_table

__all__ = ["LatencyTable", "MissingEntryError", "Part", "calibrate", "fit_constants", "load_table",
           "parts", "predict"]
