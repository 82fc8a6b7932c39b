"""``python -m scaling.bench gpu`` at tiny sizes on the CPU: every measurement prints one JSON
line with every field, the spawned workers run, --out writes the lines and their provenance.
Timings are printed, never asserted."""

from __future__ import annotations

import json

import pytest

from scaling.bench import main
from scaling.bench.gpu import FIELDS

NAMES = {"plain", "trainer", "search_trials", "search_evaluator", "zero_cost_trials",
         "concurrent_workers"}


@pytest.mark.slow
def test_gpu_bench_tiny_on_cpu_prints_every_field(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["gpu", "--tiny", "--data", "synthetic", "--device", "cpu", "--threads", "1",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["name"] for r in records} == NAMES
    for r in records:
        assert all(r.get(f) is not None for f in FIELDS), r
        assert r["device"] == "cpu" and r["images"] > 0 and r["img_s"] > 0, r
    by = {r["name"]: r for r in records}
    assert by["trainer"]["ratio_to_plain"] > 0 and by["trainer"]["status"] == "ok"
    assert by["search_trials"]["trials"] + by["search_trials"]["over_budget"] == 2
    evaluator = by["search_evaluator"]
    assert evaluator["pairs"] == 2 and evaluator["ratio_to_train"] > 0 and evaluator["proxies"]
    workers = by["concurrent_workers"]  # two spawned processes, one trial each
    assert workers["workers"] == 2 and workers["start_method"] == "spawn"
    assert workers["trials"] + workers.get("over_budget", 0) <= 2 and workers["speedup"] > 0
    assert by["zero_cost_trials"]["threads"] == 1 and by["zero_cost_trials"]["trial_s_median"]
    assert (out / "gpu.jsonl").read_text().splitlines() == lines
    prov = json.loads((out / "gpu.provenance.json").read_text())
    assert prov["command"].startswith("python") and prov["records"] == len(records)


@pytest.mark.parametrize("argv, match", [(["--batch-size", "0"], "--batch-size=0"),
                                         (["--workers", "-1"], "--workers"),
                                         (["--device", "tpu9"], "device")])
def test_gpu_bench_bad_input_is_one_line_exit_2(argv, match, capsys):
    assert main(["gpu", "--device", "cpu", "--data", "synthetic", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_the_cudnn_off_trial_loop_runs_and_restores_the_flag(capsys):
    """The loop that only CUDA runs in ``bench gpu`` (cuDNN off, the next samples), on the CPU."""
    import argparse

    import torch

    from scaling.bench.gpu import _Bench, configure

    p = argparse.ArgumentParser()
    configure(p)
    bench = _Bench(p.parse_args(["--tiny", "--data", "synthetic", "--device", "cpu",
                                 "--threads", "1"]))
    before = torch.backends.cudnn.enabled
    rec = bench.search("search_trials_no_cudnn", cudnn=False)
    assert torch.backends.cudnn.enabled == before
    assert rec["cudnn"] is False and rec["seed"] == 1 and rec["name"] == "search_trials_no_cudnn"
    assert rec["trials"] + rec["over_budget"] == 2
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == rec
