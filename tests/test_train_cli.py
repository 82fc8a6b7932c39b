"""``python -m scaling.train``: a spec file or a zoo name trained, saved and reported; bad
arguments give one line and exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import tiny_spec

from scaling.ir import NetworkSpec


def test_cli_runs_a_spec_file_and_saves(tmp_path, capsys):
    from idx_files import make_idx_dir

    from scaling.train.cli import main

    root = make_idx_dir(tmp_path / "fm", n_train=160, n_test=40)
    spec_path = tmp_path / "net.json"
    spec_path.write_text(tiny_spec().to_json())
    rc = main([str(spec_path), "--data-root", str(root), "--epochs", "2", "--val-size", "32",
               "--batch-size", "32", "--threads", "1", "--save", str(tmp_path / "net.pt"),
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["status"] == "ok" and len(out["history"]) == 2
    assert 0 <= out["test_top1"] <= 1 and out["macs"] > 0 and out["samples"] == 2 * 128
    saved = torch.load(tmp_path / "net.pt", weights_only=True)
    assert NetworkSpec.from_dict(saved["spec"]) == tiny_spec()
    assert "head.fc.weight" in saved["state_dict"]
    rc = main(["mobilenet_v2_x0_5", "--data-root", str(root), "--samples", "32", "--batch-size",
               "32", "--val-size", "16", "--precise-bn", "1", "--no-test", "--threads", "1",
               "--json"])  # a zoo name, adapted to 28x28 grey (stride-1 stem): ~6.8M MACs
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["test_top1"] is None and abs(out["macs"] - 6.8e6) < 0.1e6


@pytest.mark.parametrize("argv, match", [
    (["no_such_model"], "no_such_model"),
    (["mobilenet_v2_x0_5", "--epochs", "-1"], "epochs=-1"),
    (["mobilenet_v2_x0_5", "--batch-size", "0"], "batch_size=0"),
    (["mobilenet_v2_x0_5", "--data", "svhn"], "svhn"),
    (["mobilenet_v2_x0_5", "--data-root", "/nonexistent/x"], "apt-get install"),
    (["missing.json"], "no such spec file"),
])
def test_cli_bad_arguments_one_line_exit_2(argv, match, capsys):
    from scaling.train.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m scaling.train: error:") and match in err
    assert err.count("\n") == 1


def test_cli_unknown_option_exit_2(capsys):
    from scaling.train.cli import main

    assert main(["mobilenet_v2_x0_5", "--bogus"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_evaluations_after_a_seconds_budget_are_announced(tmp_path, capsys):
    """``--seconds`` counts training only; the validation and test evaluations that follow are
    each announced as they start, also when stderr is not a terminal (no progress bar)."""
    from idx_files import make_idx_dir

    from scaling.train.cli import build_parser, main

    root = make_idx_dir(tmp_path / "fm", n_train=160, n_test=40)
    spec_path = tmp_path / "net.json"
    spec_path.write_text(tiny_spec().to_json())
    rc = main([str(spec_path), "--data-root", str(root), "--seconds", "0.01", "--val-size", "32",
               "--batch-size", "32", "--threads", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    val = next(i for i, ln in enumerate(lines) if "evaluating on 32 validation images" in ln)
    test = lines.index("evaluating on 40 test images")
    assert lines[val].startswith("budget spent after ") and val < test < len(lines) - 1
    assert lines[-1].startswith("status ok")
    assert "counts training only" in build_parser().format_help()
