"""Analysis functions on small synthetic tables: Pareto fronts, correlations, figures."""

import struct

import numpy as np
import pandas as pd
import pytest

from scaling.study import analysis


def _runs() -> pd.DataFrame:
    rows = []
    for family, offset in (("a", 0.0), ("b", 0.02), ("c", -0.05)):
        for macs in (1e6, 3e6, 9e6):
            for seed in range(3):
                acc = 0.8 + offset + 0.02 * np.log10(macs / 1e6) + 0.001 * seed
                rows.append({"family": family, "model": f"{family}{int(macs)}", "macs": macs,
                             "seed": seed, "test_acc": acc, "params": macs / 10})
    return pd.DataFrame(rows)


def test_pareto_front_drops_dominated_points():
    df = pd.DataFrame({"macs": [1, 2, 3, 4, 5, 2], "test_acc": [0.5, 0.7, 0.6, 0.8, 0.8, 0.4]})
    front = analysis.pareto_front(df)
    # (3, 0.6) is beaten by the cheaper (2, 0.7); (5, 0.8) ties (4, 0.8) at higher cost;
    # (2, 0.4) is beaten by (2, 0.7) at equal cost.
    assert list(zip(front["macs"], front["test_acc"])) == [(1, 0.5), (2, 0.7), (4, 0.8)]


def test_pareto_front_names_missing_column():
    with pytest.raises(ValueError, match="flops"):
        analysis.pareto_front(pd.DataFrame({"macs": [1], "test_acc": [1]}), cost="flops")


def test_summarize_runs_means_and_stds_over_seeds():
    summary = analysis.summarize_runs(_runs())
    row = summary[(summary.family == "b") & (summary.macs == 1e6)].iloc[0]
    assert row.n_seeds == 3
    assert row.acc_mean == pytest.approx(0.821)
    assert row.acc_std == pytest.approx(np.std([0.82, 0.821, 0.822], ddof=1))


def test_rank_correlations_known_values():
    df = pd.DataFrame({"p": [1, 2, 3, 4, 5], "q": [5, 4, 3, 2, 1], "acc": [2, 1, 4, 3, 5]})
    corr = analysis.rank_correlations(df, ["p", "q"], "acc").set_index("proxy")
    # One discordant pair in ten for p (a swap of neighbours at both ends): tau = (8-2)/10.
    assert corr.loc["p", "kendall"] == pytest.approx(0.6)
    assert corr.loc["p", "spearman"] == pytest.approx(0.8)
    assert corr.loc["q", "spearman"] == pytest.approx(-0.8)


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100


def test_figures_are_valid_pngs(tmp_path):
    runs = _runs()
    _assert_png(analysis.plot_accuracy_vs_macs(runs, tmp_path / "acc.png"))
    scaled = runs.assign(phi=runs.macs.map({1e6: 0, 3e6: 1, 9e6: 2}), rule=runs.family)
    _assert_png(analysis.plot_scaling_curves(scaled, tmp_path / "curves.png"))
    trials = pd.DataFrame({"number": range(6), "state": ["COMPLETE"] * 5 + ["PRUNED"],
                           "value": [0.1, 0.3, 0.2, 0.5, 0.4, np.nan],
                           "user_attrs_val_acc": [0.1, 0.3, 0.2, 0.5, 0.4, np.nan],
                           "user_attrs_proxy_synflow": [1, 3, 2, 6, 4, np.nan]})
    _assert_png(analysis.plot_search_progress(trials, tmp_path / "progress.png"))
    _assert_png(analysis.plot_proxy_vs_accuracy(trials, "user_attrs_proxy_synflow",
                                                "user_attrs_val_acc", tmp_path / "proxy.png"))


def test_cli_draws_figures_from_a_results_folder(tmp_path):
    (tmp_path / "res").mkdir()
    _runs().to_csv(tmp_path / "res" / "compare_families.csv", index=False)
    out = tmp_path / "fig"
    assert analysis.main([str(tmp_path / "res"), "--out", str(out)]) == 0
    _assert_png(out / "compare_families_acc_vs_macs.png")
    assert analysis.main([str(tmp_path / "missing"), "--out", str(out)]) == 2
