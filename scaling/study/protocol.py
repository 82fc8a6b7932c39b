"""The study's training protocol and what trains by it: the data cache, the trainer calls (one
process or several), MAC fitting, baseline loading and result writing (CSV + provenance via
:mod:`scaling.study.provenance`).

One :class:`Protocol` (dataset, split, training subset, schedule, test subset, seeds) trains
every model of a study, so its numbers are comparable; its :meth:`Protocol.key` is stored with
every row, and a run is reused only under an equal key. The ``quick``/``tiny``/``full``
:data:`PRESETS` here are the protocols of ``experiments/scale_family.py`` and
``compare_families.py`` (the earlier study); the study's own presets are YAML files
(:mod:`scaling.study.config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from scaling.cost import complexity

#: the checkout this package runs from (its results/ holds the committed studies)
ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "results" / "study"
BASELINE_CANDIDATES = ("results/search/baseline.json", "results/search/baseline_spec.json")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How every model of a study is trained and evaluated (default: Fashion-MNIST, 28x28).

    ``subset`` training images (None: all left after the validation split), ``epochs``
    passes, SGD with Nesterov momentum, warm-up + cosine (:func:`scaling.train.trainer.train`), no
    augmentation; validation = ``val_size`` images held out of the training set (``split_seed``);
    test = the first ``test_size`` images of the dataset's test set (None: all).
    ``base_macs``: refit the searched baseline's width to this MAC budget before scaling (CPU
    presets only; None keeps the searched width). ``points``: how many of the searched family's
    MAC points (phi = 0, 1, ...) the hand-designed families are matched at. ``in_channels``,
    ``num_classes``: the input the study's models are built for; ``data_root``: where the data
    lies (``None``: the dataset's default place). Why each preset's values: results/README.md.
    """

    dataset: str = "fashion-mnist"
    resolution: int = 28
    val_size: int = 5000
    split_seed: int = 0
    subset: int | None = None
    epochs: float = 10.0
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = 0.2
    augment: bool = False
    test_size: int | None = None
    seeds: tuple[int, ...] = (0, 1, 2)
    base_macs: int | None = None
    points: int = 4
    recipe: tuple[tuple[str, Any], ...] = ()
    zero_init_last: bool = False
    in_channels: int = 1
    num_classes: int = 10
    data_root: str | None = None

    def key(self) -> str:
        """A short hash of everything that changes a trained result (not the device, nor where
        the data lies: ``data_root``); a field added later counts only away from its default,
        so the committed studies keep their keys."""
        fields = dataclasses.asdict(self)
        del fields["data_root"]
        for name, default in (("recipe", ()), ("zero_init_last", False), ("in_channels", 1),
                              ("num_classes", 10)):
            if fields[name] == default:
                del fields[name]
        blob = json.dumps(fields, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]

    def train_kwargs(self) -> dict[str, Any]:
        """The keywords of :func:`scaling.train.train`: this protocol's recipe, overridden by the
        searched baseline's ``recipe`` (:func:`scaling.search.evaluators.recipe_kwargs`)."""
        from scaling.search.evaluators import recipe_kwargs

        return {"epochs": self.epochs, "augment": self.augment,
                "zero_init_last": self.zero_init_last, **recipe_kwargs(self, dict(self.recipe))}


#: ``tiny``: the reproducibility test (seconds); ``quick``: the CPU study committed in results/
#: (minutes on 2 cores); ``full``: the GPU setting (full training set, 3 seeds, 15 epochs).
PRESETS: dict[str, Protocol] = {
    "tiny": Protocol(val_size=500, subset=2048, epochs=1, batch_size=64, lr=0.05,
                     test_size=500, seeds=(0,), base_macs=1_000_000, points=1),
    "quick": Protocol(val_size=1000, subset=3000, epochs=2, batch_size=64, lr=0.05,
                      test_size=2000, seeds=(0, 1, 2), base_macs=2_000_000, points=3),
    "full": Protocol(val_size=5000, subset=None, epochs=15, batch_size=128, lr=0.1,
                     test_size=None, seeds=(0, 1, 2), base_macs=None, points=4),
}


def add_protocol_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("protocol (defaults: the preset)")
    g.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="tiny | quick (CPU minutes) | full (GPU); default full")
    g.add_argument("--quick", action="store_true", help="same as --preset quick")
    g.add_argument("--tiny", action="store_true", help="same as --preset tiny")
    g.add_argument("--seeds", type=int, nargs="+", help="training seeds")
    g.add_argument("--subset", type=int, help="training images (default: preset)")
    g.add_argument("--epochs", type=float)
    g.add_argument("--test-size", type=int)
    g.add_argument("--base-macs", type=float, help="refit the baseline width to this many MACs")
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads per run (default 1: reproducible; results/README.md)")
    p.add_argument("--jobs", type=int, default=1, help="parallel training processes (CPU)")


def protocol_from_args(args: argparse.Namespace) -> tuple[str, Protocol]:
    preset = "tiny" if args.tiny else "quick" if args.quick else (args.preset or "full")
    proto = PRESETS[preset]
    over: dict[str, Any] = {}
    if args.seeds:
        over["seeds"] = tuple(args.seeds)
    for name in ("subset", "epochs", "test_size"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    if args.base_macs is not None:
        over["base_macs"] = int(args.base_macs) if args.base_macs > 0 else None
    recipe = load_recipe(getattr(args, "baseline", None))
    if recipe:  # the searched baseline's recipe trains the whole study
        over["recipe"] = tuple(sorted(recipe.items()))
    return preset, dataclasses.replace(proto, **over)


def _baseline_record(path: str | None) -> tuple[Any, str] | None:
    """The first JSON object of the baseline file ``path`` (or of the first default location
    that exists) and that file's name; None when there is none (``path`` must exist if given)."""
    candidates = [path] if path else [str(ROOT / c) for c in BASELINE_CANDIDATES]
    for cand in candidates:
        if cand and Path(cand).is_file():
            obj = json.loads(Path(cand).read_text())
            while isinstance(obj, list) and obj:
                obj = obj[0]
            return obj, cand
        if path:
            raise ValueError(f"--baseline {path!r} does not exist")
    return None


def load_recipe(path: str | None) -> dict[str, Any]:
    """The training recipe the search chose with the baseline (the ``recipe`` of a search
    report, results/search/baseline.json); ``{}`` (the fixed recipe) for older files, spec
    files, or when there is no baseline file."""
    found = _baseline_record(path)
    recipe = found[0].get("recipe") if found and isinstance(found[0], dict) else None
    return dict(recipe) if isinstance(recipe, dict) else {}


# -- specs ---------------------------------------------------------------------------------------
def adapt(spec, resolution: int = 28, in_channels: int = 1, num_classes: int = 10):
    """The spec for ``num_classes`` classes of ``in_channels``-channel inputs at ``resolution``."""
    return spec.replace(in_channels=in_channels, num_classes=num_classes, resolution=resolution)


def fit_width(make: Callable[[float], Any], target: float, lo: float = 0.05, hi: float = 4.0,
              iters: int = 30) -> tuple[float, Any]:
    """The width multiplier whose spec ``make(w)`` has MACs closest to ``target`` (log scale),
    and that spec: :func:`scaling.compound.match.fit_knob` (the multiplier returned is the one
    that built the spec, not a rounding of it that may cross a channel-rounding jump)."""
    from scaling.compound.match import fit_knob

    w, spec, _ = fit_knob(make, target, lo, hi, iters)
    return w, spec


def stand_in_baseline():
    """The documented stand-in for the searched baseline (used only when no search result is
    given): EfficientNet-B0's MBConv/SE/SiLU layout at half depth, stride-1 stem (28x28)."""
    from scaling.zoo import get_spec

    spec = get_spec("efficientnet_b0", depth=0.5, small_input=True, num_classes=10, in_chans=1,
                    resolution=28)
    return spec.replace(name="stand-in (B0 layout, depth 0.5)")


def load_baseline(path: str | None, allow_stand_in: bool) -> tuple[Any, str]:
    """The searched baseline spec from ``path`` (a spec JSON, or a search report/best-trials
    JSON holding one under ``spec``) or a default location; else the stand-in when allowed."""
    from scaling.ir import NetworkSpec

    found = _baseline_record(path)
    if found is not None:
        obj, cand = found
        if isinstance(obj, dict) and "stages" not in obj:
            for key in ("spec", "best_spec", "baseline"):
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
        if not isinstance(obj, dict) or "stages" not in obj:
            raise ValueError(f"--baseline {cand!r}: no spec found (expected a NetworkSpec "
                             "JSON or an object with a 'spec' entry)")
        resolved = Path(cand).resolve()
        return adapt(NetworkSpec.from_dict(obj)), str(
            resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else cand)
    if not allow_stand_in:
        raise ValueError("no searched baseline found (looked for "
                         f"{', '.join(BASELINE_CANDIDATES)}); pass --baseline spec.json, or use "
                         "--quick/--tiny, which fall back to a labelled stand-in")
    return stand_in_baseline(), "stand-in"


def fit_baseline(spec, base_macs: int | None):
    """``spec`` with its width refitted to ``base_macs`` (None: unchanged); returns (spec, w)."""
    if base_macs is None:
        return spec, 1.0
    from scaling.compound import scale

    w, fitted = fit_width(lambda m: scale(spec, width=m, name=spec.name), base_macs)
    return fitted, w


# -- training ------------------------------------------------------------------------------------
class DataCache:
    """The protocol's dataset loaded once per resolution with its split and subsets."""

    def __init__(self, proto: Protocol) -> None:
        self.proto = proto
        self._cache: dict[int, Any] = {}

    def get(self, resolution: int):
        if resolution not in self._cache:
            import torch

            from scaling.data import TensorSplit, load_dataset

            p = self.proto
            data = load_dataset(p.dataset, p.data_root, val_size=p.val_size,
                                split_seed=p.split_seed, subset=p.subset, resolution=resolution,
                                in_channels=p.in_channels)
            if data.num_classes != p.num_classes:  # before any model is built for the other
                raise ValueError(f"num_classes={p.num_classes} does not match the dataset: "
                                 f"{p.dataset} at {p.data_root or 'its default place'} has "
                                 f"{data.num_classes} classes")
            if p.test_size is not None and data.test is not None:
                n = min(p.test_size, len(data.test))
                test = (TensorSplit(data.test.x[:n], data.test.y[:n])
                        if isinstance(data.test, TensorSplit)
                        else data.test.subset(torch.arange(n)))
                data = dataclasses.replace(data, test=test)
            self._cache[resolution] = data
        return self._cache[resolution]


def train_eval(spec, cache: DataCache, seed: int, device: str = "auto",
               threads: int | None = None) -> dict[str, Any]:
    """Train ``spec`` under the protocol with ``seed``; val (held out) and test top-1."""
    import torch

    from scaling.train import evaluate, train
    from scaling.train.common import uses_one_shape

    data = cache.get(spec.resolution)
    t0 = time.perf_counter()
    res = train(spec, data, seed=seed, device=device, threads=threads, progress=False,
                **cache.proto.train_kwargs())
    test = float("nan")
    if res.status == "ok":  # at the one batch shape the trainer used, where it used one (CUDA)
        cfg = res.config
        one = uses_one_shape(cfg["one_shape"], torch.device(res.device))
        test = evaluate(res.model, data, split="test",
                        **({"batch_size": cfg["batch_size"], "one_shape": True} if one else {}))
    return {"val_acc": res.final_val_top1 if res.final_val_top1 is not None else float("nan"),
            "test_acc": test, "status": res.status, "train_seconds": round(res.train_time, 2),
            "wall_seconds": round(time.perf_counter() - t0, 2), "device": res.device}


_WORKER_CACHE: dict[str, DataCache] = {}


def train_task(spec, proto: Protocol, seed: int, device: str, threads: int | None
               ) -> dict[str, Any]:
    """:func:`train_eval` with this process's data cache for ``proto`` (picklable: the target
    of spawned training processes)."""
    cache = _WORKER_CACHE.setdefault(proto.key(), DataCache(proto))
    return train_eval(spec, cache, seed, device, threads)


def train_seeds(spec, proto: Protocol, seeds: Sequence[int], device: str,
                threads: int | None) -> list[dict[str, Any]]:
    """:func:`train_task` for each of ``seeds`` in turn, in one process: on CUDA, cuDNN builds
    an execution plan for every new layer shape once per process (seconds per new net,
    ``results/bench/profile-h100``), so a spec's seeds share the plans of its first run."""
    import torch

    outs = [train_task(spec, proto, seed, device, threads) for seed in seeds]
    if torch.cuda.is_available():  # hand the cached blocks back to the processes beside this one
        torch.cuda.empty_cache()
    return outs


def run_models(models: Sequence[dict[str, Any]], proto: Protocol, device: str = "auto",
               threads: int | None = 1, jobs: int = 1, log: Callable[[str], None] = print
               ) -> list[dict[str, Any]]:
    """Train every ``{'spec': ..., **columns}`` for every seed; one row per (model, seed).

    ``jobs > 1`` trains in that many spawned processes (each run seeds itself, so the rows do
    not depend on ``jobs``)."""
    tasks = [(i, m, seed) for i, m in enumerate(models) for seed in proto.seeds]
    if jobs > 1 and len(tasks) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(train_task, m["spec"], proto, seed, device, threads)
                       for _, m, seed in tasks]
            outs = []
            for (i, m, seed), fut in zip(tasks, futures):
                outs.append(fut.result())
                _log_row(log, i, len(models), m, seed, outs[-1])
    else:
        outs = []
        for i, m, seed in tasks:
            outs.append(train_task(m["spec"], proto, seed, device, threads))
            _log_row(log, i, len(models), m, seed, outs[-1])
    rows = []
    for (_, m, seed), out in zip(tasks, outs):
        spec = m["spec"]
        c = complexity(spec)
        row = {k: v for k, v in m.items() if k != "spec"}
        row.update(model=m.get("model", spec.name), macs=c.macs, params=c.params,
                   resolution=spec.resolution, seed=seed, **out, protocol=proto.key())
        rows.append(row)
    return rows


def _log_row(log, i: int, n: int, m: dict[str, Any], seed: int, out: dict[str, Any]) -> None:
    macs = complexity(m["spec"]).macs
    log(f"[{i + 1}/{n}] {m.get('family', m.get('rule', ''))} {m.get('model', m['spec'].name)}: "
        f"{macs / 1e6:.2f}M MACs seed {seed} val {out['val_acc']:.4f} test {out['test_acc']:.4f}"
        f" ({out['wall_seconds']:.0f} s)")


def searched_base(path: str | None, proto: Protocol, preset: str) -> tuple[Any, str, float]:
    """The baseline the study scales: the searched spec (stand-in allowed in tiny/quick), its
    width refitted to ``proto.base_macs``; returns (spec named 'baseline', source, width)."""
    searched, source = load_baseline(path, allow_stand_in=preset != "full")
    base, width = fit_baseline(searched, proto.base_macs)
    return base.replace(name="baseline"), source, width


def mac_points(base, proto: Protocol, phis: Sequence[float] = (0, 1, 2, 3)) -> list[int]:
    """The study's MAC points: the baseline compound-scaled with the paper's coefficients at
    the first ``proto.points`` values of ``phis`` (any rule with alpha*beta^2*gamma^2 ~ 2 lands
    near the same points)."""
    from scaling.compound import compound

    return [complexity(compound(base, phi)).macs for phi in list(phis)[:proto.points]]


def write_table(rows: list[dict[str, Any]], path: Path, prov, **more: Any) -> Path:
    """Write ``rows`` as CSV atomically and its provenance beside it."""
    import pandas as pd

    from scaling.study.provenance import atomic_write_text

    atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    prov.write(path, **more)
    return path


def write_report(csv_path: Path, md: str, prov, summary: list[dict[str, Any]],
                 **more: Any) -> Path:
    """``md`` as ``csv_path``'s Markdown twin (same stem, ``.md``), atomically, and the CSV's
    provenance naming it, with ``summary`` (records) and ``more``; returns the .md path."""
    import pandas as pd

    from scaling.study.provenance import atomic_write_text

    md_path = csv_path.with_suffix(".md")
    atomic_write_text(md_path, md)
    prov.write(csv_path, files=[md_path.name], **more,
               summary=json.loads(pd.DataFrame(summary).to_json(orient="records")))
    return md_path


TEST_SIZE = {"fashion-mnist": 10000, "mnist": 10000, "cifar10": 10000}  #: official test sets


def data_title(p: Any) -> str:
    """The study's data in a few words: ``Fashion-MNIST 28x28`` (``+ 3 channels`` where they
    are not the dataset's own)."""
    from scaling.data import NATIVE_SHAPE

    name = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10",
            "imagefolder": "ImageFolder"}.get(p.dataset, p.dataset)
    extra = "" if NATIVE_SHAPE[p.dataset][0] == p.in_channels else f", {p.in_channels} channels"
    return f"{name} {p.resolution}x{p.resolution}{extra}"
