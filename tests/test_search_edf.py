"""Random members of the search space and their error EDF (issue 29): scaling.search.edf and
experiments/search_edf.py at a tiny size, run through its main(argv) as a user runs it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaling.cost import complexity  # noqa: E402
from scaling.search.edf import edf, random_members  # noqa: E402
from scaling.search.members import same_spec, spec_from_params  # noqa: E402

BUDGET = 900_000


def test_members_lie_in_the_window_and_rebuild_from_their_params():
    members = random_members(4, BUDGET, (0.95, 1.05), seed=3)
    assert len(members) == 4 and members.drawn == 4 + members.rejected
    for params, spec in members:
        assert 0.95 * BUDGET <= complexity(spec).macs <= 1.05 * BUDGET
        assert same_spec(spec_from_params(params, budget=BUDGET), spec)  # the default space
    again = random_members(4, BUDGET, (0.95, 1.05), seed=3)
    assert [p for p, _ in again] == [p for p, _ in members]
    other = random_members(4, BUDGET, (0.95, 1.05), seed=4)
    assert [p for p, _ in other] != [p for p, _ in members]


def test_a_narrow_window_rejects_more_and_counts_it():
    wide = random_members(3, BUDGET, (0.5, 1.05), seed=0)
    narrow = random_members(3, BUDGET, (0.99, 1.01), seed=0)
    assert narrow.rejected > wide.rejected
    for _, spec in narrow:
        assert 0.99 * BUDGET <= complexity(spec).macs <= 1.01 * BUDGET


@pytest.mark.parametrize("kw, match", [
    ({"n": 0}, "n=0"), ({"budget": -1}, "budget=-1"),
    ({"window": (1.05, 0.95)}, "window="), ({"window": "wide"}, "window='wide'"),
    ({"window": (1e-9, 2e-9)}, "only 0 of"),
])
def test_bad_input_is_one_clear_error(kw, match, monkeypatch):
    monkeypatch.setattr("scaling.search.edf.MAX_DRAWS_PER_MEMBER", 3)
    args = {"n": 1, "budget": BUDGET, "window": (0.95, 1.05), **kw}
    with pytest.raises(ValueError, match=match.replace("(", r"\(")):
        random_members(**args)


def test_edf_is_the_share_at_or_below_each_value():
    table = edf([0.3, 0.1, 0.2, 0.2])
    assert table["value"].tolist() == [0.1, 0.2, 0.3]
    assert table["fraction"].tolist() == [0.25, 0.75, 1.0]
    failed = edf([0.1, float("nan")])  # a failed run counts, above every error
    assert failed["fraction"].tolist() == [0.5]
    with pytest.raises(ValueError, match="empty"):
        edf([])


def test_script_writes_the_edf_and_resumes_without_training(tmp_path, capsys, monkeypatch):
    from experiments import search_edf

    out = tmp_path / "edf"
    assert search_edf.main(["--quick", "--jobs", "1", "--out", str(out)]) == 0
    for name in ("samples.csv", "reference.csv", "edf.csv", "edf.png", "README.md", "runs.csv",
                 "samples.provenance.json", "edf.provenance.json", "README.provenance.json"):
        assert (out / name).is_file(), name
    samples = pd.read_csv(out / "samples.csv")
    assert len(samples) == 3 and samples["val_acc"].between(0, 1).all()
    assert samples["macs"].between(0.95 * BUDGET, 1.05 * BUDGET).all()
    for row in samples.to_dict("records"):  # the recorded params rebuild the trained net
        spec = spec_from_params(json.loads(row["params"]), budget=BUDGET)
        assert search_edf.spec_key(spec) == row["spec_key"]
        assert complexity(spec).macs == row["macs"] and complexity(spec).params == row[
            "param_count"]
    table = pd.read_csv(out / "edf.csv")
    assert table["value"].is_monotonic_increasing and table["fraction"].is_monotonic_increasing
    assert table["fraction"].iloc[-1] == pytest.approx(1.0)
    refs = pd.read_csv(out / "reference.csv")
    assert sorted(refs["family"]) == ["EfficientNet-B0 (width)", "MobileNetV2"]
    # the tiny protocol is not the medium study's: the families come from the script's own runs
    # (recorded relative to the repository; where the test's folder lies decides the prefix)
    assert {Path(s).name for s in refs["source"]} == {"runs.csv"}
    prov = json.loads((out / "samples.provenance.json").read_text())
    assert prov["command"].startswith("python experiments/search_edf.py --quick")
    assert prov["protocol"]["subset"] == 256 and prov["window"] == [0.95, 1.05]
    assert str(tmp_path) not in json.dumps(prov)
    readme = (out / "README.md").read_text()
    assert "one seed" in readme and "not test error" in readme and "3 members" in readme

    # a restart trains nothing; the families come from a runs file whose protocol key matches
    runs = (out / "runs.csv").read_bytes()
    (tmp_path / "medium_runs.csv").write_bytes(runs)
    capsys.readouterr()

    def no_training(*args, **kw):
        raise AssertionError("a resumed run trained again")

    monkeypatch.setattr(search_edf, "train_seeds", no_training)
    assert search_edf.main(["--quick", "--jobs", "1", "--out", str(out),
                            "--medium-runs", str(tmp_path / "medium_runs.csv")]) == 0
    assert "0 member runs trained" in capsys.readouterr().out
    assert (out / "runs.csv").read_bytes() == runs
    assert pd.read_csv(out / "samples.csv").equals(samples)
    assert {Path(s).name for s in pd.read_csv(out / "reference.csv")["source"]} == {
        "medium_runs.csv"}


def test_script_bad_option_is_one_line(tmp_path, capsys):
    from experiments import search_edf

    assert search_edf.main(["--n", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("search_edf.py: error: --n=0") and "\n" not in err


def test_figure_draws_the_edf_and_each_family_with_its_seed_span():
    from scaling.study.edf_figure import figure_edf

    table = edf([0.14, 0.12, 0.2])
    refs = pd.DataFrame({"family": ["A"] * 3 + ["B"] * 2,
                         "val_acc": [0.86, 0.87, 0.88, 0.85, 0.9]})
    ax = figure_edf(table, refs, 3, "0.9M MACs").axes[0]
    step = ax.lines[0]
    assert list(step.get_ydata()) == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert [line.get_xdata()[0] for line in ax.lines[1:]] == pytest.approx([0.13, 0.125])
    assert len(ax.patches) == 2  # the seed spans
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["3 random members (1 seed each)", "A: mean of 3 seeds",
                      "B: mean of 2 seeds"]
    assert "0.9M MACs" in ax.get_title()
