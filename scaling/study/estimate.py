"""How long a study's runs should take, before they run.

A run's training time is modelled as ``images * exp(a) * MACs**b`` seconds (a power law in the
model's MACs, fitted by least squares on the logs): small nets are bound by per-step overhead,
not by arithmetic, so the time grows far slower than the MACs (``b`` about 0.5 on a CPU thread,
0.36 on a GPU). The fit comes from the study's own ``runs.csv`` where it holds enough runs on
the device, else from the committed studies' runs (:data:`SPEED`). Wall time divides the sum
by the parallel jobs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: (a, b) fitted on the committed runs: results/medium/runs.csv (139 runs, one CPU thread each,
#: 2 jobs on 2 cores) and results/full/runs.csv (158 runs, 12 processes on one H200)
SPEED = {"cpu": (-14.20, 0.515), "cuda": (-14.41, 0.356)}
#: training images of each fixed dataset before the validation split
TRAIN_SIZE = {"fashion-mnist": 60_000, "mnist": 60_000, "cifar10": 50_000}


def fit_speed(runs_csv: Path, device: str, epochs_images: float) -> tuple[float, float] | None:
    """(a, b) fitted on ``runs_csv``'s finished runs on ``device`` (at least 5, of two MAC
    sizes or more), each having trained ``epochs_images`` images; None where there are too few."""
    if not runs_csv.is_file():
        return None
    import numpy as np
    import pandas as pd

    df = pd.read_csv(runs_csv)
    df = df[(df.status == "ok") & df.device.astype(str).str.startswith(device)
            & (df.train_seconds > 0)]
    if len(df) < 5 or df.macs.nunique() < 2:
        return None
    b, a = np.polyfit(np.log(df.macs), np.log(df.train_seconds / epochs_images), 1)
    return float(a), float(b)


def train_images(proto: Any) -> int | None:
    """Images a run trains on per epoch: the subset, else the training set less validation
    (None for an ImageFolder tree without a subset: its size is not known before it is read)."""
    if proto.subset is not None:
        return int(proto.subset)
    total = TRAIN_SIZE.get(proto.dataset)
    return None if total is None else total - proto.val_size


def seconds(macs: Sequence[int], images: float, speed: tuple[float, float]) -> float:
    """Training seconds of one run per model of ``macs``, summed."""
    a, b = speed
    return sum(images * math.exp(a) * m ** b for m in macs)


def format_duration(s: float) -> str:
    """``42 s``, ``12.5 min``, ``3.2 h``."""
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"
