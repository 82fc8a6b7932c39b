"""The analyses of issue 16's study: the growth yardstick on protocol runs
(``experiments/protocol_length.py``), on k-seed draws of them (``experiments/seed_draws.py``), in
the study's report, and model-by-model comparison of two studies (``experiments/compare_runs.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments import compare_runs, protocol_length, seed_draws  # noqa: E402
from scaling.study import plan as study_plan  # noqa: E402
from scaling.study import protocol as common  # noqa: E402


def test_protocol_length_summary_measures_the_gap_in_seed_std():
    table = pd.DataFrame({"family": ["F"] * 4, "epochs": [2.0] * 4, "ratio": [1, 1, 8, 8],
                          "test_acc": [0.80, 0.82, 0.90, 0.91]})
    (rec,), text = protocol_length.summarise(table)
    assert rec["gap"] == pytest.approx(0.095)
    assert rec["gap_in_std"] == pytest.approx(0.095 / pd.Series([0.80, 0.82]).std())
    assert "+9.50" in text
    with pytest.raises(ValueError, match="family='Nope'"):
        protocol_length.end_points({"models": []}, "Nope")


def test_seed_draws_resample_every_k_seed_pair_and_agree_with_the_study_at_all_seeds():
    import math

    runs = pd.Series([0.861, 0.866, 0.858, 0.870, 0.864])
    table = pd.DataFrame({
        "family": ["F"] * 10 + ["G"] * 10, "epochs": [2.0] * 20, "seed": list(range(5)) * 4,
        "ratio": ([1] * 5 + [8] * 5) * 2,
        "test_acc": [*runs, *(runs + 0.2), *runs, *runs.iloc[::-1]]})
    f, g = seed_draws.summarise(table, k=3)
    assert f["draws"] == g["draws"] == math.comb(5, 3) ** 2
    assert f["pass_share"] == 1.0  # 20 points above, every 3 seeds within 1.2 points
    assert g["pass_share"] == 0.0  # the same five runs at both points
    (study,) = [r for r in protocol_length.summarise(table[table.family == "F"])[0]]
    assert f["ratio_all_seeds"] == pytest.approx(study["gap_in_std"])
    assert seed_draws.draws(runs, runs + 0.2, 5)[0] == pytest.approx(study["gap_in_std"])
    with pytest.raises(ValueError, match="k=6"):
        seed_draws.subset_stats(runs, 6)


def _runs(points: dict[str, list[tuple[float, list[float]]]]) -> pd.DataFrame:
    return pd.DataFrame([{"family": f, "method": "width", "ratio": m, "target_macs": m * 1e6,
                          "macs": m * 1e6, "params": 1e5, "mac_error": 0.0, "mac_tol": 0.05,
                          "seed": i, "spec_key": f"{f}{m}",
                          "test_acc": acc, "val_acc": acc}
                         for f, rows in points.items() for m, accs in rows
                         for i, acc in enumerate(accs)])


def test_growth_is_the_slope_on_log2_macs_tested_one_sided_with_holm():
    """A family gaining a point per doubling grows; one whose points scatter around a flat line
    does not, though its largest point is above its smallest; Holm doubles the smaller p."""
    from scaling.study import report as study_report
    from scaling.study import stats

    runs = _runs({"A": [(1, [0.850, 0.853, 0.856]), (2, [0.860, 0.863, 0.866]),
                        (4, [0.870, 0.873, 0.876]), (8, [0.880, 0.883, 0.886])],
                  "B": [(1, [0.860, 0.866, 0.861]), (2, [0.875, 0.858, 0.870]),
                        (4, [0.855, 0.861, 0.872]), (8, [0.870, 0.871, 0.866])]})
    pooled = study_report.noise(runs)
    assert pooled.df == 16 and pooled.cells == 8
    fits = study_report.growth_fits(runs, pooled)
    assert fits["A"].estimate == pytest.approx(0.01) and fits["A"].df == 16
    fam = study_report.stats(runs, ["family", "method", "ratio"])
    lines, holds = study_report.growth_findings(fam, (1.0, 1.2, 1.2), fits)
    assert holds == 1
    a, b = lines[2:]
    holm_a = stats.holm([fits["A"].p_greater, fits["B"].p_greater])[0]
    assert a.startswith("| A | width | 1.00-8.00M | +1.00 [") and a.endswith("| yes |"), a
    assert f"| {holm_a:.2g} |" in a and b.endswith("| no |"), b


def test_one_seed_shows_no_plus_minus_and_epochs_are_counted_in_words():
    from scaling.cli import count_of
    from scaling.study import report as study_report

    runs = _runs({"A": [(1, [0.5]), (2, [0.6])]})
    fam = study_report.stats(runs, ["family", "method", "ratio"])
    assert study_report.noise(runs) is None
    fits = study_report.growth_fits(runs, None)
    lines, holds = study_report.growth_findings(fam, (1.0, 1.2, 1.2), fits)
    assert holds == 0 and "+-" not in "".join(lines) and "no estimate" in lines[2]
    many = fam.assign(n=3, test_std=0.01)
    assert study_report.mean_std(many.iloc[0]) == "50.00 +- 1.00"
    assert [count_of(n, "epoch") for n in (1, 2, 0.5)] == ["1 epoch", "2 epochs", "0.5 epochs"]


def test_grid_is_deduplicated_by_realised_spec_and_one_seed_cannot_tell_the_winner():
    from scaling.study import report as study_report
    from scaling.study.stats import Pooled

    grid = pd.DataFrame([
        {"alpha": a, "beta": b, "gamma": g, "w": 1.0, "resolution": 28, "mac_ratio": 2.0,
         "refit": True, "val_acc": v, "spec_key": k, "seed": 0}
        for a, b, g, v, k in [(1, 1.4, 1, 0.872, "x"), (1.4, 1.2, 1, 0.869, "y"),
                              (2, 1, 1, 0.869, "y"), (1, 1, 1.4, 0.850, "z")]])
    table = study_report.grid_table(grid)
    assert len(table) == 2 + 3 and "| (1.4, 1.2, 1) = (2, 1, 1) |" in table[3]
    noise = Pooled(var=0.005 ** 2, df=62, cells=31)
    said = study_report.grid_verdict(grid, noise)
    assert said.startswith("4 candidates, 3 distinct realised models") and "0.30 points" in said
    assert "cannot tell" in said
    assert "is told from" in study_report.grid_verdict(grid.assign(
        val_acc=[0.90, 0.85, 0.85, 0.84]), noise)
    assert "cannot tell" in study_report.grid_verdict(grid, None)


def test_protocol_length_single_takes_the_base_and_the_methods_largest_point():
    def m(experiment, method, ratio):
        return {"experiment": experiment, "family": "F", "method": method, "ratio": ratio}

    plan = {"models": [m("family", "width", 1.0), m("family", "width", 8.0),
                       m("single", "base", 1.0), m("single", "depth", 2.0),
                       m("single", "depth", 4.0), m("single", "width", 8.0)]}
    assert protocol_length.end_points(plan, "F") == [plan["models"][0], plan["models"][1]]
    assert protocol_length.end_points(plan, "F", "depth") == [plan["models"][2],
                                                              plan["models"][4]]
    with pytest.raises(ValueError, match=r"'single' experiment \(resolution\)"):
        protocol_length.end_points({"models": plan["models"][:3]}, "F", "resolution")


def test_protocol_length_trains_a_point_two_families_share_once(tmp_path, monkeypatch):
    """EfficientNet-B0 by the rule and by width start from the same 0.9M net: one run per seed,
    a row for each family, labelled with that family."""
    trained: list[tuple[str, int]] = []

    def fake(models, proto, device, threads, jobs):
        out = []
        for m in models:
            for seed in proto.seeds:
                trained.append((m["spec"].name, seed))
                out.append({**{k: v for k, v in m.items() if k != "spec"}, "seed": seed,
                            "test_acc": m["ratio"] / 10 + seed / 100, "status": "ok"})
        return out

    monkeypatch.setattr(common, "run_models", fake)
    a, b, c = (study_plan.root_spec(f).replace(name=n) for f, n in
               (("MobileNetV2", "base"), ("ResNet-18", "rule x8"), ("ShuffleNetV2", "width x8")))
    plan = {"models": [{"experiment": "family", "family": f, "method": "m", "ratio": r,
                        "macs": 1, "spec": spec.to_dict()}
                       for f, r, spec in (("R", 1.0, a), ("R", 8.0, b), ("W", 1.0, a),
                                          ("W", 8.0, c))]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert protocol_length.main(["--plan", str(tmp_path / "plan.json"), "--families", "R", "W",
                                 "--epochs", "1", "--seeds", "0", "1", "--out",
                                 str(tmp_path), "--no-zero-init-last"]) == 0
    assert sorted(trained) == sorted((n, s) for n in ("base", "rule x8", "width x8")
                                     for s in (0, 1))
    rows = pd.read_csv(tmp_path / "medium.csv")
    assert sorted(zip(rows.family, rows.ratio)) == sorted([("R", 1.0), ("R", 8.0), ("W", 1.0),
                                                          ("W", 8.0)] * 2)
    assert set(rows.zero_init_last) == {False}  # turned off; the medium preset has it on
    md = (tmp_path / "medium.md").read_text()
    assert "gap / seed std  > 3" in md and md.count(" yes") == 2  # both families pass


def test_compare_runs_matches_specs_and_measures_the_change_in_se():
    def runs(key, accs):
        return pd.DataFrame({"spec_key": [k for k, _, a in accs for _ in a],
                             "model": [m for _, m, a in accs for _ in a],
                             "test_acc": [x for _, _, a in accs for x in a],
                             "status": "ok", "protocol": key})

    before = runs("p0", [("s1", "A", [0.80, 0.82]), ("s2", "B", [0.70, 0.70]),
                         ("s3", "gone", [0.5, 0.5])])
    after = runs("p1", [("s1", "A", [0.90, 0.92]), ("s2", "B", [0.70, 0.70])])
    a, b = compare_runs.compare(before, after)
    assert (a["model"], b["model"]) == ("A", "B")
    assert a["diff"] == pytest.approx(0.10)
    assert a["se"] == pytest.approx((2 * pd.Series([0.80, 0.82]).var() / 2) ** 0.5)
    assert b["diff"] == 0 and b["diff_in_se"] is None
    with pytest.raises(ValueError, match="protocols"):
        compare_runs.compare(pd.concat([before, after]), after)
    with pytest.raises(ValueError, match="nothing to compare"):
        compare_runs.compare(before[before.model == "gone"], after)


def test_compare_runs_matches_by_name_and_macs_where_a_table_has_no_spec_hash(tmp_path):
    """protocol_length's CSVs carry no spec hash: one name at two MAC points is two models, and
    several files of one side are pooled."""
    def rows(macs, accs, key="p0"):
        return pd.DataFrame({"model": "net", "macs": macs, "test_acc": accs, "status": "ok",
                             "protocol": key})

    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    rows(100, [0.80, 0.82]).to_csv(first, index=False)
    rows(800, [0.85, 0.87]).to_csv(second, index=False)
    before = compare_runs.read_all([str(first), str(second)])
    after = rows([100, 100, 800, 800], [0.81, 0.83, 0.90, 0.92], key="p1")
    after["spec_key"] = "k"  # one side with the hash is not enough to match by it
    assert compare_runs.match_columns(before, after) == ["model", "macs"]
    small, large = compare_runs.compare(before, after)
    assert small["diff"] == pytest.approx(0.01) and large["diff"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="is not a file"):
        compare_runs.read_all([str(first), str(tmp_path / "missing.csv")])
