"""Issue 29's search method: the window objective, enqueued zoo families, successive halving
with the protocol as the top rung, and the re-evaluation of the best trials with more seeds."""

import json

import optuna
import pandas as pd
import pytest
from search_fakes import fake_train as _fake_train
from search_fakes import trial_number as _number

from scaling.ir import NetworkSpec
from scaling.search import cli
from scaling.search import evaluators as ev
from scaling.search.enqueue import fit_family, space_params
from scaling.search.members import same_spec
from scaling.search.objectives import macs_status
from scaling.search.study import SearchConfig, make_pruner

ZC = ["--evaluator", "zero-cost", "--proxies", "params", "--rank-proxy", "params",
      "--threads", "1", "--quiet"]


@pytest.mark.parametrize("objective,macs,status", [
    ("window", 850_000, "below_window"), ("window", 900_000, None), ("window", 950_000, None),
    ("window", 1_000_000, None), ("window", 1_000_001, "over_budget"),
    ("reward", 10, None), ("reward", 1_000_001, "over_budget"), ("pareto", 1_000_000, None),
])
def test_macs_status_is_the_hard_window(objective, macs, status):
    got, constraint = macs_status(objective, macs, 1_000_000, (0.9, 1.0))
    assert got == status
    assert (constraint > 0) == (status is not None)  # the sampler's constraint agrees


@pytest.mark.parametrize("argv,match", [
    (["--window", "1.0,0.9"], "window=1,0.9"),
    (["--window", "0,1"], "0 < LO < HI <= 2"),
    (["--window", "0.9,2.5"], "window=0.9,2.5"),
    (["--evals-per-epoch", "0.5"], "evals_per_epoch=0.5"),
    (["--evals-per-epoch", "many"], "evals_per_epoch='many'"),
    (["--window", "a,b"], "window="),
    (["--window", "0.9"], "window='0.9'"),
    (["--enqueue", "mobilenet_v9"], "enqueue='mobilenet_v9'"),
    (["--enqueue", "mobilenet_v2,mobilenet_v2"], "repeated"),
    (["--reevaluate", "-1"], "--reevaluate=-1"),
    (["--reevaluate-seeds", "0"], "--reevaluate-seeds=0"),
    (["--prune-factor", "1"], "--prune-factor=1"),
    (["--pruner", "asha"], "pruner='asha'"),
])
def test_bad_input_one_line_exit_2(capsys, tmp_path, argv, match):
    assert cli.main([*ZC, *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m scaling.search: error:")
    assert match in err
    assert not list(tmp_path.iterdir())  # nothing written


def test_window_search_enqueues_the_families_first_and_trains_only_the_window(capsys, tmp_path):
    argv = [*ZC, "--budget", "900k", "--objective", "window", "--enqueue",
            "mobilenet_v2,efficientnet_b0", "--trials", "4", "--out", str(tmp_path),
            "--study", "w", "--json"]
    assert cli.main(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["objective"] == "window" and rep["reevaluation"] is None  # zero-cost: skipped
    study = optuna.load_study(study_name="w", storage=f"sqlite:///{tmp_path}/w.db")
    assert study.metric_names == ["params"]  # the window's value is the score itself
    trials = study.get_trials()
    assert [t.user_attrs.get("enqueued") for t in trials[:2]] == ["mobilenet_v2",
                                                                 "efficientnet_b0"]
    cfg = SearchConfig(budget=900_000, objective="window").validate()
    for t in trials[:2]:  # the space expresses them: ordinary trials, their parameters
        fit = fit_family(t.user_attrs["enqueued"], cfg, 1, 10)
        assert t.params and "fixed_spec" not in t.user_attrs
        assert same_spec(NetworkSpec.from_dict(json.loads(t.user_attrs["spec"])), fit.spec)
        assert 855_000 <= t.user_attrs["macs"] <= 945_000 and t.user_attrs["status"] == "ok"
    for t in trials:
        inside = 855_000 <= t.user_attrs["macs"] <= 945_000
        assert t.user_attrs["status"] == ("ok" if inside else
                                          "below_window" if t.user_attrs["macs"] < 855_000
                                          else "over_budget")
        assert t.value == (t.user_attrs["score"] if inside else 0.0)
    fractions = [t.params["budget_fraction"] for t in trials if "budget_fraction" in t.params]
    assert all(f >= 0.95 for f in fractions)  # the space's fraction clipped to the window
    assert cli.main([*argv, "--resume", "--trials", "5"]) == 0  # no second enqueue
    study = optuna.load_study(study_name="w", storage=f"sqlite:///{tmp_path}/w.db")
    assert sum(bool(t.user_attrs.get("enqueued")) for t in study.trials) == 2
    assert "window (stored [0.95, 1.05], given [0.8, 1.0])" in _resume_refused(
        capsys, [*argv, "--resume", "--window", "0.8,1"])


def test_window_space_clips_the_budget_fraction():
    space = {"fit_budget": True, "budget_fraction": {"low": 0.5, "high": 1.0, "step": 0.05}}
    cfg = SearchConfig(objective="window", window=(0.93, 1.0))
    assert ev.window_space(space, cfg)["budget_fraction"] == {"low": 0.93, "high": 1.0}
    cfg.window = (0.9, 1.0)
    assert ev.window_space(space, cfg)["budget_fraction"] == {"low": 0.9, "high": 1.0,
                                                              "step": 0.05}
    assert ev.window_space(space, SearchConfig(objective="reward")) is space


def _resume_refused(capsys, argv):
    capsys.readouterr()
    assert cli.main(argv) == 2
    return capsys.readouterr().err.strip()


def _sampled_spec_and_params(cfg):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    spec = ev.trial_spec(trial, ev.SearchContext(cfg), cfg.space)
    return spec, dict(trial.params)


def test_space_params_are_used_only_when_they_rebuild_the_spec(monkeypatch):
    from scaling.search import members

    cfg = SearchConfig(budget=3_000_000).validate()
    spec, params = _sampled_spec_and_params(cfg)
    assert space_params(spec, cfg, 1, 10) is not None  # a sampled net: parameters that rebuild it
    monkeypatch.setattr(members, "params_for", lambda s, sp, budget=None: params)
    other = fit_family("mobilenet_v2", cfg, 1, 10).spec
    assert space_params(other, cfg, 1, 10) is None  # these parameters build another net


def test_an_expressible_family_is_enqueued_as_its_parameters(monkeypatch, tmp_path):
    """Where the space expresses the fitted net, the trial is an ordinary sampled one: its
    parameters rebuild the spec that was evaluated, and no fixed spec is stored."""
    from scaling.compound.match import Fit
    from scaling.search import enqueue, members

    cfg = SearchConfig(budget=3_000_000).validate()
    spec, params = _sampled_spec_and_params(cfg)
    monkeypatch.setattr(members, "params_for", lambda s, sp, budget=None: params)
    monkeypatch.setattr(enqueue, "fit_family",
                        lambda *a: Fit(spec, 1.0, 1, 1.0))
    assert cli.main([*ZC, "--budget", "3M", "--enqueue", "mobilenet_v2", "--trials", "1",
                     "--out", str(tmp_path), "--study", "x"]) == 0
    first = optuna.load_study(study_name="x", storage=f"sqlite:///{tmp_path}/x.db").trials[0]
    assert first.user_attrs["enqueued"] == "mobilenet_v2" and "fixed_spec" not in first.user_attrs
    assert first.params == params
    evaluated = json.loads(first.user_attrs["spec"])
    assert {**evaluated, "name": ""} == {**spec.to_dict(), "name": ""}


def test_reevaluation_picks_the_best_mean_of_new_seeds(monkeypatch, capsys, tmp_path):
    """The search's seed favours later trials, the new seeds earlier ones: the winner is the
    earliest of the top K, by its mean over the new seeds only."""
    import scaling.train

    fake = _fake_train(lambda spec, seed: 0.5 + 0.01 * _number(spec) if seed == 0
                       else 0.9 - 0.01 * _number(spec) + 0.001 * seed)
    monkeypatch.setattr(scaling.train, "train", fake)
    monkeypatch.setattr(ev.SearchContext, "data", lambda self: None)
    argv = ["--budget", "3M", "--objective", "window", "--window", "0.5,1", "--trials", "4",
            "--epochs", "1", "--pruner", "none", "--proxies", "none", "--reevaluate", "2",
            "--reevaluate-seeds", "2", "--out", str(tmp_path), "--study", "r", "--threads", "1"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    study = optuna.load_study(study_name="r", storage=f"sqlite:///{tmp_path}/r.db")
    done = sorted((t for t in study.trials if t.user_attrs.get("status") == "ok"),
                  key=lambda t: -t.value)
    top = [t.number for t in done[:2]]
    table = study.user_attrs["reevaluation"]
    assert [r["trial"] for r in table["rows"]] == top and table["seeds"] == [1, 2]
    for row in table["rows"]:
        n = row["trial"]
        assert row["n"] == 2 and row["mean"] == pytest.approx(0.9 - 0.01 * n + 0.0015)
        assert row["std"] == pytest.approx(0.001 / 2 ** 0.5)
        assert row["search_val_acc"] == pytest.approx(0.5 + 0.01 * n)
    assert table["winner"] == min(top) != done[0].number  # not the search's own best
    best = json.loads((tmp_path / "r.best.json").read_text())
    assert len(best) == 1 and best[0]["number"] == min(top)
    assert best[0]["reevaluation"]["mean"] == pytest.approx(0.9 - 0.01 * min(top) + 0.0015)
    section = out.split("re-evaluation (")[1].split("\n\n")[0]
    assert "winner * by mean val_acc" in section and len(section.splitlines()) == 4
    winner_line = [ln for ln in section.splitlines()[2:] if "*" in ln]
    assert len(winner_line) == 1 and winner_line[0].split()[0] == str(min(top))
    trainings = len(fake.calls)
    assert cli.main([*argv, "--resume"]) == 0  # stored: nothing retrained
    assert len(fake.calls) == trainings


def test_reevaluation_off_keeps_the_searchs_best(monkeypatch, tmp_path):
    import scaling.train

    monkeypatch.setattr(scaling.train, "train", _fake_train(lambda spec, seed: 0.7))
    monkeypatch.setattr(ev.SearchContext, "data", lambda self: None)
    cfg = SearchConfig(study="o", budget=3_000_000, trials=2, epochs=1, pruner="none",
                       proxies=(), reevaluate=0, out_dir=str(tmp_path), quiet=True)
    from scaling.search.study import run_search

    info = run_search(cfg)
    assert info.study.user_attrs.get("reevaluation") is None


def test_an_enqueued_fixed_spec_can_win(monkeypatch, tmp_path):
    """A fixed-spec trial is a trial like any other for the pick (best_trial, re-evaluation)."""
    import scaling.train
    from scaling.search import members

    def inexpressible(spec, space, budget=None):
        raise ValueError("the space cannot express it")

    monkeypatch.setattr(members, "params_for", inexpressible)  # so it is a fixed spec

    monkeypatch.setattr(scaling.train, "train", _fake_train(
        lambda spec, seed: 0.95 if "enqueued" in spec.name else 0.6))
    monkeypatch.setattr(ev.SearchContext, "data", lambda self: None)
    argv = ["--budget", "900k", "--objective", "window", "--enqueue", "mobilenet_v2",
            "--trials", "3", "--epochs", "1", "--pruner", "none", "--proxies", "none",
            "--reevaluate", "2", "--reevaluate-seeds", "1", "--out", str(tmp_path),
            "--study", "e", "--threads", "1", "--quiet"]
    assert cli.main(argv) == 0
    best = json.loads((tmp_path / "e.best.json").read_text())
    assert best[0]["enqueued"] == "mobilenet_v2" and best[0]["number"] == 0
    assert best[0]["reevaluation"]["mean"] == 0.95


@pytest.mark.parametrize("pruner,kind", [("sha", optuna.pruners.SuccessiveHalvingPruner),
                                         ("hyperband", optuna.pruners.HyperbandPruner)])
def test_successive_halving_records_the_rung_each_trial_reached(monkeypatch, tmp_path, pruner,
                                                                kind):
    import scaling.train

    monkeypatch.setattr(scaling.train, "train",
                        _fake_train(lambda spec, seed: 0.3 + 0.05 * (_number(spec) % 5)))
    monkeypatch.setattr(ev.SearchContext, "data", lambda self: None)
    cfg = SearchConfig(study="p", budget=3_000_000, trials=6, epochs=4, pruner=pruner,
                       prune_factor=2, prune_warmup=0.25, proxies=(), reevaluate=0,
                       objective="window", window=(0.5, 1.0), out_dir=str(tmp_path),
                       quiet=True).validate()
    assert isinstance(make_pruner(cfg), kind)
    from scaling.search.report import write_outputs
    from scaling.search.study import run_search

    study = run_search(cfg).study
    rows = pd.read_csv(write_outputs(study, str(tmp_path))["trials_csv"])
    trained = rows[rows.status.isin(["ok", "pruned"])]
    assert (trained.epochs_trained[trained.status == "ok"] == 4).all()  # the top rung
    pruned = trained.epochs_trained[trained.status == "pruned"]
    assert len(pruned) and (pruned < 4).all()  # a cheap look only
    assert "rung" in rows and rows.rung.max() >= 1  # a trial passed the lowest rung


@pytest.mark.data
def test_a_real_tiny_window_search_with_everything(tmp_path, capsys):
    """Fashion-MNIST, 64 training images: an enqueued MobileNetV2, successive halving, and a
    re-evaluation of the best two trials with one new seed, through the CLI."""
    from scaling.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", val_size=100, subset=10)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    assert cli.main(["--budget", "900k", "--objective", "window", "--enqueue", "mobilenet_v2",
                     "--trials", "2", "--subset", "64", "--val-size", "64", "--epochs", "2",
                     "--batch-size", "32", "--pruner", "sha", "--prune-warmup", "0.5",
                     "--device", "cpu", "--proxies", "none", "--reevaluate", "2",
                     "--reevaluate-seeds", "1", "--out", str(tmp_path), "--study", "t",
                     "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "(#0, enqueued mobilenet_v2)" in out and "re-evaluation (" in out
    best = json.loads((tmp_path / "t.best.json").read_text())
    assert best[0]["reevaluation"]["n"] == 1 and 855_000 <= best[0]["macs"] <= 945_000
