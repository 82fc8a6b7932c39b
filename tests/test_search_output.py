"""What a search prints and writes, read by a person: named progress fields with 'trial k of N'
and an ETA, a summary without repeated columns, the tidy trials CSV, the commented space."""

import re

import pandas as pd
import pytest
import yaml

from scaling.search import cli
from scaling.search.space import default_space
from scaling.search.space_doc import NOTES

CHEAP = ["--evaluator", "zero-cost", "--proxies", "params,synflow", "--rank-proxy", "synflow",
         "--budget", "3M", "--threads", "1", "--zc-batch", "8"]


@pytest.fixture(scope="module")
def zero_cost_run(tmp_path_factory):
    """One 3-trial zero-cost search through the CLI's defaults: its stdout and its folder."""
    import contextlib
    import io

    out, buf = tmp_path_factory.mktemp("search"), io.StringIO()  # capsys is per test
    with contextlib.redirect_stdout(buf):
        rc = cli.main([*CHEAP, "--trials", "3", "--out", str(out), "--study", "z"])
    assert rc == 0
    return buf.getvalue(), out


def test_progress_lines_name_their_fields_count_trials_and_give_an_eta(zero_cost_run):
    stdout, _ = zero_cost_run
    lines = [ln for ln in stdout.splitlines() if ln.startswith("[w0] trial")]
    assert len(lines) == 3
    for k, line in enumerate(lines, 1):
        assert re.match(rf"\[w0\] trial {k} of 3 \(#\d+\) complete, status ok: [\d.]+[KM] MACs, "
                        r"synflow [\d.]+, reward [\d.]+ \| best reward [\d.]+ \(#\d+\) \| "
                        r"[\d.]+ s, ETA \d\d:\d\d$", line), line
    assert lines[-1].endswith("ETA 00:00")  # nothing left


def test_a_zero_cost_summary_says_scored_and_repeats_no_column(zero_cost_run):
    stdout, _ = zero_cost_run
    assert "3 scored" in stdout and "trained" not in stdout
    table = stdout.split("summary (top trials; * = best):\n")[1].split("\n\n")[0]
    header = table.splitlines()[0].split()
    assert header[:6] == ["trial", "best", "MACs", "params", "synflow", "reward"]
    assert header.count("params") == 1 and "proxy" not in header  # params proxy = params


def test_the_tidy_trials_csv_has_documented_columns_and_no_duplicates(zero_cost_run):
    stdout, out = zero_cost_run
    assert f"trials CSV: {out / 'z.trials.csv'}" in stdout
    tidy = pd.read_csv(out / "z.trials.csv")
    raw = pd.read_csv(out / "z.csv")  # Optuna's dump stays beside it, for scaling.analysis
    assert len(tidy) == len(raw) == 3 and "value_reward" in raw.columns
    assert list(tidy.columns) == ["trial", "state", "status", "macs", "params", "budget",
                                  "score", "reward", "seconds", "worker", "started", "blocks"]
    assert (tidy["macs"] <= 3_000_000).all() and (tidy["budget"] == 3_000_000).all()
    assert tidy["score"].tolist() == raw["user_attrs_proxy_synflow"].tolist()
    for a, b in [(a, b) for i, a in enumerate(tidy.columns) for b in tidy.columns[i + 1:]]:
        assert not tidy[a].equals(tidy[b]), (a, b)


def test_print_space_explains_each_key_in_a_comment(capsys):
    assert cli.main(["--print-space"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out) == default_space()  # the notes are comments
    lines = out.splitlines()
    for key in default_space():
        at = lines.index(next(ln for ln in lines if ln.startswith(f"{key}:")))
        assert lines[at - 1].startswith("# "), key  # every key follows its note
    text = " ".join(ln[2:] for ln in lines if ln.startswith("# ") and not ln.startswith("#  "))
    for key in ("fit_budget", "budget_fraction", "width_range", "width_multiplier", "strides"):
        assert " ".join(NOTES[key].split()) in text, key
    assert "ignored while fit_budget is true" in text
    assert '"1:1,2,2,2,1,2,1" is a stride-1 stem, then one stride per stage' in text


def _study_of(records):
    """An in-memory reward study whose trials carry the given user attributes and values."""
    import warnings

    import optuna
    from optuna.trial import TrialState, create_trial

    study = optuna.create_study(direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["reward"])
    for value, attrs in records:
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, user_attrs=attrs))
    return study


def test_tidy_trials_of_a_train_search_keep_distinct_columns_only():
    from scaling.search.report import tidy_trials

    ok = {"status": "ok", "macs": 1_000_000, "params": 5000, "budget": 2_000_000,
          "val_acc": 0.8, "best_val_acc": 0.8, "score": 0.8, "proxy_params": 5000,
          "proxy_synflow": 3.5, "worker": 0, "blocks": "ds_r1_k3_s1_e1_c8"}
    better = {**ok, "val_acc": 0.82, "best_val_acc": 0.85, "score": 0.82, "proxy_synflow": 4.0}
    over = {"status": "over_budget", "macs": 3_000_000, "params": 9000, "budget": 2_000_000,
            "worker": 0, "blocks": "ds_r1_k5_s1_e1_c8"}
    df = tidy_trials(_study_of([(0.85, ok), (0.86, better), (-1.0, over)]))
    assert list(df.columns) == ["trial", "state", "status", "macs", "params", "budget", "val_acc",
                                "best_val_acc", "reward", "proxy_synflow", "worker", "started",
                                "blocks"]  # score = val_acc, proxy_params = params: left out
    assert df["status"].tolist() == ["ok", "ok", "over_budget"]
    assert df["val_acc"].isna().tolist() == [False, False, True]


def test_an_over_budget_sample_is_reported_as_not_counted():
    from scaling.search.config import SearchConfig
    from scaling.search.study import progress_callback

    study = _study_of([(0.7, {"status": "ok", "macs": 1_000_000, "score": 0.7}),
                       (-1.0, {"status": "over_budget", "macs": 3_000_000})])
    lines = []
    cfg = SearchConfig(budget=2_000_000, trials=5, workers=2).validate()
    ticks = iter([0.0, 30.0])  # the callback's start, then 30 s later
    callback = progress_callback(cfg, 1, lines.append, clock=lambda: next(ticks))
    for trial in study.trials:
        callback(study, trial)
    ok, over = lines
    assert ok.startswith("[w1] trial 1 of 5 (#0) complete, status ok: 1M MACs, val_acc 0.7000")
    assert ok.endswith("ETA 01:00")  # 30 s a trial x 4 left / 2 workers
    assert over == "[w1] trial #1 over budget: 3M MACs, not counted"
