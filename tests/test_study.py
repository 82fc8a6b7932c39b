"""The study of issue 16: MAC matching of the realised models (scaling.compound.match), the grid
held to its FLOPs constraint, and the tiny preset (``python -m scaling.study run tiny``)
reproducing itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_of_repository

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from experiments import protocol_length  # noqa: E402
from scaling.compound import compound, scale  # noqa: E402
from scaling.compound.grid import candidates  # noqa: E402
from scaling.compound.match import (  # noqa: E402
    fit_compound,
    fit_depth,
    fit_knob,
    fit_resolution,
    fit_width,
    macs_of,
    matched_candidates,
)
from scaling.study import plan as study_plan  # noqa: E402
from scaling.study import protocol as common  # noqa: E402
from scaling.study import runner as run_study  # noqa: E402
from scaling.study.config import PRESETS  # noqa: E402

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
TIMING = {"train_seconds", "wall_seconds"}


@pytest.mark.parametrize("family", ["ResNet-18", "MobileNetV2"])
def test_width_fit_lands_on_the_issues_target_and_reports_the_width_it_used(family):
    """The quick study's first point: target 2.85M; ResNet-18 landed at 4.43M and MobileNetV2 at
    3.67M because the fitter rounded the width it had bisected to 4 decimals."""
    root = study_plan.root_spec(family)
    fit = fit_width(root, 2_850_000)
    assert fit.within(0.05), (family, fit.knob, fit.divisor, fit.macs)
    rebuilt = scale(root, width=fit.knob, divisor=fit.divisor, name=fit.spec.name)
    assert rebuilt == fit.spec and macs_of(rebuilt) == fit.macs


def test_experiments_fit_width_returns_the_multiplier_that_built_the_spec():
    make = study_plan.root_spec("ResNet-18")

    def at(w):
        return scale(make, width=w)

    for target in (2_000_000, 2_850_000, 5_000_000):
        w, spec = common.fit_width(at, target)
        assert at(w) == spec


def test_fit_knob_picks_the_closer_side_of_a_jump():
    root = study_plan.root_spec("MobileNetV2")
    x, spec, macs = fit_knob(lambda w: scale(root, width=w), 3_000_000, 0.05, 4.0)
    below = macs_of(scale(root, width=x * 0.98))
    above = macs_of(scale(root, width=x * 1.02))
    assert abs(macs - 3e6) <= max(abs(below - 3e6), abs(above - 3e6))


def test_every_fitter_lands_within_tolerance_or_says_how_close_it_got():
    base = fit_width(study_plan.root_spec("MobileNetV2"), 1_000_000).spec
    m0 = macs_of(base)
    for ratio in (2, 4):
        assert fit_depth(base, ratio * m0).within(0.05)
        assert fit_resolution(base, ratio * m0, tol=0.10).within(0.10)
        assert fit_compound(base, ratio.bit_length() - 1, 1.2, 1.1, 1.15,
                            ratio=ratio).within(0.05)
    deeper = fit_depth(base, 2 * m0)
    assert all(s.repeats >= b.repeats for s, b in zip(deeper.spec.stages, base.stages))
    assert deeper.spec.resolution == base.resolution
    with pytest.raises(ValueError, match=r"lands within \+-0.1%.*closest"):
        fit_resolution(base, 1.003 * m0, tol=0.001)  # no integer resolution is that close
    with pytest.raises(ValueError, match="target"):
        fit_width(base, -1)


def test_grid_keeps_only_candidates_at_twice_the_macs():
    """At phi = 1 the quick study's winner (1.0, 1.2, 1.2) cost 3.7x the base, not 2x: the rule
    alone overshoots at narrow widths. The matched grid refits or drops such candidates."""
    base, _ = common.fit_baseline(common.stand_in_baseline(), 2_000_000)
    m0 = macs_of(base)
    raw = [macs_of(compound(base, 1.0, a, b, g)) / m0 for a, b, g in candidates(2.0, 0.15, 0.2)]
    assert max(raw) > 2.2  # the problem the issue reports
    rows = matched_candidates(base, candidates(2.0, 0.15, 0.2), mac_tol=0.10)
    assert rows, "no candidate survived"
    for r in rows:
        assert abs(r["mac_ratio"] / 2 - 1) <= 0.10, r
        assert macs_of(r["spec"]) == r["macs"]
    assert any(r["refit"] for r in rows)
    as_ruled = matched_candidates(base, candidates(2.0, 0.15, 0.2), mac_tol=0.10, refit=False)
    assert len(as_ruled) < len(rows)
    assert all(not r["refit"] and abs(r["mac_ratio"] / 2 - 1) <= 0.10 for r in as_ruled)


def test_family_plan_points_are_within_their_tolerance():
    preset = PRESETS["medium"]
    root = common.stand_in_baseline()
    base = fit_width(root, preset.base_macs)
    plan = study_plan.family_plan(base, (1.2, 1.1, 1.15), preset)
    assert len(plan) == preset.points * (1 + len(preset.families))
    for e in plan:
        assert abs(macs_of(e["spec"]) / e["target_macs"] - 1) <= preset.mac_tol + 1e-9, e["family"]
        assert e["within_tol"] and (e["spec"].in_channels, e["spec"].num_classes) == (1, 10)
    assert {e["family"] for e in plan} >= {"searched", "MobileNetV2", "ResNet-18",
                                           "ShuffleNetV2", "MobileNetV3-S", "MobileNetV3-L"}


def test_single_dimension_rows_at_a_family_point_share_its_spec():
    """The single-dimension targets are the study's MAC points (ratio x base_macs, not x the
    realised base): the searched net's compound row and MobileNetV2's width row are the family
    table's specs, so their runs are trained once."""
    import dataclasses

    preset = dataclasses.replace(PRESETS["full"], single_ratios=(2.0, 4.0))
    root = common.stand_in_baseline()
    base = fit_width(root, preset.base_macs)
    assert base.macs != preset.base_macs  # the realised base point is off its target
    winner = (1.2, 1.1, 1.15)
    family = {(e["family"], e["ratio"]): study_plan.spec_key(e["spec"])
              for e in study_plan.family_plan(base, winner, preset)}
    single = study_plan.single_plan(root, base, winner, preset)
    shared = {(e["family"], e["method"], e["ratio"]) for e in single
              if family.get((e["family"], e["ratio"])) == study_plan.spec_key(e["spec"])}
    assert shared >= {("searched", "compound", 2.0), ("searched", "compound", 4.0),
                      ("MobileNetV2", "width", 2.0), ("MobileNetV2", "width", 4.0)}
    for e in single:
        assert e["target_macs"] == round(e["ratio"] * preset.base_macs), e


def test_a_width_only_winner_scales_the_searched_net_as_the_width_rows_do():
    """A grid winner (1, beta, 1) fits the searched net's width at each point, as the hand
    families' width rule does: its family points are the single-dimension width rows (one set
    of runs), at the MAC points within tolerance."""
    preset = PRESETS["medium"]
    root = common.stand_in_baseline()
    base = fit_width(root, preset.base_macs)
    winner = (1, 1.4, 1)
    family = {e["ratio"]: e for e in study_plan.family_plan(base, winner, preset, root=root)
              if e["family"] == "searched"}
    single = {e["method"]: study_plan.spec_key(e["spec"])
              for e in study_plan.single_plan(root, base, winner, preset)
              if e["family"] == "searched" and e["ratio"] == 2.0}
    assert single["width"] == single["compound"] == study_plan.spec_key(family[2.0]["spec"])
    for ratio, e in family.items():
        assert abs(e["spec"].resolution - base.spec.resolution) == 0, ratio
        assert abs(macs_of(e["spec"]) / e["target_macs"] - 1) <= preset.mac_tol + 1e-9, ratio
    compound = {e["ratio"]: study_plan.spec_key(e["spec"])
                for e in study_plan.family_plan(base, (1, 1, 1.4), preset, root=root)
                if e["family"] == "searched"}
    assert compound[2.0] != single["width"]  # another rule is compound scaling, as before


@pytest.mark.slow
@pytest.mark.data
@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason=f"Fashion-MNIST absent from "
                    f"{FASHION_DIR} (apt-get install dataset-fashion-mnist)")
def test_tiny_study_reproduces_its_csvs_and_resumes_without_retraining(tmp_path):
    """The README's command on a fresh copy of the repository (the README test leaves it to
    this one), then the same study in this process: equal tables, and a resume trains nothing."""
    from scaling.study.cli import main as study_main

    repo = copy_of_repository(tmp_path / "repo")
    env = {**os.environ, "PYTHONPATH": str(repo), "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-m", "scaling.study", "run", "tiny"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout.splitlines()
    a = repo / "results" / "tiny"  # the README's command, with its defaults
    run_study.run("tiny", tmp_path / "b", device="cpu", threads=1, log=lambda line: None)
    tables = {name: {t: pd.read_csv(folder / f"{t}.csv") for t in ("grid", "family", "single")}
              for name, folder in (("a", a), ("b", tmp_path / "b"))}
    for t, df in tables["a"].items():
        cols = [c for c in df.columns if c not in TIMING]
        pd.testing.assert_frame_equal(df[cols], tables["b"][t][cols])
    fam = tables["a"]["family"]
    assert (fam["mac_error"].abs() <= fam["mac_tol"] + 1e-9).all()
    assert fam["test_acc"].between(0, 1).all()
    for t in ("grid", "family", "single"):
        assert (a / f"{t}.provenance.json").is_file()
    readme = (a / "README.md").read_text()
    assert "no estimate" in readme and "cannot tell" in readme  # one seed: no noise to test
    assert "+-" not in readme and "1 epochs" not in readme  # one seed has no std to show
    search = next(line for line in said if line.startswith("search: best trial"))
    assert "None" not in search and "synflow" in search and "scored" in search, search
    runs = (a / "runs.csv").read_text()
    stale = pd.read_csv(a / "runs.csv").iloc[:1].assign(key="0ld-s0-0ld")
    with open(a / "runs.csv", "a") as fh:  # a run of a spec the plan no longer has
        fh.write(stale.to_csv(index=False, header=False))
    logged: list[str] = []
    run_study.run("tiny", a, device="cpu", threads=1, log=logged.append)
    assert not any(line.startswith("training") for line in logged), logged
    assert (a / "runs.csv").read_text() == runs
    assert any("dropped 1 runs" in line for line in logged), logged
    log = json.loads((a / "runs.provenance.json").read_text())["invocations"]
    assert log[0]["search"] == "ran" and log[0]["trained_runs"] > 0
    assert (log[-1]["trained_runs"], log[-1]["dropped_runs"], log[-1]["search"]) == (0, 1, "reused")
    # report DIR rewrites the report from plan.json and runs.csv, touching neither
    (a / "README.md").unlink()
    before = {f: (a / f).read_text()
              for f in ("runs.csv", "runs.provenance.json", "plan.json", "family.csv")}
    assert study_main(["report", str(a)]) == 0
    assert (a / "README.md").read_text() == readme
    assert before == {f: (a / f).read_text() for f in before}
    assert json.loads((a / "family.provenance.json").read_text())["report_only"]
    with pytest.raises(ValueError, match="holds no study"):
        run_study.report(tmp_path / "empty")
    import shutil

    shutil.copytree(a, tmp_path / "c")
    runs_c = pd.read_csv(tmp_path / "c" / "runs.csv")
    runs_c.iloc[:-1].to_csv(tmp_path / "c" / "runs.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks .* seeds \[0\] of plan.json .* resume"):
        run_study.report(tmp_path / "c")
    # the protocol-length check trains the plan's end points of a family per epoch count
    assert protocol_length.main(["--preset", "tiny", "--plan", str(a / "plan.json"),
                                 "--families", "ResNet-18", "--epochs", "1", "--seeds", "0",
                                 "1", "--jobs", "1", "--batch-size", "32", "--drop-path", "0.1",
                                 "--subset", "300", "--out", str(tmp_path / "len")]) == 0
    rows = pd.read_csv(tmp_path / "len" / "tiny.csv")
    assert len(rows) == 4 and sorted(rows.ratio.unique()) == [1.0, 2.0]
    assert set(rows.batch_size) == {32} and set(rows.drop_path) == {0.1}
    assert set(rows.subset) == {300} and set(rows.zero_init_last) == {True}
    assert (tmp_path / "len" / "tiny.provenance.json").is_file()
    assert "ResNet-18" in (tmp_path / "len" / "tiny.md").read_text()


def test_no_family_trains_with_stochastic_depth():
    """B0's reference drop-path 0.2 is a long-recipe regulariser; the study trains every family
    without it, and B0 is planned twice: by the paper's rule and by width."""
    for family in study_plan.ROOTS:
        spec = study_plan.root_spec(family)
        assert spec.drop_path_rate == 0.0, family
        assert spec.resolution == 28 and spec.in_channels == 1 and spec.num_classes == 10
    assert study_plan.root_spec("EfficientNet-B0") == study_plan.root_spec(
        "EfficientNet-B0 (width)")
    assert "EfficientNet-B0 (width)" not in study_plan.COMPOUND_FAMILIES


def test_a_training_search_trains_its_trials_as_the_study_trains_its_models():
    """The searched net is chosen under the initialisation that the study trains it with."""
    from scaling.search.study import SearchConfig

    for name, preset in PRESETS.items():
        search = SearchConfig(budget=preset.base_macs, **preset.search)
        if search.evaluator == "train":
            assert search.zero_init_last == preset.protocol.zero_init_last, name
        else:  # zero-cost proxies of untrained nets: a zero branch norm would flatten them
            assert not search.zero_init_last, name


def test_compound_fit_lands_where_a_tied_stem_node_jumps_8_to_16():
    """The medium study's searched net (issue 16): a stride-1 stem and a depthwise stage tied to
    it, both 8 channels with mid_divisor 8, before 8-channel MBConv stages. At phi = 2 with
    (1.0, 1.2, 1.2) per-layer rounding jumps 8 -> 16 on that node, past 4x, at every resolution
    within 4 px of the rule's; error-diffused rounding lands within 5%."""
    from scaling.ir import NetworkSpec, SESpec, StageSpec, StemSpec

    se = SESpec(ratio=0.25)
    rows = [("ds", 8, 5, 1, 1.0, None), ("mbconv", 8, 3, 2, 4.0, se),
            ("mbconv", 8, 5, 2, 3.0, se), ("fused_mbconv", 8, 5, 2, 3.0, se),
            ("fused_mbconv", 8, 5, 1, 4.0, se), ("fused_mbconv", 16, 5, 2, 4.0, None),
            ("mbconv", 32, 5, 1, 4.0, None)]
    base = NetworkSpec(stages=tuple(StageSpec(b, 1, c, kernel=k, stride=st, expansion=e, se=x,
                                              mid_divisor=8) for b, c, k, st, e, x in rows),
                       stem=StemSpec(channels=(8,), strides=(1,)), resolution=28,
                       in_channels=1, num_classes=10, name="narrow searched")
    target = 4 * macs_of(base)
    for size in range(36, 45):  # the rule's 40 px +- 4: per-layer rounding misses
        each = fit_width(base, target, image_size=size, tol=None, divisors=(8, 4, 2, 1))
        assert abs(each.ratio - 1) > 0.05, (size, each.ratio)
    fit = fit_compound(base, 2, 1.0, 1.2, 1.2, ratio=4.0, tol=0.05)
    assert fit.within(0.05) and fit.rounding == "diffuse", fit
    assert fit.spec.resolution == 40 and macs_of(fit.spec) == fit.macs
    closest = fit_compound(base, 2, 1.0, 1.2, 1.2, ratio=4.0, tol=None)
    assert abs(closest.ratio - 1) <= abs(fit.ratio - 1)


def test_diffused_channel_rounding_follows_the_width_smoothly():
    """Per-layer rounding moves all equal layers at once (8 -> 9 everywhere); error diffusion
    keeps the channel total within one channel of width x the base total."""
    from scaling.ir import NetworkSpec, StageSpec, StemSpec

    narrow = NetworkSpec(stages=tuple(StageSpec("fused_mbconv", 1, 8, stride=s, expansion=2.0)
                                      for s in (1, 2, 1, 2, 1, 2)),
                         stem=StemSpec(channels=(8,)), resolution=28, in_channels=1,
                         num_classes=10, name="narrow")
    total = sum(s.out_channels for s in narrow.stages)
    widths = [1 + i / 50 for i in range(16)]
    each, diffused = set(), set()
    for w in widths:
        d = scale(narrow, width=w, divisor=1, channel_rounding="diffuse")
        got = d.stem.out_channels + sum(s.out_channels for s in d.stages)
        assert abs(got - (total + 8) * w) <= 1 + 1e-9, (w, got)
        each.add(macs_of(scale(narrow, width=w, divisor=1)))
        diffused.add(macs_of(d))
    assert len(diffused) > len(each)
    assert scale(narrow, width=1.0, divisor=1, channel_rounding="diffuse") == scale(
        narrow, width=1.0, divisor=1)
    with pytest.raises(ValueError, match="channel_rounding='x' is not allowed"):
        scale(narrow, width=1.1, channel_rounding="x")


def test_train_all_groups_a_specs_missing_seeds_into_one_task(tmp_path, monkeypatch):
    """On CUDA a spec's seeds run in one process (they share its cuDNN plans): one task per
    spec, only the seeds not yet in runs.csv, a spec shared by two experiments trained once."""
    calls: list[tuple[str, list[int]]] = []

    def fake(spec, proto, seeds, device, threads):
        calls.append((spec.name, list(seeds)))
        return [{"val_acc": 0.5 + s / 10, "test_acc": 0.4, "status": "ok", "train_seconds": 1.0,
                 "wall_seconds": 1.0, "device": device} for s in seeds]

    monkeypatch.setattr(run_study, "train_seeds", fake)
    preset = PRESETS["tiny"]
    a, b = (study_plan.root_spec(f) for f in ("MobileNetV2", "ResNet-18"))
    entries = [{"spec": a}, {"spec": b}, {"spec": a.replace(name="the same net")}]
    proto = preset.protocol.key()
    for grouped, expect in ((True, [[0, 2], [0, 1, 2]]), (False, [[0], [2], [0], [1], [2]])):
        calls.clear()
        store = run_study.RunStore(tmp_path / f"runs-{grouped}.csv")
        store.add({"key": run_study.RunStore.key(a, 1, proto), "spec_key": "x", "seed": 1})
        run_study.train_all(entries, (0, 1, 2), preset, store, "cpu", 1, jobs=1,
                            log=lambda _: None, group_seeds=grouped)
        assert sorted(seeds for _, seeds in calls) == sorted(expect)
        assert len(store.rows) == 6
        assert store.get(b, 2, proto)["val_acc"] == pytest.approx(0.7)


def test_an_invocation_is_logged_when_it_starts_and_completed_when_it_ends(tmp_path):
    """A study stopped mid-way (a device call's time limit) keeps the record of the invocation
    that trained its rows, marked unfinished; a finished one replaces its own start record."""
    from scaling.study.provenance import Provenance

    prov = Provenance(seeds=(0,), device="cpu", preset="tiny")
    stopped = run_study.log_invocation(tmp_path, prov, None, 0)
    started = run_study.log_invocation(tmp_path, prov, None, 5, search="reused")
    assert run_study.log_invocation(tmp_path, prov, 7, 5, dropped=1, search="reused",
                                    index=started) == started == stopped + 1
    log = json.loads((tmp_path / "runs.provenance.json").read_text())["invocations"]
    assert [(e["finished"], e["trained_runs"], e["reused_runs"]) for e in log] == [
        (False, None, 0), (True, 7, 5)]


def test_plan_only_says_what_it_needs(tmp_path):
    """``plan_only`` trains nothing: without the search's result it is one line naming the
    file; without the grid's runs (a fresh clone) it prints the grid it would train, says what
    is pending and what to run, and writes no plan."""
    with pytest.raises(ValueError, match="search/baseline.json"):
        run_study.run("tiny", tmp_path, device="cpu", plan_only=True)
    (tmp_path / "search").mkdir()
    spec = study_plan.root_spec("MobileNetV2").to_dict()
    (tmp_path / "search" / "baseline.json").write_text(json.dumps({"spec": spec}))
    key = PRESETS["tiny"].protocol.key()
    lines: list[str] = []
    summary = run_study.run("tiny", tmp_path, device="cpu", plan_only=True, log=lines.append)
    assert summary["plan"] is None and summary["pending"] > 0
    grid = [ln for ln in lines if ln.startswith("  * alpha=")]
    assert len(grid) == summary["pending"] and any(f"protocol {key}" in ln for ln in lines)
    assert "python -m scaling.study run tiny" in lines[-1]
    assert not (tmp_path / "plan.json").exists()
    assert not (tmp_path / "runs.provenance.json").exists()  # a plan-only call logs no training
    assert not (tmp_path / "study.yaml").exists()


@pytest.mark.parametrize("preset", ["medium", "full"])
def test_every_committed_plan_model_finds_its_runs(preset):
    """The committed runs stay reachable: a field added to the IR later must not change a
    spec's key (StageSpec.expand once did, and a rerun would have retrained the whole study)."""
    from scaling.ir import NetworkSpec

    folder = ROOT / "results" / preset
    plan = json.loads((folder / "plan.json").read_text())
    runs = pd.read_csv(folder / "runs.csv", dtype={"spec_key": str})
    stored = set(zip(runs.spec_key, runs.seed, runs.protocol))
    seeds = plan["protocol"]["seeds"]
    lost = [(m["spec"]["name"], seed) for m in plan["models"]
            for seed in (seeds[:1] if m["experiment"] == "grid" else seeds)
            if (study_plan.spec_key(NetworkSpec.from_dict(m["spec"])), seed,
                plan["protocol"]["key"]) not in stored]
    assert lost == []
