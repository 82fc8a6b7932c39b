"""Latency tables (round trip, merge, environments), the predictor (sum of entries, missing
entries), the CLI on files it wrote, and a search under a latency budget; tiny sizes."""

import json

import optuna
import pytest

from scaling.ir import NetworkSpec, StageSpec, StemSpec
from scaling.latency import LatencyTable, MissingEntryError, load_table, parts, predict
from scaling.latency.cli import main
from scaling.latency.table import parse_latency
from scaling.search.study import SearchConfig, run_search

optuna.logging.set_verbosity(optuna.logging.WARNING)
ENV = {"device": "cpu test", "torch": "x", "threads": 1, "batch": 1, "dtype": "float32"}


def _spec(width=8, res=12, repeats=3):
    """Stem, blocks sharing one entry after the first (same geometry), a head."""
    return NetworkSpec(stages=(StageSpec("mbconv", repeats, width, stride=2, expansion=2),),
                       stem=StemSpec(channels=(8,), strides=(1,)), in_channels=1,
                       resolution=res, num_classes=4)


def test_table_round_trip_merge_and_environment_mismatch(tmp_path):
    a = LatencyTable(ENV, {"k1": 1.5, "k2": 0.25}, overhead_ms=0.1)
    a.save(tmp_path / "a.json")
    assert load_table(tmp_path / "a.json") == a
    b = LatencyTable(ENV, {"k2": 0.5, "k3": 2.0})
    merged = a.merge(b)
    assert merged.entries == {"k1": 1.5, "k2": 0.5, "k3": 2.0} and merged.overhead_ms == 0.1
    other = LatencyTable({**ENV, "batch": 32}, {"k4": 1.0})
    with pytest.raises(ValueError, match="batch=32.*batch=1"):
        a.merge(other)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a latency table"):
        load_table(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="threads=0"):
        LatencyTable({**ENV, "threads": 0})


@pytest.mark.parametrize("text,ms", [("5ms", 5.0), ("800us", 0.8), ("0.2s", 200.0), ("3", 3.0)])
def test_parse_latency(text, ms):
    assert parse_latency(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["0ms", "-1", "fast", "nanms"])
def test_parse_latency_refuses(text):
    with pytest.raises(ValueError, match="latency budget"):
        parse_latency(text)


def test_shared_blocks_share_entries_and_predict_is_their_sum():
    spec = _spec()
    items = parts(spec)
    assert [p.kind for p in items] == ["stem", "block", "block", "block", "head"]
    assert items[2].key == items[3].key and items[1].key != items[2].key  # stride, channels
    entries = {p.key: 1.0 + i for i, p in enumerate(items)}  # the shared key: its last value
    table = LatencyTable(ENV, entries, overhead_ms=0.5)
    assert predict(spec, table) == pytest.approx(sum(entries[p.key] for p in items) + 0.5)
    wider = _spec(width=16)
    assert parts(wider)[0].key == items[0].key and parts(wider)[1].key != items[1].key


def test_missing_entry_is_one_clear_error():
    spec = _spec()
    table = LatencyTable(ENV, {parts(spec)[0].key: 1.0})
    with pytest.raises(MissingEntryError, match=r"no entry for 3 distinct part.* of the 5 "):
        predict(spec, table)
    seen = []
    ms = predict(spec, table, measure=lambda ps: seen.extend(ps) or {p.key: 2.0 for p in ps})
    assert ms == pytest.approx(1.0 + 4 * 2.0) and len({p.key for p in seen}) == 3


def test_cli_profile_predict_merge_on_its_own_files(tmp_path, capsys):
    spec_file = tmp_path / "net.json"
    spec_file.write_text(_spec().to_json())
    others = [tmp_path / "a.json", tmp_path / "b.json"]  # calibration: 3 specs, part counts vary
    others[0].write_text(_spec(width=12, repeats=1).to_json())
    others[1].write_text(_spec(width=8, res=16, repeats=5).to_json())
    out = tmp_path / "t.json"
    fast = ["--rounds", "2", "--warmup", "1", "--min-ms", "0.2"]
    assert main(["profile", "--models", str(spec_file), *map(str, others), "--out", str(out),
                 "--calibrate", "3", "--clock", "cpu", *fast]) == 0
    table = load_table(out)
    assert {p.key for p in parts(_spec())} <= set(table.entries)
    assert table.calibrated and table.scale > 0 and table.harness_ms > 0
    assert all(v > 0 for v in table.entries.values())
    assert main(["predict", str(spec_file), "--table", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith(" ms")
    wide = tmp_path / "wide.json"
    wide.write_text(_spec(width=16).to_json())
    assert main(["predict", str(wide), "--table", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no entry for" in err and "Traceback" not in err
    out2 = tmp_path / "t2.json"
    assert main(["profile", "--models", str(wide), "--out", str(out2), "--calibrate", "0",
                 *fast]) == 0
    assert main(["merge", str(out), str(out2), "--out", str(tmp_path / "m.json")]) == 0
    merged = load_table(tmp_path / "m.json")
    assert predict(_spec(width=16), merged) > 0 and len(merged) > len(table)


@pytest.mark.slow
def test_search_under_a_latency_budget(tmp_path):
    """Samples predicted over the budget are rejected (and resampled); the trained ones are
    predicted within it and, measured, run faster than the rejected ones. Whether measured
    latency stays within a budget is the predictor's error, which ``scaling.bench latency``
    measures on an idle machine (a timed test on a shared machine would be flaky)."""
    from scaling.latency.profile import measure_models

    table_file = tmp_path / "lat.json"
    assert main(["profile", "--space", "default", "--samples", "3", "--budget", "300K",
                 "--out", str(table_file), "--rounds", "3", "--warmup", "1", "--min-ms", "0.5",
                 "--calibrate", "1"]) == 0
    from scaling.latency.cli import space_samples

    table = load_table(table_file)
    predicted = sorted(predict(s, table) for s in space_samples(3, 28, 300_000))
    budget = (predicted[1] + predicted[2]) / 2  # some samples are over it
    cfg = SearchConfig(study="lat", evaluator="zero-cost", proxies=("params",),
                       rank_proxy="params", budget=300_000, trials=2, sampler="random",
                       out_dir=str(tmp_path), quiet=True, threads=1, heartbeat=1, grace=2,
                       reevaluate=0, latency_budget=f"{budget}ms",
                       latency_table=str(table_file))
    info = run_search(cfg)
    trials = info.study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get("status") == "ok"]
    over = [t for t in trials if t.user_attrs.get("status") == "over_latency"]
    assert 1 <= len(trained) <= 2  # parts the table lacks are timed on the fly: a busy machine
    # times them slower and rejects more samples, up to the attempt cap
    assert all(t.user_attrs["latency_ms"] <= budget for t in trained)
    assert all(t.user_attrs["latency_ms"] > budget and not t.user_attrs["feasible"]
               and t.value == 0.0 for t in over)
    # measured in one interleaved pass: the kept nets are within the budget up to the
    # predictor's error, taken from the rejected nets of the same pass (so a busy machine, which
    # slows every net alike, moves the error and the check together)
    kept = [NetworkSpec.from_json(t.user_attrs["spec"]) for t in trained]
    rejected = [t for t in over if "spec" in t.user_attrs]
    if rejected:
        measured = measure_models(kept + [NetworkSpec.from_json(t.user_attrs["spec"])
                                          for t in rejected], rounds=3, warmup=1, min_ms=0.5)
        error = max(m / t.user_attrs["latency_ms"] for m, t in zip(measured[len(kept):], rejected))
        assert all(m <= budget * max(error, 1.0) * 1.1 for m in measured[:len(kept)]), (
            measured, budget, error)


def test_search_refuses_a_budget_without_a_table(tmp_path):
    from scaling.search import cli

    rc = cli.main(["--latency-budget", "5ms", "--evaluator", "zero-cost", "--out",
                   str(tmp_path)])
    assert rc == 2


def test_bench_error_figures_by_hand():
    from scaling.bench.latency import errors

    out = errors([1.1, 2.0, 2.7, 5.0], [1.0, 2.0, 3.0, 4.0])  # errors 10, 0, 10, 25 %
    assert out["median_abs_pct"] == 10.0 and out["spearman"] == 1.0
    assert out["p90_abs_pct"] == pytest.approx(20.5)  # pandas' linear quantile of 0,10,10,25
    assert errors([3.0, 2.0, 1.0], [1.0, 2.0, 3.0])["spearman"] == -1.0
    assert errors([1.0], [2.0])["spearman"] is None


def test_calibration_fit_recovers_known_constants():
    """Synthetic models: measured = 1.3 x sum + 0.02 ms per part + 0.4 ms, exactly, then with
    +-1% noise: the weighted least squares gives the constants back."""
    import numpy as np

    from scaling.latency.predict import fit_constants

    rng = np.random.default_rng(0)
    sums = rng.uniform(0.5, 20.0, 12)
    counts = rng.integers(8, 60, 12)
    measured = 1.3 * sums + 0.02 * counts + 0.4
    assert fit_constants(sums, counts, measured) == pytest.approx((1.3, 0.02, 0.4), rel=1e-9)
    noisy = measured * rng.uniform(0.99, 1.01, 12)
    scale, per_part, overhead = fit_constants(sums, counts, noisy)
    assert scale == pytest.approx(1.3, rel=0.03) and abs(per_part - 0.02) < 0.01
    # fewer constants where the models do not determine three: one part count (per part and
    # per model collinear), or two models: scale and overhead; one model: the overhead alone
    plain = 1.3 * sums + 0.4
    assert fit_constants(sums[:4], [10] * 4, plain[:4]) == pytest.approx((1.3, 0.0, 0.4))
    assert fit_constants(sums[:2], counts[:2], plain[:2]) == pytest.approx((1.3, 0.0, 0.4))
    assert fit_constants(sums[:1], counts[:1], sums[:1] + 0.7) == pytest.approx((1.0, 0.0, 0.7))
    with pytest.raises(ValueError, match="finite and > 0"):
        fit_constants(sums[:3], counts[:3], [1.0, 0.0, 2.0])
    # the scale alone (the default of calibrate and of the benchmark): exact on proportional
    # times, and the weighted mean ratio sum(s/m) / sum(s^2/m^2) on others
    assert fit_constants(sums, counts, 1.3 * sums, "scale") == pytest.approx((1.3, 0.0, 0.0))
    scale, per_part, overhead = fit_constants(sums, counts, noisy, "scale")
    r = sums / noisy
    assert (per_part, overhead) == (0.0, 0.0)
    assert scale == pytest.approx(r.sum() / (r * r).sum()) and scale > 1.3  # overhead absorbed
    with pytest.raises(ValueError, match=r"terms='both' is not allowed; expected one of"):
        fit_constants(sums, counts, measured, "both")


def test_each_round_times_the_modules_in_a_new_order():
    """A fixed order (reversed every other round) gave a module the same neighbours each round,
    and a burst of load stayed on the same run of modules: every round draws a new order."""
    import torch

    from scaling.latency.profile import sample_modules

    calls: list[int] = []

    class Tag(torch.nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            self.i = i

        def forward(self, x):
            calls.append(self.i)
            return x

    runs = [(Tag(i), torch.zeros(1)) for i in range(8)]
    samples = sample_modules(runs, rounds=4, warmup=0, min_ms=0, settle=0)
    assert [len(s) for s in samples] == [4] * 8
    rounds = [calls[8 + 8 * r: 16 + 8 * r] for r in range(4)]  # after the 8 sizing calls
    assert all(sorted(r) == list(range(8)) for r in rounds)
    assert len({tuple(r) for r in rounds}) == 4  # four different orders
    calls.clear()
    sample_modules(runs, rounds=4, warmup=0, min_ms=0, settle=0)
    assert [calls[8 + 8 * r: 16 + 8 * r] for r in range(4)] == rounds  # seeded: the same again


def test_calibrated_table_predicts_with_its_constants():
    spec = _spec()
    items = parts(spec)
    table = LatencyTable(ENV, {p.key: 1.0 for p in items}, overhead_ms=0.5, scale=2.0,
                         per_part_ms=0.1, harness_ms=0.002)
    assert predict(spec, table) == pytest.approx(2.0 * 5 + 0.1 * 5 + 0.5)
    with pytest.raises(ValueError, match="scale=0 is not allowed"):
        LatencyTable(ENV, scale=0)


def test_old_table_files_read_and_unknown_formats_are_refused(tmp_path):
    """A format-1 file (entries with the harness in, one overhead) reads as scale 1, no per-part
    term; it does not merge with a format-2 table; other formats and fields are one line."""
    spec = _spec()
    old = {"format": "scaling.latency/1", "environment": ENV, "overhead_ms": 0.25,
           "entries": {p.key: 1.0 for p in parts(spec)}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    table = load_table(tmp_path / "old.json")
    assert (table.scale, table.per_part_ms, table.harness_ms) == (1.0, 0.0, None)
    assert predict(spec, table) == pytest.approx(5 * 1.0 + 0.25)
    table.save(tmp_path / "new.json")
    assert json.loads((tmp_path / "new.json").read_text())["format"] == "scaling.latency/2"
    assert load_table(tmp_path / "new.json") == table
    with pytest.raises(ValueError, match="do not merge.*format 1"):
        LatencyTable(ENV, harness_ms=0.001).merge(table)
    for bad, match in (({**old, "scale": 2.0}, r"unknown key\(s\) \['scale'\]"),
                       ({**old, "format": "scaling.latency/3"}, "not a latency table")):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match) as info:
            load_table(tmp_path / "bad.json")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("argv,match", [
    (["--calibrate", "2"], "calibrate=2"),
    (["--samples", "-1"], "samples=-1"),
    (["--clock", "cpu", "--threads", "2"], "clock='cpu' is not allowed"),
    (["--clock", "sundial"], "--clock"),
    (["--batch", "0"], "batch=0"),
    (["--res", "4"], "res=4"),
    (["--budget", "lots"], "lots"),
    (["--models", "resnet9000"], "resnet9000"),
    (["--rounds", "0"], "rounds=0"),
    (["--heavy-rounds", "0"], "heavy-rounds=0"),
    (["--light-rounds", "0"], "light-rounds=0"),
    (["--fit", "cubic"], "--fit"),
])
def test_bench_latency_bad_arguments_are_one_line(argv, match, capsys, tmp_path):
    from scaling.bench import main as bench

    assert bench(["latency", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and match in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_bench_latency_rounds_follow_pixels_times_batch():
    from argparse import Namespace

    from scaling.bench.latency import rounds_for

    args = Namespace(rounds=21, heavy_rounds=5, light_rounds=63)
    cases = [(28, 1), (28, 32), (224, 1), (224, 32), (112, 4), (160, 2), (100, 4)]
    assert [rounds_for(r, b, args) for r, b in cases] == [63, 63, 21, 5, 21, 5, 63]


@pytest.mark.slow
def test_bench_latency_tiny_writes_what_the_package_reads(tmp_path, capsys):
    """The benchmark at tiny size (one zoo net, 2 samples, 3 calibration samples, 28x28,
    batch 1, the CPU clock): its tables load and predict, its CSV has every model; no timing is
    asserted."""
    import pandas as pd

    from scaling.bench import main as bench

    out = tmp_path / "lat"
    assert bench(["latency", "--models", "mobilenet_v3_small", "--samples", "2", "--calibrate",
                  "3", "--res", "28", "--batch", "1", "--rounds", "1", "--warmup", "0",
                  "--min-ms", "0.1", "--clock", "cpu", "--out", str(out)]) == 0
    rec = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (rec["models"], rec["samples"], rec["calibration"]) == (1, 2, 3)
    assert rec["median_abs_pct"] >= 0 and rec["scale"] > 0
    table = load_table(out / "table_r28_b1.json")
    assert table.calibrated and table.environment["batch"] == 1
    rows = pd.read_csv(out / "predictions.csv")
    assert list(rows["kind"]) == ["zoo"] + ["sample"] * 2 + ["calibration"] * 3
    from scaling.zoo import get_spec

    spec = get_spec("mobilenet_v3_small").replace(resolution=28)
    assert predict(spec, table) == pytest.approx(rows["predicted_ms"][0], rel=1e-4)
    assert json.loads((out / "latency.provenance.json").read_text())["records"] == 1
