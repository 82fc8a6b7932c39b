"""The study's families in time (issue 31): experiments/study_latency.py run through its
main(argv) with --quick on the committed medium study, and scaling.study.latency's tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments import study_latency  # noqa: E402
from scaling.study.latency import (  # noqa: E402
    accuracy_by_model,
    figure_accuracy_vs_latency,
    per_mac,
)

STUDY = ROOT / "results" / "medium"
OUTPUTS = ("latency.csv", "accuracy_vs_latency.png", "README.md")


def _provenance(out: Path, name: str) -> Path:
    return out / f"{Path(name).stem}.provenance.json"


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def _quick_models() -> pd.DataFrame:
    """What --quick measures, worked out from family.csv alone: ratios 1 and 2 of the first two
    families, one row per (family, model), with the mean test accuracy over its seeds."""
    runs = pd.read_csv(STUDY / "family.csv", dtype={"spec_key": str})
    families = list(dict.fromkeys(runs["family"]))[:2]
    runs = runs[runs["family"].isin(families) & runs["ratio"].isin([1, 2])]
    return runs.groupby(["family", "model"])["test_acc"].agg(["mean", "count"]).reset_index()


def test_quick_run_on_the_medium_study(tmp_path):
    out = tmp_path / "latency-out"
    assert study_latency.main(["--quick", "--out", str(out)]) == 0
    for name in OUTPUTS:
        assert (out / name).is_file() and _provenance(out, name).is_file(), name
    table = pd.read_csv(out / "latency.csv", dtype={"spec_key": str})
    expected = _quick_models()
    assert len(table) == 2 * len(expected)  # one row per model and batch
    assert sorted(table["batch"].unique()) == [1, 32]
    assert (table.groupby("model")["batch"].nunique() == 2).all()
    assert (table["latency_ms"] > 0).all() and (table["iqr_ms"] >= 0).all()
    assert (table["repeats"] == 2).all()  # --quick: 2 rounds x 1 sample
    got = table[table["batch"] == 1].merge(expected, on=["family", "model"])
    assert len(got) == len(expected)
    assert got["test_acc_mean"].to_numpy() == pytest.approx(got["mean"].to_numpy())
    assert (got["n_seeds"] == got["count"]).all()
    png = (out / "accuracy_vs_latency.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    import matplotlib.image

    image = matplotlib.image.imread(out / "accuracy_vs_latency.png")
    assert image.shape[1] > image.shape[0] > 100  # two panels side by side
    readme = (out / "README.md").read_text()
    assert "torch " in readme and "| family | model | MACs |" in readme
    assert all(f"| {family} |" in readme for family in expected["family"])
    # the committed study's seeds, read from its runs
    seeds = sorted(int(x) for x in pd.read_csv(ROOT / "results/medium/family.csv",
                                               comment="#").seed.unique())
    for name in OUTPUTS:
        prov = json.loads(_provenance(out, name).read_text())
        assert prov["command"].startswith("python experiments/study_latency.py --quick")
        assert prov["seeds"] == seeds and prov["threads"] == 1 and prov["git_commit"]
        assert prov["study"] == "results/medium" and prov["result"] == name
        assert not [s for s in _strings(prov) if s.startswith("/") or str(tmp_path) in s]


def test_a_table_adds_the_predictors_value_at_its_batch(tmp_path):
    """A table of this machine with every part at 0.5 ms: the prediction is 0.5 x parts +
    overhead at batch 1, and empty at batch 32, which no table covers."""
    from scaling.latency import LatencyTable, parts
    from scaling.latency.profile import environment

    args = study_latency.parse(["--quick"])
    models, _ = study_latency.study_models(args)
    entries = {p.key: 0.5 for s in models["spec"] for p in parts(s)}
    LatencyTable(environment("cpu", 1, 1, "float32"), entries, 0.25).save(tmp_path / "t.json")
    out = tmp_path / "out"
    assert study_latency.main(["--quick", "--out", str(out), "--table",
                               str(tmp_path / "t.json")]) == 0
    table = pd.read_csv(out / "latency.csv")
    counts = {s.name: len(parts(s)) for s in models["spec"]}
    b1 = table[table["batch"] == 1]
    assert list(b1["predicted_ms"]) == pytest.approx(
        [0.5 * counts[m] + 0.25 for m in b1["model"]])
    assert table.loc[table["batch"] == 32, "predicted_ms"].isna().all()
    assert "**Predictor.**" in (out / "README.md").read_text()


@pytest.mark.parametrize("argv, words", [
    (["--families", "NoSuchNet"], ["--families", "'NoSuchNet'", "MobileNetV2"]),
    (["--batches", "0"], ["--batches 0", ">= 1"]),
    (["--rounds", "0"], ["--rounds"]),
    (["--study", "nowhere"], ["nowhere", "plan.json", "missing"]),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, tmp_path, capsys):
    assert study_latency.main([*argv, "--out", str(tmp_path / "o"), "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("study_latency.py: error: ") and "\n" not in err
    assert all(w in err for w in words), err
    assert not (tmp_path / "o" / "latency.csv").exists()


def test_per_mac_ranks_the_slowest_per_mac_first():
    table = pd.DataFrame({
        "family": ["a", "b", "a", "b", "a"], "model": ["a1", "b1", "a1", "b1", "a2"],
        "ratio": [1, 1, 1, 1, 2], "macs": [1_000_000, 2_000_000, 1_000_000, 2_000_000, 9],
        "batch": [1, 1, 32, 32, 1], "latency_ms": [1.0, 4.0, 8.0, 32.0, 1.0]})
    ranked = per_mac(table)
    assert list(ranked["family"]) == ["b", "a"]  # b: 2 ns/MAC at batch 1, a: 1
    assert list(ranked["ns_per_mac_b1"]) == pytest.approx([2.0, 1.0])
    assert list(ranked["ns_per_mac_b32"]) == pytest.approx([0.5, 0.25])
    assert list(ranked["x_fastest_b1"]) == pytest.approx([2.0, 1.0])
    with pytest.raises(ValueError, match="ratio=4"):
        per_mac(table, ratio=4)


def test_accuracy_by_model_names_missing_columns():
    with pytest.raises(ValueError, match="spec_key"):
        accuracy_by_model(pd.DataFrame({"family": ["a"], "test_acc": [0.5]}))


def test_figure_keeps_each_familys_colour_and_draws_one_panel_per_batch():
    from matplotlib.colors import to_hex

    table = pd.DataFrame({
        "family": ["b", "b", "b", "b"], "model": ["b1", "b2", "b1", "b2"],
        "macs": [1, 2, 1, 2], "batch": [1, 1, 32, 32], "latency_ms": [1.5, 2.5, 30.0, 50.0],
        "acc_mean": [0.8, 0.9, 0.8, 0.9], "acc_std": [0.01, 0.02, 0.01, 0.02],
        "n_seeds": [3, 3, 3, 3]})
    fig = figure_accuracy_vs_latency(table, families=["a", "b"])
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["batch 1", "batch 32"]
    for ax, xs in zip(axes, ([1.5, 2.5], [30.0, 50.0])):
        assert ax.get_xscale() == "log"
        (line,) = ax.get_lines()[:1]
        assert list(line.get_xdata()) == xs and list(line.get_ydata()) == pytest.approx([80, 90])
        assert to_hex(line.get_color()) == to_hex("C1")  # b is the study's second family
    minor = axes[1].xaxis.get_minor_formatter()  # 2, 3, 5 x 10^k labelled, so none collide
    assert [minor(v, 0) for v in (20, 30, 40, 50, 80, 0.3)] == ["20", "30", "", "50", "", "0.3"]
