"""experiments/rank_fidelity.py at a tiny size: 3 models of the medium study's plan, their short
runs from its runs.csv, a tiny long protocol; resumable; tau-b in the README."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments import rank_fidelity  # noqa: E402
from scaling.ir import NetworkSpec  # noqa: E402
from scaling.study.plan import spec_key  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
TINY = {"subset": 64, "val_size": 32, "test_size": 32, "batch_size": 32, "epochs": 1}
SHALLOW = ("searched", "ResNet-18", "MobileNetV2")  # the quickest to train at the 0.9M point


def small_study(tmp_path: Path) -> Path:
    """A study folder holding three 0.9M-MAC family models of the medium plan and their runs."""
    plan = json.loads((ROOT / "results/medium/plan.json").read_text())
    keys = {m["spec_key"] for m in rank_fidelity.pick_models(plan, None)
            if m["family"] in SHALLOW and m["ratio"] == 1}
    assert len(keys) == 3
    plan["models"] = [m for m in plan["models"] if m["experiment"] == "family"
                      and spec_key(NetworkSpec.from_dict(m["spec"])) in keys]
    study = tmp_path / "study"
    study.mkdir()
    (study / "plan.json").write_text(json.dumps(plan))
    runs = pd.read_csv(ROOT / "results/medium/runs.csv", dtype={"spec_key": str})
    runs[runs.spec_key.isin(keys)].to_csv(study / "runs.csv", index=False)
    return study


def test_models_are_distinct_and_spread_over_macs():
    plan = json.loads((ROOT / "results/medium/plan.json").read_text())
    every = rank_fidelity.pick_models(plan, None)
    assert len(every) == len({m["spec_key"] for m in every}) == 31  # B0 twice at 0.9M: once
    twelve = rank_fidelity.pick_models(plan, 12)
    assert len({m["spec_key"] for m in twelve}) == 12
    assert [m["spec_key"] for m in (twelve[0], twelve[-1])] == [every[0]["spec_key"],
                                                              every[-1]["spec_key"]]
    with pytest.raises(ValueError, match=r"--models must be in 1\.\.31"):
        rank_fidelity.pick_models(plan, 40)


def test_the_long_protocol_differs_only_in_epochs_and_seeds():
    plan = json.loads((ROOT / "results/medium/plan.json").read_text())
    short = rank_fidelity.study_protocol(plan)
    assert short.key() == plan["protocol"]["key"]
    long = rank_fidelity.long_protocol(short, 3)
    assert (long.epochs, long.seeds) == (3 * short.epochs, (0,))
    assert dataclasses.replace(long, epochs=short.epochs, seeds=short.seeds) == short
    with pytest.raises(ValueError, match="--factor must be > 0"):
        rank_fidelity.long_protocol(short, 0)


def test_bad_study_is_one_line(tmp_path, capsys):
    assert rank_fidelity.main(["--study", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rank_fidelity.py: error: --study") and "\n" not in err


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason=f"Fashion-MNIST absent from "
                    f"{FASHION_DIR} (apt-get install dataset-fashion-mnist)")
def test_tiny_rank_fidelity_trains_once_and_reports_tau(tmp_path):
    study, out = small_study(tmp_path), tmp_path / "out"
    said: list[str] = []
    res = rank_fidelity.run(study, out, jobs=1, device="cpu", override=TINY, log=said.append)
    assert any(line.startswith("training 3 runs") for line in said), said
    table = pd.read_csv(out / "rank_fidelity.csv")
    assert len(table) == 3 and table.long_test.between(0, 1).all()
    seeds = pd.read_csv(study / "runs.csv").seed.nunique()  # the study's seeds a model
    assert seeds >= 2 and (table.short_seeds == seeds).all()
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 3 and set(runs.seed) == {0} and runs.protocol.nunique() == 1
    assert {(t["split"], t["n"]) for t in res["taus"]} == {("test", 3), ("val", 3)}
    assert all(-1 <= t["low"] <= t["tau_b"] <= t["high"] <= 1 for t in res["taus"])
    readme = (out / "README.md").read_text()
    assert "tau-b" in readme and "| test | mean over the study's seeds |" in readme
    prov = json.loads((out / "rank_fidelity.provenance.json").read_text())
    assert prov["seeds"] == [0] and prov["long_protocol"]["subset"] == TINY["subset"]
    again: list[str] = []
    rank_fidelity.run(study, out, jobs=1, device="cpu", override=TINY, log=again.append)
    assert not any(line.startswith("training") for line in again), again
    assert pd.read_csv(out / "runs.csv").equals(runs)
