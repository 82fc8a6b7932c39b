"""Analysis functions on small synthetic tables: Pareto fronts, correlations, figures."""

import json
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
    (tmp_path / "empty").mkdir()  # a folder without result tables is an error, not a success
    assert analysis.main([str(tmp_path / "empty"), "--out", str(out)]) == 2


def _trials() -> pd.DataFrame:
    return pd.DataFrame({
        "number": range(8),
        "state": ["COMPLETE"] * 5 + ["PRUNED", "COMPLETE", "PRUNED"],
        "value": [0.1, 0.3, 0.2, 0.5, 0.4, 0.25, 0.0, 0.15],
        "user_attrs_val_acc": [0.1, 0.3, 0.2, 0.5, 0.4, np.nan, 0.0, np.nan],
        "user_attrs_feasible": [True] * 6 + [False, True],
        "user_attrs_proxy_synflow": [1, 3, 2, 6, 4, 5, 7, 2]})


def _texts(fig) -> str:
    parts = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        if legend is not None:
            parts += [legend.get_title().get_text(), *(t.get_text() for t in legend.get_texts())]
    return "\n".join(parts)


def test_accuracy_vs_macs_figure_says_split_units_protocol_and_error_bars():
    runs = _runs().assign(protocol="abc123")
    fig = analysis.figure_accuracy_vs_macs(runs)
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xscale() == "log"
    assert "MACs, millions" in ax.get_xlabel()
    assert ax.get_ylabel() == "test top-1 accuracy (%)"
    text = _texts(fig)
    assert "protocol abc123" in text and "mean ± std over 3 seeds" in text
    # every family keeps its own marker, and no two families share x positions
    lines = [c.lines[0] for c in ax.containers if c.get_label() in {"a", "b", "c"}]
    assert len({line.get_marker() for line in lines}) == 3
    xs = [tuple(line.get_xdata()) for line in lines]
    assert len(set(xs)) == 3
    val = analysis.figure_accuracy_vs_macs(_runs().drop(columns="test_acc").assign(val_acc=0.5))
    assert val.axes[0].get_ylabel() == "validation top-1 accuracy (%)"


def test_one_seed_draws_no_error_bars_and_says_so():
    import matplotlib.pyplot as plt

    fig = analysis.figure_accuracy_vs_macs(_runs()[lambda d: d.seed == 0])
    ax = fig.axes[0]
    assert "one seed per point: no error bars" in _texts(fig)
    bars = [c for c in ax.containers if c.get_label() in {"a", "b", "c"}]
    assert len(bars) == 3 and not any(c.has_yerr for c in bars)
    assert ax.get_legend().get_title().get_text() == "family"
    plt.close(fig)


def test_scaling_curves_have_integer_phi_ticks_and_labelled_panels():
    runs = _runs()
    scaled = runs.assign(phi=runs.macs.map({1e6: 0, 3e6: 1, 9e6: 2}), rule=runs.family)
    fig = analysis.figure_scaling_curves(scaled, protocol="quick preset")
    assert len(fig.axes) == 3
    for ax in fig.axes:
        assert list(ax.xaxis.get_majorticklocs()) == [0, 1, 2]
        assert ax.get_xlabel() == "compound coefficient φ" and ax.get_ylabel() and ax.get_title()
    assert "millions" in fig.axes[1].get_ylabel() and "millions" in fig.axes[2].get_ylabel()
    assert "test" in fig.axes[0].get_ylabel()
    assert "quick preset" in fig.get_suptitle() and "mean ± std over 3 seeds" in fig.get_suptitle()


def test_search_progress_names_the_objective_and_keeps_pruned_and_infeasible_trials():
    fig = analysis.figure_search_progress(_trials(), objective="reward")
    ax = fig.axes[0]
    assert "MnasNet reward" in ax.get_title() and ax.get_xlabel() == "trial number"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(lbl.startswith("pruned") and lbl.endswith(": 2") for lbl in labels)
    assert any(lbl.startswith("over budget") and lbl.endswith(": 1") for lbl in labels)
    assert any(lbl.startswith("complete") and lbl.endswith(": 5") for lbl in labels)
    # the plotted points cover all 8 trials
    assert sum(len(c.get_offsets()) for c in ax.collections) == 8
    # inferred: value == val_acc on complete trials means the objective is accuracy
    assert "accuracy" in analysis.objective_text(_trials())
    shifted = _trials().assign(value=lambda t: t.value * 0.9, user_attrs_budget=6e6)
    assert "T = 6M MACs" in analysis.objective_text(shifted)


@pytest.mark.parametrize(("n", "warned"), [(5, True), (12, False)])
def test_proxy_figure_names_the_proxy_and_warns_on_small_n(n, warned):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user_attrs_proxy_synflow": rng.normal(size=n),
                       "user_attrs_val_acc": rng.uniform(0.5, 0.9, size=n)})
    fig = analysis.figure_proxy_vs_accuracy(df, "user_attrs_proxy_synflow", "user_attrs_val_acc")
    ax = fig.axes[0]
    assert ax.get_xlabel().startswith("SynFlow") and "user_attrs" not in _texts(fig)
    assert ax.get_ylabel() == "validation top-1 accuracy (%)"
    assert f"n = {n}" in ax.get_title()
    assert ("warning" in ax.get_title()) is warned


def test_describe_run_reads_the_records_beside_a_table(tmp_path):
    csv = tmp_path / "compare.csv"
    csv.write_text("a\n1\n")
    (tmp_path / "compare.provenance.json").write_text(json.dumps({
        "preset": "quick", "protocol": {"key": "k1", "dataset": "fashion-mnist", "subset": 30,
                                        "val_size": 10, "epochs": 2, "optimizer": "sgd",
                                        "lr": 0.1, "resolution": 28}}))
    run = analysis.describe_run(csv)
    assert run["protocol"].startswith("quick preset protocol k1: fashion-mnist 28x28, 30 train")
    assert run["objective"] is None
    assert analysis.describe_run(tmp_path / "missing.csv") == {"protocol": None,
                                                               "objective": None}
