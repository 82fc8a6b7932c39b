"""Issue 29's multi-fidelity search: trials train by the study's protocol with evaluation points
inside the run, successive halving over them with the protocol as the top rung, and a window
that holds what the study's fitter accepts."""

import json

import optuna
import pandas as pd
import pytest

from scaling.ir import NetworkSpec
from scaling.search import cli
from scaling.search import evaluators as ev
from scaling.search.enqueue import family_root, fit_family, space_params
from scaling.search.members import same_spec, spec_from_params
from scaling.search.objectives import WINDOW, macs_status
from scaling.search.study import SearchConfig, make_pruner


@pytest.mark.parametrize("pruner,factor,epochs,evals,reports,low", [
    ("sha", 3, 2, 4.5, 9, 1),  # the study's protocol: rungs at 1/9, 1/3 and all of the run
    ("sha", 3, 3, 3.0, 9, 1),
    ("hyperband", 2, 1, 4.0, 4, 1),
    ("sha", 3, 20, 1.0, 20, 2),  # enough epochs already: one point an epoch
    ("median", 3, 2, 1.0, 2, 1),
    ("none", 3, 2, 1.0, 2, 1),
])
def test_auto_evaluation_points_give_three_rungs(pruner, factor, epochs, evals, reports, low):
    cfg = SearchConfig(pruner=pruner, prune_factor=factor, epochs=epochs).validate()
    assert cfg.evals_per_epoch == evals and cfg.reports == reports
    assert cfg.min_resource == low
    made = make_pruner(cfg)
    if pruner == "sha":
        assert made._min_resource == low and made._reduction_factor == factor
    if pruner == "hyperband":
        assert made._max_resource == reports


def test_median_warmup_is_a_fraction_of_the_run():
    cfg = SearchConfig(pruner="median", epochs=2, evals_per_epoch=5, prune_warmup=0.5).validate()
    assert cfg.reports == 10 and cfg.prune_warmup_steps == 5


@pytest.mark.parametrize("budget", [900_000, 1_070_000])
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_the_default_window_holds_what_the_fitters_accept(budget, name):
    """The study fits a family to its MAC point within 5%; the default window holds that band,
    and an enqueued family, fitted and written as the space's parameters, lands inside it."""
    from scaling.compound.match import fit_width

    lo, hi = WINDOW
    assert lo * budget <= 0.95 * budget and 1.05 * budget <= hi * budget
    study_fit = fit_width(family_root(name, 28, 1, 10), budget, tol=0.05, diffuse=True)
    assert macs_status("window", study_fit.macs, budget, WINDOW)[0] is None
    cfg = SearchConfig(budget=budget, objective="window").validate()
    fit = fit_family(name, cfg, 1, 10)
    params = space_params(fit.spec, cfg, 1, 10)
    assert params is not None  # the space expresses it
    rebuilt = spec_from_params(params, ev.window_space(cfg.space, cfg), budget=budget)
    from scaling.cost import complexity

    assert same_spec(rebuilt, fit.spec)
    assert macs_status("window", complexity(rebuilt).macs, budget, cfg.window)[0] is None


#: a small space (two stages), so that 12 real trials take seconds
SMALL_SPACE = """
name: small
fit_budget: true
budget_fraction: {low: 0.5, high: 1.0, step: 0.05}
stem: {width: 16, kernel: 3}
net: {activation: [relu, silu], se: 0, head: none, dropout: 0.0}
defaults: {block: [mbconv, ds], kernel: [3, 5], expansion: [2, 4], repeats: [1, 2]}
stages:
  - {width: 16}
  - {width: [24, 32]}
"""


@pytest.mark.data
@pytest.mark.slow
def test_successive_halving_over_evaluation_points_on_a_real_tiny_search(tmp_path, capsys):
    """12 trials of real training, 9 steps each, successive halving by 3 over the default
    evaluation points (one a step here): most trials stop after 1 or 3 steps, at least one
    trains the whole protocol (the train_samples of a full run), and every trained trial's
    recorded parameters rebuild the spec it trained."""
    from scaling.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", val_size=64, subset=16)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    (tmp_path / "small.yaml").write_text(SMALL_SPACE)
    argv = ["--space", str(tmp_path / "small.yaml"), "--budget", "400k", "--objective", "window",
            "--trials", "12", "--subset", "144", "--val-size", "64", "--epochs", "1",
            "--batch-size", "16", "--lr", "0.2", "--pruner", "sha", "--device", "cpu",
            "--proxies", "none", "--reevaluate", "0", "--threads", "1", "--out", str(tmp_path),
            "--study", "f", "--quiet", "--json"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/f.db")
    study = optuna.load_study(study_name="f", storage=storage)
    stored = storage.get_study_system_attrs(storage.get_study_id_from_name("f"))
    cfg = SearchConfig.from_dict(stored["scaling:config"])
    assert cfg.evals_per_epoch == 9 and cfg.reports == 9 and cfg.min_resource == 1
    full = 144 // 16 * 16  # a full run's training images
    rows = pd.read_csv(tmp_path / "f.trials.csv")
    trained = rows[rows.status.isin(["ok", "pruned"])]
    assert len(trained) == 12
    complete = trained[trained.status == "ok"]
    assert len(complete) >= 1 and (complete.train_samples == full).all()
    # validated at the rungs only (points 1, 3 and 9 of 9): the points between decide nothing
    assert (complete.reports == 3).all() and (complete.rung == 3).all()
    pruned = trained[trained.status == "pruned"]
    assert len(pruned) > len(trained) / 2
    assert set(pruned.reports) <= {1, 2} and set(pruned.rung) <= {1, 2}
    assert set(pruned.train_samples) <= {full // 9, full // 3}
    space = ev.window_space(cfg.space, cfg)
    for t in study.trials:
        if t.user_attrs.get("status") in ("ok", "pruned"):
            trained_spec = NetworkSpec.from_dict(json.loads(t.user_attrs["spec"]))
            assert same_spec(spec_from_params(t.params, space, budget=cfg.budget), trained_spec)
