"""The torchvision reference figures (tests/data/reference.csv) for the exactness tests."""

import csv
from pathlib import Path

REFERENCE = Path(__file__).resolve().parent / "data" / "reference.csv"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference.csv"


def reference_rows() -> list[dict[str, str]]:
    with REFERENCE.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def reference() -> dict[str, dict[str, int]]:
    """model -> {params, resolution, macs_224, macs_native, acts_224} as ints."""
    return {r["model"]: {k: int(v) for k, v in r.items() if k != "model"}
            for r in reference_rows()}
