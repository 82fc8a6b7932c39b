"""The pick after a search (issue 29): an enqueued hand-designed family is trained to the top
rung and re-evaluated beside the best trials, and a searched trial displaces it only when it
leads by more than ``pick_margin`` standard errors."""

import pytest
from search_fakes import fake_train, trial_number

from scaling.search import cli
from scaling.search import evaluators as ev
from scaling.search.reevaluate import pick, pick_line, pooled_std
from scaling.search.report import best_trials
from scaling.search.study import SearchConfig, run_search


def _row(trial, accs, enqueued=None):
    mean = sum(accs) / len(accs)
    return {"trial": trial, "val_accs": accs, "mean": mean, "value": mean, "n": len(accs),
            "enqueued": enqueued}


def test_pooled_std_weights_each_trial_by_its_degrees_of_freedom():
    rows = [_row(0, [0.80, 0.82]), _row(1, [0.70, 0.74, 0.72]), _row(2, [0.9])]
    # variances 0.0002 (1 df) and 0.0004 (2 df); a single seed adds nothing
    assert pooled_std(rows) == pytest.approx(((0.0002 + 2 * 0.0004) / 3) ** 0.5)
    assert pooled_std([_row(0, [0.8])]) is None


@pytest.mark.parametrize("lead,margin,winner", [
    (0.005, 1.0, 0),  # inside one SE (SE = 0.01 x sqrt(2/3) = 0.0082): the known net stays
    (0.020, 1.0, 5),  # past it: the searched trial wins
    (0.005, 0.0, 5),  # margin 0: the best mean wins, as without the guard
    (0.020, 3.0, 0),  # 2.4 SE is not past a margin of 3
])
def test_a_searched_trial_displaces_the_enqueued_family_only_past_the_margin(lead, margin,
                                                                             winner):
    known = _row(0, [0.86, 0.87, 0.88], enqueued="efficientnet_b0")
    searched = _row(5, [0.86 + lead, 0.87 + lead, 0.88 + lead])
    weaker = _row(1, [0.84, 0.85, 0.86], enqueued="mobilenet_v2")
    chosen, how = pick([searched, weaker, known], margin)
    assert chosen == winner and how["best"] == 5
    assert how["se"] == pytest.approx(0.01 * (2 / 3) ** 0.5)
    assert how["lead"] == pytest.approx(lead)  # against the best enqueued, not the weaker one
    assert how["kept"] == (0 if winner == 0 else None)
    line = pick_line({"pick": how})
    assert ("kept the enqueued trial #0" in line) == (winner == 0)


def test_the_best_trial_wins_when_it_is_enqueued_or_nothing_was():
    rows = [_row(3, [0.9, 0.91]), _row(4, [0.8, 0.82])]
    assert pick(rows, 1.0)[0] == 3 and pick_line({"pick": pick(rows, 1.0)[1]}) == ""
    rows.append(_row(0, [0.95, 0.96], enqueued="mobilenet_v2"))
    assert pick(rows, 1.0)[0] == 0


def test_an_enqueued_family_is_never_pruned_and_always_re_evaluated(monkeypatch, tmp_path):
    """Successive halving prunes the sampled trials that score as low as the enqueued
    MobileNetV2; the enqueued one trains every epoch, and although it is not among the best
    ``reevaluate`` trials it is re-evaluated, and kept: no searched trial leads it by a margin
    of 50 SE (about 0.2 points here, the leads are below 0.05)."""
    import scaling.train
    from scaling.search import members

    def inexpressible(spec, space, budget=None):
        raise ValueError("the space cannot express it")

    monkeypatch.setattr(members, "params_for", inexpressible)  # a fixed spec, named for it

    def acc(spec, seed):  # the enqueued net: low on the search's seed, then close to the best
        if "enqueued" in spec.name:
            return 0.30 if seed == 0 else 0.62 + 0.01 * seed
        return 0.30 if trial_number(spec) % 2 else 0.60 + 0.01 * (trial_number(spec) % 7)
    fake = fake_train(acc)
    monkeypatch.setattr(scaling.train, "train", fake)
    monkeypatch.setattr(ev.SearchContext, "data", lambda self: None)
    common = dict(budget=900_000, objective="window", trials=6, epochs=4, pruner="sha",
                  prune_factor=2, proxies=(), reevaluate=2, reevaluate_seeds=2, pick_margin=50,
                  out_dir=str(tmp_path), study="q", quiet=True, threads=1)
    run_search(SearchConfig(**{**common, "reevaluate": 0}).validate())  # the rungs fill first
    study = run_search(SearchConfig(**{**common, "trials": 8, "resume": True,
                                       "enqueue": ("mobilenet_v2",)}).validate()).study
    trained = {t.number: t for t in study.trials if t.user_attrs.get("status") in ("ok",
                                                                                  "pruned")}
    enqueued = [t for t in trained.values() if t.user_attrs.get("enqueued")]
    assert len(enqueued) == 1 and enqueued[0].number > 0
    low = [t for t in trained.values() if not t.user_attrs.get("enqueued")
           and t.user_attrs.get("val_history", [1])[0] == 0.30]
    assert any(t.user_attrs["status"] == "pruned" for t in low)  # what the pruner does to it
    assert enqueued[0].user_attrs["status"] == "ok"
    assert enqueued[0].user_attrs["epochs_trained"] == 4
    table = study.user_attrs["reevaluation"]
    rows = {r["trial"]: r for r in table["rows"]}
    assert len(rows) == 3 and enqueued[0].number in rows  # the best 2, and the enqueued one
    assert table["winner"] == enqueued[0].number and table["pick"]["kept"] == table["winner"]
    assert best_trials(study)[0].user_attrs["enqueued"] == "mobilenet_v2"


def test_pick_margin_is_checked_and_on_the_cli(capsys, tmp_path):
    with pytest.raises(ValueError, match="pick_margin=-1"):
        SearchConfig(budget=900_000, pick_margin=-1).validate()
    assert cli.main(["--budget", "900k", "--pick-margin", "-1", "--out", str(tmp_path)]) == 2
    assert "pick_margin=-1" in capsys.readouterr().err


@pytest.mark.data
def test_two_workers_share_the_re_evaluation(tmp_path):
    """With ``workers`` 2 the retrainings are split between this process and a spawned one on
    the study's storage; every (trial, seed) is stored once and the table is whole."""
    from scaling.data import DatasetNotFoundError, load_dataset
    from scaling.search.reevaluate import reevaluate

    try:
        load_dataset("fashion-mnist", val_size=100, subset=10)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    cfg = SearchConfig(budget=300_000, objective="window", trials=3, epochs=1, subset=64,
                       val_size=64, batch_size=32, pruner="none", proxies=(), reevaluate=0,
                       device="cpu", out_dir=str(tmp_path), study="w", quiet=True,
                       threads=1).validate()
    study = run_search(cfg).study
    cfg.reevaluate, cfg.reevaluate_seeds, cfg.workers = 2, 2, 2
    table = reevaluate(study, cfg)
    assert [r["n"] for r in table["rows"]] == [2, 2]
    keys = [k for k in study.user_attrs if k.startswith("reeval:")]
    assert len(keys) == 4 and table["winner"] in [r["trial"] for r in table["rows"]]
