"""The search CLI: one-line errors with exit code 2, reports, pruning, hybrid, a CPU smoke run."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from scaling.search import cli
from scaling.search import evaluators as ev
from scaling.search.study import SearchConfig, run_search

ROOT = Path(__file__).resolve().parent.parent
CHEAP = ["--evaluator", "zero-cost", "--proxies", "params", "--rank-proxy", "params",
         "--budget", "3M", "--heartbeat", "1", "--grace", "2", "--threads", "1"]


def _one_line_exit_2(capsys, argv):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m scaling.search: error:")
    return err


@pytest.mark.parametrize("argv,match", [
    (["--budget", "ten"], "budget='ten'"),
    (["--budget=-3M"], "budget"),
    (["--evaluator", "oracle"], "evaluator='oracle'"),
    (["--objective", "speed"], "objective='speed'"),
    (["--sampler", "grid"], "sampler='grid'"),
    (["--proxies", "synflow,zen"], "proxy='zen'"),
    (["--trials", "0"], "trials=0"),
    (["--trials", "many"], "invalid int"),
    (["--device", "tpu"], "device"),
    (["--space", "/nonexistent/space.yaml"], "cannot be read"),
])
def test_bad_input_one_line_exit_2(capsys, tmp_path, argv, match):
    err = _one_line_exit_2(capsys, [*argv, "--out", str(tmp_path)])
    assert match in err


@pytest.mark.parametrize("url", ["sqlite:///{tmp}/a-file/x/y.db",
                                 "postgresql://nobody@127.0.0.1:1/none", "not-a-url"])
def test_unreachable_storage_exit_2(capsys, tmp_path, url):
    (tmp_path / "a-file").write_text("not a folder")  # the db's folder cannot be created
    err = _one_line_exit_2(capsys, [*CHEAP, "--trials", "1", "--storage",
                                    url.format(tmp=tmp_path)])
    assert "storage" in err


def test_existing_study_needs_resume(capsys, tmp_path):
    argv = [*CHEAP, "--trials", "2", "--out", str(tmp_path), "--study", "s", "--quiet"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert "--resume" in _one_line_exit_2(capsys, argv)
    err = _one_line_exit_2(capsys, [*argv, "--resume", "--budget", "4M", "--seed", "7"])
    assert "budget (stored 3000000, given 4000000); seed (stored 0, given 7)" in err
    assert cli.main([*argv, "--resume", "--trials", "3"]) == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    assert len(study.trials) == 3


def test_subprocess_exit_code_and_single_line():
    proc = subprocess.run([sys.executable, "-m", "scaling.search", "--budget", "1.5Q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "1.5Q" in proc.stderr
    assert proc.stdout == ""


def test_json_report_and_outputs(capsys, tmp_path):
    rc = cli.main([*CHEAP, "--trials", "4", "--out", str(tmp_path), "--study", "j",
                   "--objective", "pareto", "--json"])
    captured = capsys.readouterr()
    assert rc == 0
    rep = json.loads(captured.out)
    assert rep["objective"] == "pareto" and rep["counts"]["complete"] == 4
    assert captured.err.count("trial") >= 4  # progress lines go to stderr with --json
    front = rep["best"]
    assert front and all(r["macs"] <= 3_000_000 for r in front)
    assert [r["macs"] for r in front] == sorted(r["macs"] for r in front)
    import pandas as pd

    df = pd.read_csv(rep["csv"])
    assert len(df) == 4 and "user_attrs_spec" in df.columns
    assert json.loads(Path(rep["best_json"]).read_text())[0]["spec"]["stages"]


def test_nsga2_pareto_search(tmp_path):
    cfg = SearchConfig(study="n", budget=3_000_000, objective="pareto", sampler="nsga2",
                       evaluator="zero-cost", proxies=("params",), rank_proxy="params",
                       trials=6, out_dir=str(tmp_path), quiet=True, threads=1)
    info = run_search(cfg)
    assert len(info.study.trials) == 6
    from scaling.search.report import best_trials

    front = best_trials(info.study)
    assert front and all(t.user_attrs["feasible"] for t in front)
    for t in front:  # nobody on the front is dominated by a feasible trial
        assert not any(o.user_attrs["feasible"] and o.values[0] > t.values[0]
                       and o.values[1] < t.values[1] for o in info.study.trials)


def _fake_train(accuracies):
    """A stand-in for scaling.train.trainer.train reporting the given validation accuracies."""
    from scaling.train import TrainResult

    def result(status, history, final):
        return TrainResult(status=status, history=history,
                           best_val_top1=max(h["val_top1"] for h in history),
                           final_val_top1=final, images_per_s=1.0, train_time=1.0,
                           wall_time=1.0, samples=10, steps=1, device="cpu", amp=None,
                           channels_last=False, config={})

    def train(spec, data, *, epochs=None, callback=None, **kw):
        history = []
        for epoch, acc in enumerate(accuracies, 1):
            history.append({"val_top1": acc})
            if callback is not None and callback(epoch, {"val_top1": acc}) is False:
                return result("pruned", history, None)
        return result("ok", history, accuracies[-1])

    return train


def test_train_evaluator_pruning_records_the_trial(monkeypatch):
    import scaling.train

    monkeypatch.setattr(scaling.train, "train", _fake_train([0.5, 0.6, 0.7]))
    monkeypatch.setattr(ev.SearchContext, "data", lambda self: None)
    cfg = SearchConfig(budget=3_000_000, evaluator="train", proxies=("params",)).validate()
    ctx = ev.SearchContext(cfg)
    prune_all = optuna.pruners.ThresholdPruner(lower=2.0)  # every reward < 2: prune at epoch 1
    study = optuna.create_study(direction="maximize", pruner=prune_all,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(ev.make_objective(ctx), n_trials=3)
    feasible = [t for t in study.trials if t.user_attrs["feasible"]]
    assert feasible and all(t.state.name == "PRUNED" for t in feasible)
    t = feasible[0]
    assert t.user_attrs["status"] == "pruned" and t.user_attrs["val_history"] == [0.5]
    assert t.user_attrs["proxy_params"] == t.user_attrs["params"]
    assert list(t.intermediate_values) == [1]

    study2 = optuna.create_study(direction="maximize",
                                 sampler=optuna.samplers.RandomSampler(seed=0))
    study2.optimize(ev.make_objective(ctx), n_trials=2)  # no pruner: full run, final accuracy
    done = [t for t in study2.trials if t.user_attrs["feasible"]]
    assert all(t.state.name == "COMPLETE" and t.user_attrs["val_acc"] == 0.7 for t in done)


def test_hybrid_trains_the_best_screened_samples(monkeypatch, tmp_path):
    import scaling.train

    monkeypatch.setattr(scaling.train, "train", _fake_train([0.8]))
    monkeypatch.setattr(ev.SearchContext, "data", lambda self: None)
    cfg = SearchConfig(study="h", budget=3_000_000, evaluator="hybrid", trials=3,
                       hybrid_samples=12, proxies=("params",), rank_proxy="params",
                       pruner="none", out_dir=str(tmp_path), quiet=True)
    info = run_search(cfg)
    zc = optuna.load_study(study_name="h-zc", storage=cfg.storage_url)
    screened = [t for t in zc.trials if t.user_attrs.get("feasible")]
    assert len(zc.trials) == 12 and len(screened) >= 3
    top = sorted(screened, key=lambda t: -t.value)[:3]
    trained = info.study.trials
    assert len(trained) == 3
    assert [t.params for t in trained] == [t.params for t in top]
    assert all(t.user_attrs["val_acc"] == 0.8 and "proxy_params" in t.user_attrs
               for t in trained)


@pytest.mark.data
def test_cpu_smoke_search(tmp_path, capsys):
    """A real (tiny) train search on Fashion-MNIST: 2 trials on 96 images."""
    from scaling.data import DatasetNotFoundError, load_dataset

    try:
        load_dataset("fashion-mnist", val_size=100, subset=10)
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    rc = cli.main(["--budget", "4M", "--trials", "2", "--subset", "96", "--val-size", "64",
                   "--epochs", "1", "--batch-size", "32", "--device", "cpu", "--proxies",
                   "params,synflow", "--zc-batch", "16", "--out", str(tmp_path),
                   "--study", "smoke", "--startup-trials", "2", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("[w0] trial")]
    assert len(lines) == 2 and "best" in lines[-1]
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path}/smoke.db")
    for t in study.trials:
        assert t.state.name == "COMPLETE"
        assert t.user_attrs["macs"] <= 4_000_000
        assert 0.0 <= t.user_attrs["val_acc"] <= 1.0 and "proxy_synflow" in t.user_attrs
    assert (tmp_path / "smoke.csv").exists() and "summary" in out


def test_baselines_of_the_experiment_fill_the_budget():
    import importlib.util

    from scaling.cost import complexity

    spec_ = importlib.util.spec_from_file_location(
        "search_baseline", ROOT / "experiments" / "search_baseline.py")
    mod = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(mod)
    for name, (spec, width) in mod.fitted_baselines(6_000_000).items():
        macs = complexity(spec).macs
        assert 0.1 < width < 3.0
        assert 0.85 * 6_000_000 < macs <= 6_000_000, (name, macs)
        assert spec.stem.strides == (1,) and spec.in_channels == 1 and spec.num_classes == 10
