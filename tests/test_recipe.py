"""Issue 17: the training recipe in the search space, the pruner's warm-up, the pruning report and
the recipe experiments at their tiny presets."""

import importlib
import json
import math
import sys
from pathlib import Path

import optuna
import pytest

from scaling.search import evaluators as ev
from scaling.search.config import ConfigError, SearchConfig
from scaling.search.space import RECIPE_SPACE, default_space, load_space, sample_recipe, sample_spec
from scaling.search.study import make_pruner, run_search

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _stand_in(ctx, trial, spec, cost):
    return ev.Evaluation(score=0.5 + 1e-9 * cost.macs)


def _recipe_space():
    space = default_space()
    space["recipe"] = RECIPE_SPACE
    return space


def test_recipe_dimensions_are_sampled_within_their_ranges_and_stored():
    space = load_space(_recipe_space())
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        recipe = sample_recipe(trial, space)
        assert trial.user_attrs["recipe"] == recipe
        opt = recipe["optimizer"]
        seen.add(opt)
        for key in ("lr", "weight_decay"):
            rng = RECIPE_SPACE[key][opt]
            assert rng["low"] <= recipe[key] <= rng["high"]
            assert trial.params[f"recipe_{key}_{opt}"] == recipe[key]
        assert recipe["batch_size"] in RECIPE_SPACE["batch_size"]
        assert recipe["label_smoothing"] in RECIPE_SPACE["label_smoothing"]
        assert 0.0 <= recipe["warmup"] <= 0.2
        study.tell(trial, 0.0)
    assert seen == {"sgd", "adamw"}


def test_the_trial_recipe_reaches_train(monkeypatch):
    calls = []

    def fake_train(spec, data, **kw):
        calls.append(kw)
        raise RuntimeError("stop")

    monkeypatch.setattr("scaling.train.train", fake_train)
    cfg = SearchConfig(space=_recipe_space(), proxies=(), batch_size=96, lr=0.07).validate()
    ctx = ev.SearchContext(cfg, data=object())
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(ev.make_objective(ctx), n_trials=4, catch=(RuntimeError,))
    feasible = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert calls and len(calls) == len(feasible)
    for kw, t in zip(calls, feasible):
        for key, value in t.user_attrs["recipe"].items():
            assert kw[key] == value
    # without a recipe the config's fixed recipe is what train() gets
    assert ev.recipe_kwargs(cfg) == {"batch_size": 96, "optimizer": "sgd", "lr": 0.07}
    # another optimizer than the config's, without a sampled lr: its own default lr
    assert ev.recipe_kwargs(cfg, {"optimizer": "adamw"})["lr"] is None


def test_a_space_without_recipe_samples_the_same_params_as_before(monkeypatch):
    monkeypatch.setitem(ev.EVALUATORS, "stand-in", _stand_in)
    cfg = SearchConfig(evaluator="stand-in", proxies=(), budget=3_000_000).validate()
    with_objective = optuna.create_study(direction="maximize",
                                         sampler=optuna.samplers.TPESampler(seed=5))
    with_objective.optimize(ev.make_objective(ev.SearchContext(cfg)), n_trials=12)
    plain = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=5))

    def old(trial):  # what the objective sampled before recipes existed
        sample_spec(trial, cfg.space, 28, 1, 10, budget=cfg.budget)
        return with_objective.trials[trial.number].value

    plain.optimize(old, n_trials=12)
    assert [t.params for t in with_objective.trials] == [t.params for t in plain.trials]
    assert not any("recipe" in t.user_attrs for t in with_objective.trials)


@pytest.mark.parametrize("edit, match", [
    ({"bogus": [1]}, "unknown key"),
    ({"optimizer": ["sgd", "lion"]}, "lion"),
    ({"lr": {"rmsprop": {"low": 0.1, "high": 0.2}}}, "rmsprop"),
    ({"batch_size": {"sgd": [64]}}, "per optimizer"),
    ({"warmup": {"low": 0.1, "high": 1.5}}, "warmup"),
    ({"lr": {"low": 0.3, "high": 0.1}}, "exceeds"),
])
def test_bad_recipes_name_the_key(edit, match):
    space = default_space()
    space["recipe"] = edit
    with pytest.raises(ValueError, match=match):
        load_space(space)


def test_an_old_study_resumes_with_the_current_code(monkeypatch, tmp_path):
    """A fixed-recipe study whose stored config predates the pruner options resumes."""
    from scaling.search.storage import CONFIG_ATTR

    monkeypatch.setitem(ev.EVALUATORS, "stand-in", _stand_in)
    common = {"study": "old", "storage": f"sqlite:///{tmp_path}/old.db", "evaluator": "stand-in",
              "proxies": (), "budget": 3_000_000, "quiet": True, "out_dir": str(tmp_path)}
    study = run_search(SearchConfig(trials=3, **common)).study
    system = study._storage.get_study_system_attrs(study._study_id)
    stored = {k: v for k, v in system[CONFIG_ATTR].items() if not k.startswith("prune_")}
    study._storage.set_study_system_attr(study._study_id, CONFIG_ATTR, stored)
    resumed = run_search(SearchConfig(trials=6, resume=True, **common)).study
    done = [t for t in resumed.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6
    assert not any(k.startswith("recipe_") for t in done for k in t.params)
    with pytest.raises(ConfigError):  # the recipe changes what the study searches
        run_search(SearchConfig(trials=7, resume=True, space=_recipe_space(), **common))


@pytest.mark.parametrize("epochs, warmup, steps", [(4, 0.5, 2), (3, 0.5, 2), (10, 0.0, 1),
                                                   (2, 1.0, 2)])
def test_pruner_warmup_is_respected(epochs, warmup, steps):
    cfg = SearchConfig(epochs=epochs, prune_warmup=warmup, prune_startup=1).validate()
    assert cfg.prune_warmup_steps == steps
    study = optuna.create_study(direction="maximize", pruner=make_pruner(cfg))
    good = study.ask()
    for step in range(1, epochs + 1):
        good.report(0.9, step)
    study.tell(good, 0.9)
    slow = study.ask()
    for step in range(1, epochs + 1):
        slow.report(0.1, step)
        assert slow.should_prune() == (step >= steps)
    hb = SearchConfig(epochs=epochs, prune_warmup=warmup, pruner="hyperband").validate()
    hyperband = make_pruner(hb)  # over evaluation points: 9 or more looks, the lowest rung 1/9
    assert hyperband._max_resource == hb.reports == max(9, math.ceil(epochs))
    assert hyperband._min_resource == hb.min_resource == round(hb.reports / 9)


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "half"])
def test_bad_prune_warmup_is_refused(bad):
    with pytest.raises(ConfigError, match="prune_warmup"):
        SearchConfig(prune_warmup=bad).validate()


@pytest.fixture
def fake_fashion(tmp_path, monkeypatch):
    from idx_files import make_idx_dir

    root = make_idx_dir(tmp_path / "fm", n_train=600, n_test=100)
    monkeypatch.setenv("SCALING_DATA", str(root))
    return root


def test_pruning_report_reruns_pruned_trials(fake_fashion, tmp_path):
    """A pruned copy of a completed trial, rerun to the end, reproduces its accuracy."""
    report = importlib.import_module("experiments.pruning_report")
    cfg = SearchConfig(study="tiny", storage=f"sqlite:///{tmp_path}/tiny.db", budget=4_000_000,
                       trials=3, epochs=1, subset=128, val_size=64, batch_size=32, proxies=(),
                       threads=1, device="cpu", quiet=True, out_dir=str(tmp_path))
    study = run_search(cfg).study
    first = next(t for t in study.trials if t.user_attrs.get("val_acc") is not None)
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.1},
        user_attrs={"spec": first.user_attrs["spec"], "val_history": [0.1]}))
    rc = report.main(["--study", "tiny", "--storage", cfg.storage, "--sample", "3",
                      "--out", str(tmp_path / "out")])
    assert rc == 0
    rep = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert (rep["pruned"], rep["sampled"], rep["rerun"]) == (1, 1, 1)
    assert rep["reruns"][0]["final_val_acc"] == pytest.approx(first.user_attrs["val_acc"])
    assert rep["would_have_won"] == 0 and rep["best_val_acc"] >= first.user_attrs["val_acc"]
    assert (tmp_path / "out" / "tiny.md").is_file()
    assert (tmp_path / "out" / "tiny.provenance.json").is_file()


def test_recipe_sweep_tiny(fake_fashion, tmp_path):
    import pandas as pd

    sweep = importlib.import_module("experiments.recipe_sweep")
    assert sweep.main(["--tiny", "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "tiny.csv")
    assert len(rows) == 2 and set(rows.recipe) == {"sgd-0.05", "adamw-3e-3"}
    assert rows.val_acc.between(0, 1).all()
    assert "adamw-3e-3" in (tmp_path / "tiny.md").read_text()


@pytest.mark.slow
def test_recipe_vs_fixed_tiny(fake_fashion, tmp_path):
    import pandas as pd

    rvf = importlib.import_module("experiments.recipe_vs_fixed")
    assert rvf.main(["--tiny", "--jobs", "1", "--out", str(tmp_path)]) == 0
    rows = pd.read_csv(tmp_path / "tiny.csv")
    assert sorted(rows.arm) == ["fixed", "recipe"]
    assert rows.test_acc.between(0, 1).all() and (rows.complete >= 1).all()
    recipe = json.loads(rows.set_index("arm").recipe["recipe"])
    assert set(recipe) == set(RECIPE_SPACE)
    assert "recipe - fixed" in (tmp_path / "tiny.md").read_text()
    # more seeds run apart are summarised together; the same seed twice is refused
    assert rvf.main(["--tiny", "--jobs", "1", "--seeds", "1", "--name", "s1",
                     "--out", str(tmp_path)]) == 0
    assert rvf.main(["--combine", "tiny", "s1", "--name", "both", "--out", str(tmp_path)]) == 0
    both = pd.read_csv(tmp_path / "both.csv")
    assert len(both) == 4 and sorted(both.seed.unique()) == [0, 1]
    summary = json.loads((tmp_path / "both.provenance.json").read_text())
    assert summary["combined"] == ["tiny.csv", "s1.csv"] and summary["summary"][0]["seeds"] == 2
    with pytest.raises(SystemExit, match="share"):
        rvf.main(["--combine", "tiny", "both", "--name", "x", "--out", str(tmp_path)])


def test_print_space_shows_the_recipe_entry_commented():
    import subprocess

    import yaml

    out = subprocess.run([sys.executable, "-m", "scaling.search", "--print-space"], check=True,
                         capture_output=True, text=True).stdout
    assert yaml.safe_load(out) == default_space()  # the recipe entry is a comment
    lines = out.splitlines()
    head = lines.index("# recipe:")  # the commented-out entry runs to the end
    uncommented = "\n".join(lines[:head] + [line[2:] for line in lines[head:]])
    assert load_space(yaml.safe_load(uncommented))["recipe"] == RECIPE_SPACE


def test_the_study_trains_its_baseline_with_the_searched_recipe(tmp_path):
    """scaling/study/protocol.py: a baseline file's ``recipe`` trains the study; older files (no
    recipe) keep the protocol's fixed recipe and its key."""
    import argparse

    from scaling.study.protocol import PRESETS, add_protocol_args, load_recipe, protocol_from_args

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"spec": {}}))
    new.write_text(json.dumps({"spec": {}, "recipe": {"optimizer": "adamw", "lr": 0.003,
                                                      "batch_size": 32}}))
    assert load_recipe(str(old)) == {}
    p = argparse.ArgumentParser()
    add_protocol_args(p)
    p.add_argument("--baseline")
    _, proto = protocol_from_args(p.parse_args(["--quick", "--baseline", str(old)]))
    assert proto == PRESETS["quick"] and proto.key() == PRESETS["quick"].key()
    _, proto = protocol_from_args(p.parse_args(["--quick", "--baseline", str(new)]))
    kw = proto.train_kwargs()
    assert (kw["optimizer"], kw["lr"], kw["batch_size"]) == ("adamw", 0.003, 32)
    assert proto.key() != PRESETS["quick"].key()
