"""``python -m scaling.compound``: the numbers it prints, --json, --out, ranges, errors, grid."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys

import pytest

from scaling.compound import compound
from scaling.compound.grid import EVALUATORS, candidates, grid
from scaling.ir import NetworkSpec

ROOT = os.path.join(os.path.dirname(__file__), "..")
NUM = r"([0-9][0-9,]*\.?[0-9]*)"


def _md(v: float, divisor: int = 8) -> int:
    """make_divisible, written out independently of scaling.ir.rounding."""
    n = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return n + divisor if n < 0.9 * v else n


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scaling.compound", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def base_args(tmp_path_factory) -> list[str]:
    """The default base (the zoo's efficientnet_b0) if the zoo is there, else a spec file."""
    try:
        from scaling.zoo import get_spec

        get_spec("efficientnet_b0")
        return []
    except ImportError:
        from test_compound import design_b0

        path = tmp_path_factory.mktemp("spec") / "b0.json"
        path.write_text(design_b0().to_json())
        return ["--base", str(path)]


def _base(base_args: list[str]) -> NetworkSpec:
    if base_args:
        from scaling.ir import load_spec

        return load_spec(base_args[1])
    from scaling.zoo import get_spec

    return get_spec("efficientnet_b0")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def test_phi3_text_numbers(base_args):
    res = cli("--phi", "3", *base_args)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    a, b, g, prod = map(_num, re.search(
        rf"alpha = {NUM}, beta = {NUM}, gamma = {NUM}, alpha\*beta\^2\*gamma\^2 = {NUM}",
        out).groups())
    assert (a, b, g) == (1.2, 1.1, 1.15)
    assert prod == pytest.approx(1.2 * 1.1 ** 2 * 1.15 ** 2, rel=1e-5)
    d = _num(re.search(rf"d = alpha\^phi = {NUM}", out).group(1))
    w = _num(re.search(rf"w = beta\^phi = {NUM}", out).group(1))
    r, base_res, raw, rounded = map(_num, re.search(
        rf"r = gamma\^phi = {NUM}\s+resolution {NUM}\*r = {NUM} -> {NUM}", out).groups())
    assert d == pytest.approx(1.728, abs=1e-6) and w == pytest.approx(1.331, abs=1e-6)
    assert r == pytest.approx(1.520875, abs=1e-6)
    assert base_res == 224 and raw == pytest.approx(224 * 1.15 ** 3, abs=1e-3)
    assert rounded == math.floor(224 * 1.15 ** 3 + 0.5) == 341
    # per-stage table: channels make_divisible(c * 1.331), repeats ceil(n * 1.728)
    rows = re.findall(r"^(\d+)\s+(\w+)\s+(\d+)\s+(\d+)\s+(\d+) -> (\d+)\s+(\d+) -> (\d+)",
                      out, re.M)
    base = _base(base_args)
    assert len(rows) == len(base.stages)
    for i, ((si, block, k, s, c0, c1, n0, n1), st) in enumerate(zip(rows, base.stages)):
        assert int(si) == i
        assert (block, int(k), int(s), int(c0), int(n0)) == (
            st.block, st.kernel, st.stride, st.out_channels, st.repeats)
        assert int(c1) == _md(st.out_channels * 1.1 ** 3)
        assert int(n1) == math.ceil(st.repeats * 1.2 ** 3)
    head = re.search(r"^head\s+conv1x1\s+(\d+) -> (\d+)", out, re.M).groups()
    assert int(head[1]) == 4 * _md(320 * 1.1 ** 3)          # torchvision: 4 * last stage
    # params and MACs: the analytic counts of base and scaled, their ratio, the ideal ratio
    complexity = __import__("scaling.cost", fromlist=["complexity"]).complexity
    pb, mb = map(_num, re.search(rf"^base\s+{NUM}\s+{NUM}", out, re.M).groups())
    ps, ms = map(_num, re.search(rf"^scaled\s+{NUM}\s+{NUM}", out, re.M).groups())
    scaled = compound(base, 3)
    assert (pb, mb) == (complexity(base).params, complexity(base).macs)
    assert (ps, ms) == (complexity(scaled).params, complexity(scaled).macs)
    assert pb == 5288548 and mb == 385814752      # reference.csv, efficientnet_b0
    pr, mr = map(_num, re.search(rf"^ratio\s+{NUM}\s+{NUM}", out, re.M).groups())
    assert mr == pytest.approx(ms / mb, abs=1e-4) and pr == pytest.approx(ps / pb, abs=1e-4)
    ideal = _num(re.search(rf"ideal MAC ratio .* = {NUM}", out).group(1))
    assert ideal == pytest.approx((1.2 * 1.1 ** 2 * 1.15 ** 2) ** 3, abs=1e-4)
    # official rows side by side: B3 (phi=3) and the nearest in MACs
    assert "b3 (phi=3)" in out and "nearest in MACs" in out


def test_phi3_json_same_numbers(base_args):
    text = cli("--phi", "3", *base_args).stdout
    res = cli("--phi", "3", "--json", *base_args)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["d"] == pytest.approx(1.2 ** 3) and rep["w"] == pytest.approx(1.1 ** 3)
    assert rep["r"] == pytest.approx(1.15 ** 3)
    assert rep["resolution"]["rounded"] == 341
    assert f"d = alpha^phi = {rep['d']:.7g}" in text
    assert f"-> {rep['resolution']['rounded']} " in text
    assert f"{rep['macs']['scaled']:,}" in text and f"{rep['params']['scaled']:,}" in text
    assert [s["channels"] for s in rep["stages"]] == [
        [int(c) for c in m] for m in re.findall(r"^\d+\s+\w+\s+\d+\s+\d+\s+(\d+) -> (\d+)",
                                                text, re.M)]
    assert rep["unit"] == "MACs"
    off = rep["official"]
    assert off["nominal"]["name"] == "b3"
    m = rep["macs"]["scaled"]
    dist = abs(math.log(off["nearest"]["macs"] / m))
    assert dist <= abs(math.log(off["nominal"]["macs"] / m))


def test_phi_range_rows(base_args):
    res = cli("--phi", "0:7", *base_args)
    assert res.returncode == 0, res.stderr
    rows = [ln.split() for ln in res.stdout.splitlines()[1:]]
    assert [float(r[0]) for r in rows] == list(range(8))
    macs = [_num(r[7]) for r in rows]
    assert macs == sorted(macs) and len(set(macs)) == 8
    assert rows[0][-1] == "b0"
    reps = json.loads(cli("--phi", "0:1:0.5", "--json", *base_args).stdout)
    assert [r["phi"] for r in reps] == [0, 0.5, 1]


def test_phi_rows_of_another_family_have_no_empty_official_column(capsys):
    pytest.importorskip("torch")  # the zoo's resnet18
    from scaling.compound.cli import main

    assert main(["--base", "resnet18", "--phi", "0:1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "official" not in lines[0] and lines[0].split()[-1] == "ideal"
    assert all(len(ln.split()) == 10 for ln in lines[1:]) and len(lines) == 3


def test_out_writes_the_scaled_spec(base_args, tmp_path):
    path = tmp_path / "scaled.json"
    res = cli("--phi", "2", "--out", str(path), "--beta", "1.2", *base_args)
    assert res.returncode == 0, res.stderr
    spec = NetworkSpec.from_json(path.read_text())
    assert spec == compound(_base(base_args), 2, beta=1.2)
    assert not [p for p in os.listdir(tmp_path) if p != "scaled.json"]   # no temp file left


@pytest.mark.parametrize("args, match", [
    (["--phi", "-1"], "phi"),
    (["--phi", "abc"], "not a number"),
    (["--phi", "3", "--alpha", "0.9"], "alpha"),
    (["--phi", "3", "--gamma", "x"], "gamma"),
    (["--phi", "3", "--base", "no_such_model"], "no_such_model"),
    (["--phi", "3", "--base", "/no/such/spec.json"], "no such spec file"),
    (["--phi", "3", "--divisor", "0"], "divisor"),
    (["--phi", "1e9"], "too large"),
    (["--phi", "60"], "blocks"),
    (["--phi", "0:3", "--out", "x.json"], "--out"),
    (["--phi"], "phi"),
    ([], "phi"),
    (["grid", "--target", "0.5", "--tol", "0.1"], "unreachable"),
    (["grid", "--evaluate", "nope"], "nope"),
])
def test_bad_input_one_line_exit_2(args, match):
    res = cli(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_cli_path_is_torch_free(base_args):
    code = ("import sys; from scaling.compound.cli import main; "
            f"rc = main(['--phi', '3', *{base_args!r}]); "
            "heavy = [m for m in ('torch', 'pandas', 'matplotlib') if m in sys.modules]; "
            "assert rc == 0 and not heavy, heavy")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr


# -- grid ----------------------------------------------------------------------------------------
def test_grid_candidates_respect_the_constraint():
    cands = candidates(2.0, 0.1, 0.05)
    assert cands and all(min(c) >= 1 for c in cands)
    assert all(abs(a * b * b * g * g - 2) <= 0.1 + 1e-9 for a, b, g in cands)
    assert (1.2, 1.1, 1.15) in cands                        # the paper's choice is on the grid
    # exhaustive: every grid point within the tolerance is a candidate
    pts = [round(1 + 0.05 * i, 10) for i in range(30)]
    want = {(a, b, g) for a in pts for b in pts for g in pts
            if abs(a * b * b * g * g - 2) <= 0.1 + 1e-12}
    assert set(cands) == want


def test_grid_macs_scores(base_args):
    rows = grid(_base(base_args), phi=1, target=2, tol=0.1, step=0.1)
    assert {"macs", "params", "mac_ratio", "score"} <= set(rows[0])
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    best = rows[0]
    assert best["score"] == pytest.approx(-abs(math.log(best["mac_ratio"] / 2)))
    assert {"macs", "proxy"} <= set(EVALUATORS)


def test_grid_cli_csv(base_args, tmp_path):
    path = tmp_path / "grid.csv"
    res = cli("grid", *base_args, "--phi", "1", "--step", "0.1", "--mac-tol", "none",
              "--out", str(path))
    assert res.returncode == 0, res.stderr
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(candidates(2.0, 0.1, 0.1))
    assert all(abs(float(r["product"]) - 2) <= 0.1 + 1e-9 for r in rows)
    assert f"{len(rows)} candidates" in res.stdout
    res = cli("grid", *base_args, "--phi", "1", "--step", "0.1", "--out", str(path))
    assert res.returncode == 0, res.stderr
    with open(path, encoding="utf-8") as fh:
        held = list(csv.DictReader(fh))
    assert held and all(abs(float(r["mac_ratio"]) / 2 - 1) <= 0.1 + 1e-9 for r in held)
    bad = cli("grid", *base_args, "--mac-tol", "2")
    assert bad.returncode == 2 and "--mac-tol=2 is not allowed" in bad.stderr


@pytest.mark.data
@pytest.mark.slow
def test_grid_proxy_evaluator_trains(tmp_path):
    """One candidate (target 1: alpha = beta = gamma = 1), a tiny net, a few hundred images."""
    from scaling.data import DatasetNotFoundError
    from scaling.ir import StageSpec, StemSpec

    base = NetworkSpec(stages=(StageSpec("mbconv", 1, 8, stride=2, expansion=2.0),),
                       stem=StemSpec(channels=(8,)), resolution=28, name="tiny")
    try:
        rows = grid(base, phi=1, target=1, tol=0, step=0.5, evaluate="proxy",
                    dataset="fashion-mnist", subset=256, val_size=256, epochs=1, seed=0,
                    device="cpu")
    except DatasetNotFoundError:
        pytest.skip("Fashion-MNIST is not installed")
    assert len(rows) == 1 and 0 <= rows[0]["val_top1"] <= 1
    assert rows[0]["score"] == rows[0]["val_top1"]
