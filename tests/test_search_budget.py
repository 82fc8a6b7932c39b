"""Small MAC budgets: samples are trained as sampled or rejected (no shrink ladder), and the trial
target counts trained trials only (over-budget samples are recorded, and sampling goes on up to
a cap), with resume and several worker processes."""

import json

import optuna
import pytest
from optuna.trial import TrialState

from scaling.cost import complexity
from scaling.ir import NetworkSpec
from scaling.search.members import same_spec, spec_from_params
from scaling.search.report import counts, target_status
from scaling.search.space import default_space, load_space, sample_spec
from scaling.search.study import SearchConfig, run_search
from scaling.search.workers import ATTEMPTS_PER_TRIAL, Census, is_trained

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _samples(budget, n, space=None, seed=0):
    """(spec, trial) of ``n`` random samples of the space at 28x28x1, 10 classes."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append((sample_spec(trial, space or default_space(), 28, 1, 10, budget=budget),
                    trial))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("budget,share", [(300_000, 0.3), (1_000_000, 0.6)])
def test_small_budgets_sample_feasibly_and_nothing_sampled_is_changed(budget, share):
    """Without the shrink ladder a sample is trained as sampled or rejected: at 0.3M a share of
    the space's floor is over budget (19 of 40 at seed 0), never altered; the width lands within
    mac_tol of the sampled fraction unless it sits at the width floor."""
    space = default_space()
    samples = _samples(budget, 40)
    feasible = [complexity(spec).macs <= budget for spec, _ in samples]
    assert share * len(samples) <= sum(feasible) < len(samples)  # both paths at these budgets
    low = space["width_range"][0]
    for spec, t in samples:
        assert "shrink" not in t.user_attrs
        assert same_spec(spec_from_params(t.params, space, budget=budget), spec)
        assert [s.repeats for s in spec.stages] == [
            t.params.get(f"s{i}_repeats", 1) for i in range(len(spec.stages))]
        target = t.params["budget_fraction"] * budget
        if t.user_attrs["width_multiplier"] > low and complexity(spec).macs <= budget:
            assert abs(complexity(spec).macs / target - 1) <= 0.25, t.params


def test_a_space_with_a_shrink_ladder_is_refused_naming_the_key():
    space = default_space()
    space["shrink"] = [{"repeats": 1}]
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['shrink'\]"):
        load_space(space)


def _cfg(tmp_path, study, trials, budget, space=None, **kw):
    return SearchConfig(study=study, evaluator="zero-cost", proxies=("params",),
                        rank_proxy="params", budget=budget, trials=trials, sampler="random",
                        out_dir=str(tmp_path), quiet=True, threads=1, space=space,
                        heartbeat=1, grace=2, **kw)


def test_over_budget_samples_do_not_use_up_the_target_and_resume_counts_trained(tmp_path):
    """At 0.3M and 28x28 about half the samples are over budget: the search still trains its
    target, records every over-budget sample, and a resume counts the trained ones."""
    info = run_search(_cfg(tmp_path, "t", 4, 300_000))
    trials = info.study.get_trials(deepcopy=False)
    census = Census.of(trials)
    assert census.trained == 4 and census.over > 0
    over = [t for t in trials if t.user_attrs.get("status") == "over_budget"]
    assert all(t.state == TrialState.COMPLETE and t.value == 0.0
               and t.user_attrs["macs_over_budget"] > 0 and t.constraints
               for t in over)
    assert counts(info.study)["trained"] == 4
    assert target_status(info.study, 4)["stopped"] is None and "stopped" not in info.extra
    info = run_search(_cfg(tmp_path, "t", 7, 300_000, resume=True))
    assert Census.of(info.study).trained == 7
    keys = [json.dumps(t.params, sort_keys=True) for t in info.study.trials]
    assert len(keys) == len(set(keys))  # the resume drew new samples


def test_the_attempt_cap_ends_a_search_that_samples_nothing_feasible(tmp_path, capsys):
    info = run_search(_cfg(tmp_path, "c", 2, 1_000))  # nothing fits 1,000 MACs
    census = Census.of(info.study)
    assert census.trained == 0 and census.attempts == 2 * ATTEMPTS_PER_TRIAL == census.over
    status = target_status(info.study, 2)
    assert status["stopped"] and "0 of 2 trials trained" in status["stopped"]
    assert info.extra["stopped"] == status["stopped"]
    assert "cap of 20 attempts" in capsys.readouterr().err
    info = run_search(_cfg(tmp_path, "c", 2, 1_000, resume=True))  # the cap holds on resume
    assert len(info.study.trials) == 2 * ATTEMPTS_PER_TRIAL


def test_a_search_at_1m_trains_its_target_and_trains_what_it_recorded(tmp_path):
    """20 trials at 1M MACs, 28x28, default space: every trained trial's recorded params
    rebuild, through the space, the spec that was trained (issue 29: sampled is evaluated)."""
    info = run_search(_cfg(tmp_path, "m", 20, 1_000_000))
    trials = info.study.get_trials(deepcopy=False)
    census = Census.of(trials)
    assert census.trained == 20 and census.over < census.trained
    trained = [t for t in trials if is_trained(t)]
    assert len(trained) == 20
    for t in trained:
        stored = NetworkSpec.from_json(t.user_attrs["spec"])
        rebuilt = spec_from_params(t.params, default_space(), budget=1_000_000)
        assert same_spec(rebuilt, stored), t.number
        assert complexity(stored).macs == t.user_attrs["macs"] <= 1_000_000


@pytest.mark.slow
def test_two_workers_share_a_target_of_trained_trials(tmp_path):
    info = run_search(_cfg(tmp_path, "w", 6, 300_000, workers=2))
    trials = info.study.get_trials(deepcopy=False)
    census = Census.of(trials)
    assert census.trained == 6 and census.over > 0 and census.running == 0
    assert {t.user_attrs.get("worker") for t in trials if "worker" in t.user_attrs} <= {0, 1}
    extra = [t for t in trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("surplus") for t in extra)
