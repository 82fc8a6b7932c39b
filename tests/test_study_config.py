"""A study as one YAML config (scaling.study.config) and its CLI, ``python -m scaling.study``:
the presets keep the committed studies' protocol keys, bad keys are one line, and one config
runs on Fashion-MNIST, a CIFAR-10 pickle folder and an ImageFolder tree alike."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.study import config as study_config
from scaling.study.cli import main

ROOT = Path(__file__).resolve().parent.parent
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
MICRO = """\
name: micro
dataset: {dataset}
protocol: {{val_size: 8, subset: 32, epochs: 1, batch_size: 16, lr: 0.05, test_size: 16}}
seeds: [0]
base_macs: 1M
points: 1
families:
  - {{name: MobileNetV2, model: mobilenet_v2, options: {{small_input: true}}}}
single: {{families: [searched], ratios: [2.0]}}
grid: {{step: 0.4, tol: 0.3}}
jobs: 1
search: {{evaluator: zero-cost, trials: 1, startup_trials: 1, subset: 32, val_size: 8}}
"""


def write_micro(folder: Path, dataset: str) -> Path:
    path = folder / "study.yaml"
    path.write_text(MICRO.format(dataset=dataset))
    return path


def make_image_folder(root: Path, per_class: int = 16) -> Path:
    """3 classes of 32x32 RGB PNGs (each class its own brightness), train/ and val/."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 6)):
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = (rng.integers(0, 60, (32, 32, 3)) + 80 * c).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def make_cifar_folder(root: Path, per_batch: int = 10) -> Path:
    """The python-pickle layout of CIFAR-10: data_batch_1..5, test_batch, batches.meta."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch).tolist()
        data = (rng.integers(0, 50, (per_batch, 3072)) + np.array(labels)[:, None] * 20)
        batch = {b"batch_label": name.encode(), b"labels": labels,
                 b"data": data.astype(np.uint8), b"filenames": [b"x.png"] * per_batch}
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh, protocol=2)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"c%d" % i for i in range(10)],
                     b"num_cases_per_batch": per_batch, b"num_vis": 3072}, fh, protocol=2)
    return root


def test_presets_keep_the_protocol_keys_of_their_committed_runs():
    assert set(study_config.preset_names()) >= {"tiny", "medium", "full"}
    for name in ("medium", "full"):
        runs = ROOT / "results" / name / "runs.csv"
        if runs.is_file():
            assert set(pd.read_csv(runs).protocol) == {study_config.PRESETS[name].protocol.key()}
    medium = study_config.PRESETS["medium"]
    assert medium.rules == {"EfficientNet-B0": (1.2, 1.1, 1.15)}
    assert "EfficientNet-B0 (width)" in medium.families and medium.jobs == 2


def _search_config(preset, tmp_path, monkeypatch):
    """The SearchConfig that the study's runner hands to Optuna for ``preset`` (stopped there)."""
    from scaling.search import study as search_study
    from scaling.study import runner

    seen = []

    def stop(cfg):
        seen.append(cfg)
        raise KeyboardInterrupt

    monkeypatch.setattr(search_study, "run_search", stop)
    with pytest.raises(KeyboardInterrupt):
        runner.search_stage(preset, tmp_path, "cpu", print)
    (cfg,) = seen
    return cfg


def test_the_medium_search_runs_with_its_presets_settings(tmp_path, monkeypatch):
    """The runner hands the preset's search to Optuna as the config gives it, re-evaluation
    included (the old runner set reevaluate=0 unless a preset named it)."""
    medium = study_config.PRESETS["medium"]
    cfg = _search_config(medium, tmp_path, monkeypatch)
    assert (cfg.reevaluate, cfg.reevaluate_seeds, cfg.trials, cfg.pruner) == (3, 2, 100, "sha")
    assert (cfg.pick_margin, cfg.evals_per_epoch) == (1.0, "auto")
    assert medium.protocol.seeds == (0, 1)
    assert (medium.grid_confirm, medium.grid_prefer, medium.grid_margin) == (1, "width", 1.0)
    assert (medium.single_families, medium.single_ratios) == (("searched",), (2.0,))
    assert cfg.objective == "window" and tuple(cfg.window) == (0.9, 1.0)
    assert tuple(cfg.enqueue) == ("mobilenet_v2", "efficientnet_b0")
    assert (cfg.subset, cfg.epochs, cfg.budget) == (20_000, 2.0, medium.base_macs)


def test_the_full_search_is_the_medium_method_at_the_full_protocol(tmp_path, monkeypatch):
    """Issue 29: the full preset's search trains its 200 trials by the full study's protocol,
    with the medium search's objective, pruner, enqueued families and pick."""
    full = study_config.PRESETS["full"]
    cfg = _search_config(full, tmp_path, monkeypatch)
    proto = full.protocol
    assert cfg.trials >= 200 and (cfg.objective, cfg.pruner) == ("window", "sha")
    assert (cfg.subset, cfg.val_size, cfg.epochs, cfg.batch_size, cfg.lr) == (
        proto.subset, proto.val_size, proto.epochs, proto.batch_size, proto.lr)
    assert cfg.zero_init_last and tuple(cfg.enqueue) == ("mobilenet_v2", "efficientnet_b0")
    assert (cfg.reevaluate, cfg.reevaluate_seeds, cfg.pick_margin) == (3, 3, 1.0)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["search"].update(trails=3), "search.trails is not a known key"),
    (lambda c: c.update(point=2), "config.point is not a known key"),
    (lambda c: c["protocol"].update(epochs=-1), "epochs"),
    (lambda c: c.update(dataset={"name": "imagenet"}), "dataset='imagenet' is not allowed"),
    (lambda c: c.update(dataset={"name": "imagefolder"}), "dataset.num_classes is missing"),
    (lambda c: c["families"].append({"model": "vgg99"}), "vgg99"),
    (lambda c: c["families"].append({"name": "searched", "model": "resnet18"}), "searched"),
    (lambda c: c.update(seeds=[]), "seeds=[] is not allowed"),
    (lambda c: c["grid"].update(prefer="compound"), "grid.prefer='compound' is not allowed"),
    (lambda c: c["grid"].update(margin=-1), "grid.margin=-1 is not allowed"),
])
def test_a_bad_config_is_one_line_naming_the_key(tmp_path, edit, message, capsys):
    import yaml

    raw = yaml.safe_load((study_config.PRESET_DIR / "tiny.yaml").read_text())
    edit(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=re.escape(message)):
        study_config.load_config(path)
    assert main(["plan", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m scaling.study: error:") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_plan_counts_the_runs_and_estimates_their_time_without_training(tmp_path, capsys):
    assert main(["plan", "tiny", "--out", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "search: to run, 3 trials" in out and "stand-in" in out
    runs = int(out.split("to train: ")[1].split()[0])
    assert runs > 0 and "on cpu with 1 job(s)" in out
    assert list(tmp_path.iterdir()) == []  # a plan writes nothing before the search has run
    assert main(["run", "no-such-preset"]) == 2
    assert "neither a preset" in capsys.readouterr().err


def test_help_imports_no_torch():
    """``python -m scaling.study --help`` loads the engine lazily (measured: README)."""
    code = ("import sys; from scaling.study.cli import main; code = main(['--help']); "
            "assert 'torch' not in sys.modules and 'pandas' not in sys.modules; sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert "run" in done.stdout and "report" in done.stdout and "plan" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["imagefolder", "cifar10", "fashion-mnist"])
def test_one_config_runs_on_every_dataset_and_its_report_is_rewritten(tmp_path, kind, capsys):
    if kind == "imagefolder":
        make_image_folder(tmp_path / "tree")
        dataset = "{name: imagefolder, root: tree, resolution: 32, channels: 3, num_classes: 3}"
    elif kind == "cifar10":
        make_cifar_folder(tmp_path / "cifar-10-batches-py")
        dataset = "{name: cifar10, root: cifar-10-batches-py}"
    else:
        if not os.path.isdir(FASHION_DIR):
            pytest.skip(f"Fashion-MNIST absent from {FASHION_DIR}")
        dataset = "{name: fashion-mnist}"
    config = write_micro(tmp_path, dataset)
    out = tmp_path / "out"
    argv = ["run", str(config), "--out", str(out), "--device", "cpu", "--threads", "1"]
    assert main(argv) == 0, capsys.readouterr().err
    plan = json.loads((out / "plan.json").read_text())
    classes, channels, size = {"imagefolder": (3, 3, 32), "cifar10": (10, 3, 32),
                               "fashion-mnist": (10, 1, 28)}[kind]
    for m in plan["models"]:
        spec = m["spec"]
        assert (spec["num_classes"], spec["in_channels"]) == (classes, channels), m["model"]
    assert plan["protocol"]["dataset"] == kind and plan["protocol"]["resolution"] == size
    family = pd.read_csv(out / "family.csv")
    assert set(family.family) == {"searched", "MobileNetV2"}
    assert family.test_acc.between(0, 1).all() and (family.status == "ok").all()
    assert (out / "study.yaml").read_text() == config.read_text()
    readme = (out / "README.md").read_text()
    for name in ("README.md", "family.png", "single.png", "family.csv"):
        (out / name).unlink()
    assert main(["report", str(out)]) == 0  # from runs.csv and plan.json alone: no training
    assert (out / "README.md").read_text() == readme
    pd.testing.assert_frame_equal(pd.read_csv(out / "family.csv"), family)
    assert (out / "family.png").is_file() and (out / "single.png").is_file()
