"""The profile CLI (python -m scaling.profile) and the complexity benchmark's command line."""

from __future__ import annotations

import json

import pytest

from scaling.bench import complexity as bench_complexity
from scaling.cost import complexity, profile
from scaling.ir import HeadSpec, NetworkSpec, SESpec, StageSpec, StemSpec


@pytest.fixture()
def spec_file(tmp_path):
    spec = NetworkSpec(stages=(StageSpec("mbconv", 2, 16, stride=2, expansion=3.0, se=SESpec()),
                               StageSpec("bottleneck", 1, 24, stride=2, expansion=0.5)),
                       stem=StemSpec(channels=(8,)), head=HeadSpec(channels=32),
                       resolution=40, num_classes=10, name="tiny")
    path = tmp_path / "tiny.json"
    path.write_text(spec.to_json())
    return spec, str(path)


def test_table_matches_complexity(spec_file, capsys) -> None:
    spec, path = spec_file
    assert profile.main([path, "--res", "33"]) == 0
    out = capsys.readouterr().out
    c = complexity(spec, 33)
    assert "tiny at 33x33" in out and "MACs" in out
    for row in c.rows:
        line = next(ln for ln in out.splitlines() if ln.startswith(row.name + " "))
        assert f"{row.macs:,}" in line and f"{row.params:,}" in line
        assert "x".join(map(str, row.shape)) in line
    total = next(ln for ln in out.splitlines() if ln.startswith("total"))
    assert f"{c.macs:,}" in total and f"{c.activations:,}" in total


def test_json_trace_and_latency(spec_file, capsys) -> None:
    spec, path = spec_file
    assert profile.main([path, "--json", "--trace", "--latency", "--repeats", "2",
                         "--threads", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    c = complexity(spec)
    assert data["complexity"] == json.loads(json.dumps(c.to_dict()))
    trace = data["trace"]
    assert trace["traced"] == {"params": c.params, "macs": c.macs, "activations": c.activations}
    assert set(trace["analytic_minus_traced"].values()) == {0}
    extra = trace["fvcore_extra_operators"]
    assert "batch_norm" in extra and "adaptive_avg_pool2d" in extra
    assert trace["fvcore_total"] - c.macs == sum(extra.values()) == trace["fvcore_minus_macs"]
    assert data["latency"]["median_ms"] > 0


def test_zoo_name(capsys) -> None:
    zoo = __import__("scaling.zoo", fromlist=["list_models"])
    name = "resnet18" if "resnet18" in zoo.list_models() else zoo.list_models()[0]
    assert profile.main([name]) == 0
    assert f"{complexity(zoo.get_spec(name)).macs:,}" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["no_such_model"], ["{dir}/missing.json"],
                                  ["{spec}", "--res", "1"], ["{spec}", "--res", "x"],
                                  ["{spec}", "--latency", "--device", "nonsense"],
                                  ["{spec}", "--latency", "--batch", "0"], []])
def test_bad_input_one_line_exit_2(argv, spec_file, tmp_path, capsys) -> None:
    _, path = spec_file
    argv = [a.format(dir=tmp_path, spec=path) for a in argv]
    try:
        rc = profile.main(argv)
    except SystemExit as exc:  # argparse
        rc = exc.code
    captured = capsys.readouterr()
    assert rc == 2
    assert len(captured.err.strip().splitlines()) == 1 and "error" in captured.err


def test_bench_runs_and_rejects_bad_input(capsys) -> None:
    zoo = __import__("scaling.zoo", fromlist=["list_models"])
    name = "shufflenet_v2_x0_5" if "shufflenet_v2_x0_5" in zoo.list_models() else \
        zoo.list_models()[0]
    assert bench_complexity.main(["--models", name, "--res", "64"]) == 0
    out = capsys.readouterr().out
    assert name in out and "median ratio" in out
    assert bench_complexity.main(["--models", name, "--res", "big"]) == 2
    assert bench_complexity.main(["--models", "no_such_model"]) == 2
