"""The study's run store: ``runs.csv``, one row per finished training run, keyed by (spec hash,
seed, protocol key), rewritten atomically after each run, so a stopped study resumes where it
stopped and a spec shared by two experiments trains once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scaling.study.plan import spec_key

RUN_COLUMNS = ["key", "spec_key", "seed", "protocol", "model", "macs", "params", "resolution",
               "val_acc", "test_acc", "status", "train_seconds", "wall_seconds", "device"]


class RunStore:
    """``runs.csv``: one row per finished training run, rewritten atomically after each."""

    def __init__(self, path: Path) -> None:
        import pandas as pd

        self.path = path
        self.rows: dict[str, dict[str, Any]] = {}
        self.read: set[str] = set()  #: keys of the runs the tables used (:meth:`get`)
        if path.is_file():
            for row in pd.read_csv(path, dtype={"key": str, "spec_key": str}).to_dict("records"):
                self.rows[row["key"]] = row

    @staticmethod
    def key(spec, seed: int, protocol: str) -> str:
        return f"{spec_key(spec)}-s{seed}-{protocol}"

    def get(self, spec, seed: int, protocol: str) -> dict[str, Any]:
        """The run of ``spec`` at ``seed`` under ``protocol``, remembered as used."""
        key = self.key(spec, seed, protocol)
        self.read.add(key)
        return self.rows[key]

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        self._write()

    def keep_read(self) -> int:
        """Drop the rows no :meth:`get` has read (runs of specs or protocols the plan no longer
        has); returns how many were dropped."""
        stale = [k for k in self.rows if k not in self.read]
        for k in stale:
            del self.rows[k]
        if stale:
            self._write()
        return len(stale)

    def _write(self) -> None:
        import pandas as pd

        from scaling.files import atomic_write_text

        df = pd.DataFrame(list(self.rows.values()), columns=RUN_COLUMNS)
        df = df.sort_values(["spec_key", "seed"], kind="stable")
        atomic_write_text(self.path, df.to_csv(index=False, float_format="%.6g"))


def joined(entries: list[dict[str, Any]], seeds: tuple[int, ...], store: RunStore,
           protocol: str) -> list[dict[str, Any]]:
    """One row per (entry, seed): the entry's columns and its run's results."""
    rows = []
    for e in entries:
        for seed in seeds:
            run = store.get(e["spec"], seed, protocol)
            cols = {k: v for k, v in e.items() if k != "spec"}
            rows.append({**cols, "model": e["spec"].name, "seed": seed,
                         **{k: run[k] for k in ("params", "resolution", "val_acc", "test_acc",
                                                "status", "train_seconds", "spec_key")},
                         "blocks": e["spec"].num_blocks, "protocol": protocol})
    return rows
