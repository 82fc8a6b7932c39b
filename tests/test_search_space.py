"""Search space as data, the budget constraint, the MnasNet reward and budget parsing."""

import json
import random

import optuna
import pytest
import torch

from scaling.cost import complexity
from scaling.ir import NetworkSpec
from scaling.search import evaluators as ev
from scaling.search.objectives import OBJECTIVES, get_objective, mnas_reward, parse_budget
from scaling.search.space import (
    auto_pattern,
    default_space,
    load_space,
    parse_pattern,
    sample_spec,
    validate_space,
)
from scaling.search.study import SearchConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _traced_macs(model, shape):
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(1, *shape))
    return counter.get_total_flops() // 2


def test_100_trials_respect_the_budget_and_rebuild(monkeypatch):
    """Over 100 trials of the real objective: every evaluated spec is within budget, no
    over-budget spec reaches the evaluator, and every stored spec has the recorded MACs."""
    budget = 1_000_000  # tight: the floor of the stride-1 patterns is often over it
    seen = []

    def record(ctx, trial, spec, cost):
        seen.append((trial.number, complexity(spec).macs))
        return ev.Evaluation(score=1.0)

    monkeypatch.setitem(ev.EVALUATORS, "record", record)
    cfg = SearchConfig(budget=budget, evaluator="record", proxies=(), resolution=28).validate()
    ctx = ev.SearchContext(cfg)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(ev.make_objective(ctx), n_trials=100)
    trials = study.trials
    assert len(trials) == 100
    assert all(macs <= budget for _, macs in seen)
    evaluated = {n for n, _ in seen}
    over = [t for t in trials if t.user_attrs["macs"] > budget]
    assert over and len(evaluated) > 30  # both paths exercised
    for t in over:
        assert t.number not in evaluated
        assert t.user_attrs["status"] == "over_budget" and t.constraints
        assert t.value == 0.0
    for t in trials:
        spec = NetworkSpec.from_json(t.user_attrs["spec"])
        assert complexity(spec).macs == t.user_attrs["macs"]
        assert spec.in_channels == 1 and spec.num_classes == 10
    best = study.best_trial  # constrained: best is feasible
    assert best.user_attrs["macs"] <= budget

    from scaling.nn.build import build_model

    for t in random.Random(0).sample(trials, 10):
        spec = NetworkSpec.from_json(t.user_attrs["spec"])
        model = build_model(spec)
        assert _traced_macs(model, (1, 28, 28)) == t.user_attrs["macs"], t.number


@pytest.mark.parametrize("resolution,channels,budget", [(32, 3, 20e6), (224, 3, 400e6),
                                                         (64, 3, 50e6)])
def test_other_resolutions_give_valid_fitted_specs(resolution, channels, budget):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    fractions = []
    for _ in range(15):
        trial = study.ask()
        spec = sample_spec(trial, default_space(), resolution, channels, 10, budget=budget)
        macs = complexity(spec).macs
        fractions.append(macs / budget)
        assert spec.resolution == resolution and spec.in_channels == channels
        study.tell(trial, 0.0)
    # fit_budget: feasible samples use most of their sampled fraction (>= 0.5) of the budget
    assert sum(0.3 < f <= 1.0 for f in fractions) >= 12


def test_space_is_data_edits_change_samples(tmp_path):
    space = default_space()
    space["defaults"].update(block=["ds"], kernel=[5])
    space["net"].update(activation="silu", head="none", dropout=0.1)
    space["stages"] = [{"width": 16}, {"width": 32, "repeats": [4]}, {"width": 64}]
    space["strides"] = {28: ["2:1,2,2"]}
    path = tmp_path / "space.yaml"
    import yaml

    path.write_text(yaml.safe_dump(space))
    loaded = load_space(str(path))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        spec = sample_spec(study.ask(), loaded, 28, 1, 10, budget=2e6)
        assert [s.block for s in spec.stages] == ["ds"] * 3
        assert {s.kernel for s in spec.stages} == {5}
        assert spec.stages[1].repeats == 4
        assert spec.stem.strides == (2,) and [s.stride for s in spec.stages] == [1, 2, 2]
        assert spec.head.channels is None and spec.head.dropout == 0.1
        assert {s.activation for s in spec.stages} == {"silu"}
    js = tmp_path / "space.json"
    js.write_text(json.dumps(space))
    assert load_space(str(js))["stages"][1]["repeats"] == [4]


def test_fixed_width_multiplier_without_fit():
    space = default_space()
    space.update(fit_budget=False, width_multiplier=[0.5])
    for stage in space["stages"]:  # EfficientNet-B0's base widths
        stage["width"] = max(stage["width"]) if isinstance(stage["width"], list) else stage["width"]
    trial = optuna.create_study().ask()
    spec = sample_spec(trial, space, 28, 1, 10, budget=1e6)  # the budget does not bind
    assert trial.user_attrs["width_multiplier"] == 0.5
    assert [s.out_channels for s in spec.stages] == [8, 16, 24, 40, 56, 96, 160]
    assert "budget_fraction" not in trial.params


@pytest.mark.parametrize("edit,match", [
    (lambda s: s["defaults"].update(block=["conv"]), "block"),
    (lambda s: s["stages"].append({"width": 8, "colour": 1}), "colour"),
    (lambda s: s["strides"].update({28: ["1:1,2"]}), "stage strides"),
    (lambda s: s.update(budget_fraction={"low": 1.0, "high": 0.5}), "budget_fraction"),
    (lambda s: s["defaults"].update(kernel=[]), "kernel"),
    (lambda s: s["defaults"].update(activation=["relu"]), r"defaults: unknown key"),
    (lambda s: s["net"].update(activation=["swish"]), r"net.activation='swish'"),
    (lambda s: s["net"].update(head=["x4"]), r"net.head='x4'"),
    (lambda s: s.update(channel_divisor=[8, 0]), r"channel_divisor=\[8, 0\]"),
    (lambda s: s["stages"][2].update(width=[32, 0]), r"stages\[2\].width=0"),
])
def test_bad_spaces_name_the_key(edit, match):
    space = default_space()
    edit(space)
    with pytest.raises(ValueError, match=match):
        validate_space(space)


def test_stride_patterns():
    assert parse_pattern("1:1,2,2") == ((1,), (1, 2, 2))
    with pytest.raises(ValueError, match="stride pattern"):
        parse_pattern("1-2-2")
    with pytest.raises(ValueError, match="1 or 2"):
        parse_pattern("3:1,1")
    stem, stages = parse_pattern(auto_pattern(96, 7))
    size = 96
    for s in stem + stages:
        size = -(-size // s)
    assert 4 <= size <= 7 and stem == (2,)


@pytest.mark.parametrize("text,value", [("10M", 10_000_000), ("1.5G", 1_500_000_000),
                                        ("400000000", 400_000_000), ("2.5k", 2_500),
                                        ("7.5 M", 7_500_000), ("1e6", 1_000_000)])
def test_parse_budget(text, value):
    assert parse_budget(text) == value


@pytest.mark.parametrize("text", ["abc", "-5M", "10X", "", "M", "0", "1.5.2G"])
def test_parse_budget_rejects(text):
    with pytest.raises(ValueError, match="budget"):
        parse_budget(text)


def test_mnas_reward_trade_off():
    # Tan et al. 2019: with w = -0.07 a model of twice the MACs needs ~5% (2**0.07 = 1.0497)
    # more accuracy for the same reward.
    assert mnas_reward(0.8, 5e6, 5e6) == pytest.approx(0.8)
    assert mnas_reward(0.8 * 1.0497, 10e6, 5e6) == pytest.approx(0.8, abs=1e-4)
    assert mnas_reward(0.8, 2.5e6, 5e6) > 0.8
    with pytest.raises(ValueError):
        mnas_reward(0.8, 0, 5e6)


def test_objectives_registry():
    assert OBJECTIVES["pareto"].directions == ("maximize", "minimize")
    assert OBJECTIVES["reward"].penalty(123) == 0.0
    with pytest.raises(ValueError, match="objective='cost'"):
        get_objective("cost")


def test_a_retried_trial_sets_its_budget_constraint_once_without_warning():
    """Optuna's RetryFailedTrialCallback copies the failed trial's attributes (the constraint
    among them) into the retry; setting the same value again must not warn."""
    import warnings

    import optuna

    from scaling.search.objectives import CONSTRAINT, set_budget_constraint

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    trial = study.ask()
    set_budget_constraint(trial, 5_000, 4_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        set_budget_constraint(trial, 5_000, 4_000)
    assert trial.user_attrs[CONSTRAINT] == 1000.0
    study.tell(trial, 0.5)
    assert study.trials[0].constraints == {CONSTRAINT: 1000.0}
