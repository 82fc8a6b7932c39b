"""Every command works on the package's own outputs (issue 28): a search's trials CSV, its
``best.json`` (one record, or a Pareto front picked by ``#N``), its ``--json`` report and a
``train --save`` checkpoint go into analysis, profile, train, compound and ``create_model``;
the committed ``results/`` folder is readable by analysis. The searches are tiny zero-cost ones
written by the search CLI itself, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scaling.ir import NetworkSpec, load_spec
from scaling.nn.features import feature_levels

ROOT = Path(__file__).resolve().parent.parent
ZERO_COST = ["--evaluator", "zero-cost", "--budget", "3M", "--heartbeat", "1", "--grace", "2",
             "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A reward search (into a folder not named 'search') and a Pareto search, each written by
    ``python -m scaling.search``; the reward search's ``--json`` report saved beside."""
    import contextlib
    import io

    from scaling.search.cli import main

    root = tmp_path_factory.mktemp("own")
    report = io.StringIO()
    with contextlib.redirect_stdout(report), contextlib.redirect_stderr(io.StringIO()):
        assert main([*ZERO_COST, "--proxies", "params", "--rank-proxy", "params", "--trials",
                     "3", "--out", str(root / "found"), "--study", "f", "--json"]) == 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([*ZERO_COST, "--proxies", "params,synflow", "--rank-proxy", "synflow",
                     "--objective", "pareto", "--trials", "4", "--out", str(root / "front"),
                     "--study", "p"]) == 0
    (root / "report.json").write_text(report.getvalue())
    front = json.loads((root / "front" / "p.best.json").read_text())
    return {"root": root, "best": root / "found" / "f.best.json", "csv": root / "found" / "f.csv",
            "report": root / "report.json", "front": root / "front" / "p.best.json",
            "front_numbers": [r["number"] for r in front], "records": front}


def _one_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"{prog}: error:"), err
    return err


def test_best_json_and_report_load_as_the_found_spec(searched):
    record = json.loads(searched["best"].read_text())
    assert isinstance(record, list) and len(record) == 1
    spec = load_spec(str(searched["best"]))
    assert spec == NetworkSpec.from_dict(record[0]["spec"])
    assert load_spec(str(searched["report"])) == spec  # the --json report's 'best'
    assert load_spec(f"{searched['best']}#{record[0]['number']}") == spec


def test_a_pareto_front_is_picked_by_trial_number(searched):
    path, numbers = str(searched["front"]), searched["front_numbers"]
    assert len(numbers) > 1  # four samples of different sizes: a front of several
    with pytest.raises(ValueError, match=r"p\.best\.json.*Pareto front.*#N.*trial "
                                         f"{numbers[0]}"):
        load_spec(path)
    last = searched["records"][-1]
    assert load_spec(f"{path}#{numbers[-1]}") == NetworkSpec.from_dict(last["spec"])
    missing = max(numbers) + 100
    with pytest.raises(ValueError, match=f"p.best.json#{missing}' has no trial {missing}"):
        load_spec(f"{path}#{missing}")


def test_a_spec_file_refuses_a_trial_pick(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(load_spec(str(ROOT / "results/search/baseline.json")).to_json())
    with pytest.raises(ValueError, match="s.json#3'.*drop '#3'"):
        load_spec(f"{path}#3")
    (tmp_path / "empty.best.json").write_text("[]")
    with pytest.raises(ValueError, match="empty.best.json'.*no trial record"):
        load_spec(str(tmp_path / "empty.best.json"))


def test_profile_and_compound_take_the_found_spec(searched, capsys):
    from scaling.compound.cli import main as compound
    from scaling.cost import complexity
    from scaling.cost.profile import main as profile

    spec = load_spec(str(searched["best"]))
    assert profile([str(searched["best"])]) == 0
    assert f"{complexity(spec).macs:,}" in capsys.readouterr().out
    out = searched["root"] / "scaled.json"
    assert compound(["--base", str(searched["report"]), "--phi", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert complexity(load_spec(str(out))).macs > complexity(spec).macs
    assert profile([str(searched["front"])]) == 2  # a front needs a pick: one line
    assert "#N" in _one_line(capsys, "python -m scaling.profile")
    assert profile([f"{searched['front']}#{searched['front_numbers'][0]}"]) == 0


def test_train_saves_a_checkpoint_that_loads_in_one_call(searched, tmp_path, capsys):
    from idx_files import make_idx_dir

    import scaling
    from scaling.train.cli import main as train

    root = make_idx_dir(tmp_path / "fm", n_train=96, n_test=32)
    ckpt = tmp_path / "run.pt"
    assert train([str(searched["best"]), "--data-root", str(root), "--epochs", "1",
                  "--val-size", "32", "--batch-size", "32", "--threads", "1", "--save",
                  str(ckpt), "--json"]) == 0
    capsys.readouterr()
    saved = torch.load(ckpt, weights_only=True)
    x = torch.randn(2, 1, 28, 28)
    for model in (scaling.create_model(str(ckpt)),  # the checkpoint stores its spec
                  scaling.create_model(str(searched["best"]), checkpoint_path=ckpt)):
        state = model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved["state_dict"].items())
        assert model.eval()(x).shape == (2, 10)
    features = scaling.create_model(ckpt, features_only=True)  # os.PathLike, features model
    assert len(features(x)) == len(feature_levels(load_spec(str(searched["best"]))))
    with pytest.raises(ValueError, match="run.pt' does not fit the model"):
        scaling.create_model("mobilenet_v2_x0_5", checkpoint_path=ckpt)


def test_create_model_takes_a_spec_file_and_names_bad_files(searched, tmp_path):
    import scaling

    model = scaling.create_model(str(searched["best"]), num_classes=3)
    assert model.num_classes == 3
    with pytest.raises(ValueError, match="'found.json' is neither a zoo name nor"):
        scaling.create_model("found.json")
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)
    with pytest.raises(ValueError, match="bare.pt' stores no 'spec'.*checkpoint_path"):
        scaling.create_model(str(bare))
    assert scaling.create_model(str(searched["best"]), num_classes=3,
                                checkpoint_path=bare).num_classes == 3


def test_analysis_reads_every_search_output(searched, tmp_path, capsys):
    from scaling.study.analysis import main

    assert main([str(searched["root"]), "--out", str(tmp_path / "figs")]) == 0
    written = capsys.readouterr().out.split()
    names = sorted(Path(p).name for p in written)
    # the reward search (value_reward) in a folder named 'found', the Pareto one (values_*)
    assert "f_progress.png" in names and "p_progress.png" in names
    assert all(Path(p).stat().st_size > 1000 for p in written)


def test_analysis_error_names_the_file(tmp_path, capsys):
    from scaling.study.analysis import main

    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "compare_x.csv").write_text("family,macs\na,1\n")
    assert main([str(tmp_path / "res"), "--out", str(tmp_path / "figs")]) == 2
    assert "compare_x.csv" in _one_line(capsys, "python -m scaling.analysis")


def test_analysis_reads_the_committed_studies_searches(tmp_path, capsys):
    """The committed studies' searches (Optuna's named ``value_reward`` column, two tables named
    search.csv): the figures of one do not overwrite the other's. (The whole of results/ is
    the README command test's.)"""
    import shutil

    from scaling.study.analysis import main

    for preset in ("medium", "full"):
        shutil.copytree(ROOT / "results" / preset / "search", tmp_path / "res" / preset / "search")
    assert main([str(tmp_path / "res"), "--out", str(tmp_path / "figs")]) == 0
    names = {Path(p).name for p in capsys.readouterr().out.split()}
    assert {"medium-search-search_progress.png", "full-search-search_progress.png"} <= names


def test_search_writes_outside_the_committed_results_by_default():
    from scaling.search.config import SearchConfig

    out = Path(SearchConfig(budget=1_000_000).out_dir)
    assert out.parts[0] == "runs"
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/runs/" in ignored


def test_compound_warns_when_rounding_misses_the_ideal_and_match_lands(searched, capsys):
    from scaling.compound.cli import main as compound
    from scaling.compound.match import macs_of

    base = str(ROOT / "results/medium/search/search.best.json")  # 0.81M MACs, 8-48 channels
    assert compound(["--base", base, "--phi", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warning" in err and "against the ideal x1.92" in err
    assert "compound match --base" in err
    out = searched["root"] / "matched.json"
    assert compound(["match", "--base", base, "--phi", "1", "--ratio", "1.92", "--out",
                     str(out), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    m0 = macs_of(load_spec(base))
    assert abs(macs_of(load_spec(str(out))) / (1.92 * m0) - 1) <= 0.05
    assert rep["macs"]["matched"] == macs_of(load_spec(str(out)))
    assert compound(["match", "--base", base, "--ratio", "2", "--by", "width", "--tol",
                     "0.1"]) == 0
    assert "realised" in capsys.readouterr().out
    assert compound(["match", "--base", base, "--macs", "lots"]) == 2
    assert "--macs" in _one_line(capsys, "python -m scaling.compound")


def test_compound_is_quiet_when_the_rule_lands(capsys):
    from scaling.compound.cli import main as compound

    assert compound(["--base", "resnet50", "--phi", "1", "--alpha", "1", "--beta", "1",
                     "--gamma", "1"]) == 0
    assert capsys.readouterr().err == ""


def test_grid_help_explains_its_columns(capsys):
    from scaling.compound.cli import main as compound

    assert compound(["grid", "--help"]) == 0
    out = capsys.readouterr().out
    for column in ("refit", "score", "w "):
        assert f"\n  {column}" in out
