"""``python -m scaling.bench deploy`` in-process at tiny sizes: defaults that fit any --batch,
models torchvision lacks, the ratio columns' meaning and legend, one-line errors."""

from __future__ import annotations

import pytest
import torch

import scaling.bench.deploy as bench_deploy
from scaling.bench import main
from scaling.zoo import create_model

TINY = ["deploy", "--res", "32", "--warmup", "0", "--threads", "1"]


def _rows(out: str) -> dict[str, dict[str, str]]:
    lines = out.strip().splitlines()
    header = lines[2].split()
    return {line.split()[0]: dict(zip(header, line.split())) for line in lines[3:]}


def test_default_rounds_fit_one_batch_and_missing_torchvision_models(capsys, monkeypatch):
    """`--batch 1` alone failed on the default `--rounds 31 7`; mobilenet_v2_x0_5 and its alias
    have no torchvision builder (a traceback before): their torchvision columns are '-'."""
    monkeypatch.setattr(bench_deploy, "BIG_BATCH", 1)  # the default: 7 rounds from batch 1 up
    assert main([*TINY, "--batch", "1", "--models", "mobilenet_v2_x0_5",
                 "mobilenetv2_050"]) == 0
    out = capsys.readouterr().out
    assert "median of 7 interleaved rounds (batch 1;" in out
    assert out.splitlines()[1].startswith("legend: tv/X = torchvision's time / X's time")
    rows = _rows(out)
    assert list(rows) == ["mobilenet_v2_x0_5", "mobilenetv2_050"]
    assert rows["mobilenet_v2_x0_5"]["tv"] == "-" and rows["mobilenet_v2_x0_5"]["eager"] != "-"


def test_ratio_columns_are_torchvision_time_over_variant_time(capsys, monkeypatch):
    """With a stand-in torchvision builder: the tv/X cells equal the tv time over X's time."""
    monkeypatch.setattr(bench_deploy, "_torchvision_builder",
                        lambda name: lambda weights=None: create_model(name))
    assert main([*TINY, "--batch", "1", "--rounds", "3", "--models", "mobilenet_v2_x0_5"]) == 0
    row = _rows(capsys.readouterr().out)["mobilenet_v2_x0_5"]
    ms = {k: float(row[k]) for k in ("eager", "deploy", "unpacked", "tv", "tv_cl")}
    for col, num, den in [("tv/eager", "tv", "eager"), ("tv/deploy", "tv", "deploy"),
                          ("tv/unpacked", "tv", "unpacked"), ("tv_cl/deploy", "tv_cl", "deploy")]:
        assert float(row[col].rstrip("x")) == pytest.approx(ms[num] / ms[den], abs=0.02, rel=0.02)


@pytest.mark.parametrize("argv, message", [
    (["--models", "resnet5O"], "model 'resnet5O' is not known"),
    (["--device", "bogus"], "--device='bogus' is not usable"),
    (["--device", "meta"], "--device='meta' is not usable"),
    (["--batch", "1", "2", "--rounds", "1", "2", "3"], "--rounds=[1, 2, 3] is not allowed"),
])
def test_one_line_errors(capsys, argv, message):
    assert main([*TINY, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_one_line(capsys):
    assert main([*TINY, "--device", "cuda", "--models", "resnet18"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--device='cuda' is not usable" in err
