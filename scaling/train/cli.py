"""``python -m scaling.train NAME|spec.json --data fashion-mnist [--epochs E] [--subset N]
[--resolution R] [--device D] [--seed S] [--json]``: train one network, report validation and
(once, at the end) test accuracy.

NAME is a zoo name (``scaling.zoo.models``), adapted to the dataset's channels, classes and
resolution; a .json/.yaml file is a NetworkSpec used as written (its resolution sets the
data's, unless ``--resolution`` is given), and so is the net a search found (its
``<study>.best.json``, ``FILE#N`` for trial N of a Pareto front, or its ``--json`` report) or
the spec a ``--save`` checkpoint stores (trained afresh; ``scaling.create_model(PATH)`` loads
its weights). Without a budget the run is one epoch.

A budget (--epochs, --samples, --seconds) counts training only: the validation after it (with
precise BN) and the test evaluation come on top, each announced by a line as it starts, so that
runs of one budget train the same way on a busy machine and an idle one.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from scaling.cli import (
    MAX_THREADS,
    Parser,
    add_config_arguments,
    check_option,
    check_writable,
    command,
    config_from_args,
    is_spec_path,
    resolve_spec,
)
from scaling.data.catalog import DATASET_NAMES, NATIVE_SHAPE, NUM_CLASSES, dataset_name
from scaling.ir.limits import MAX_RESOLUTION
from scaling.train.config import TrainConfig

PROG = "python -m scaling.train"


def zoo_spec(name: str, *, in_channels: int, resolution: int, num_classes: int,
             small_input: bool | None = None):
    """The zoo's spec ``name`` adapted to (in_channels, resolution, num_classes).

    ``small_input`` (default: ``resolution <= 64``) puts every stem conv at stride 1 and drops
    the stem max pool, so a 28x28 input is not reduced to 1x1 before the last stage.
    """
    small = resolution <= 64 if small_input is None else small_input
    return resolve_spec(name, "model", in_chans=in_channels, resolution=resolution,
                        num_classes=num_classes, small_input=small)


def build_parser() -> Parser:
    p = Parser(PROG, description=__doc__)
    p.add_argument("model", help="zoo name, a spec .json/.yaml file, "
                   "a search's best.json (FILE#N: trial N) or a train --save checkpoint")
    d = p.add_argument_group("data")
    d.add_argument("--data", default="fashion-mnist",
                   help=f"dataset: {', '.join(DATASET_NAMES)} (aliases allowed)")
    d.add_argument("--data-root", default=None, help="dataset folder (default: $SCALING_DATA, "
                   "then the Debian location)")
    d.add_argument("--subset", type=int, default=None,
                   help="use the first N training images (default: all)")
    d.add_argument("--val-size", type=int, default=5000, help="images held out of train")
    d.add_argument("--test-size", type=int, default=None,
                   help="evaluate the first N test images (default: all)")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the train/val split")
    d.add_argument("--resolution", type=int, default=None,
                   help="input resolution (default: the dataset's, or a spec file's)")
    d.add_argument("--small-input", action=argparse.BooleanOptionalAction, default=None,
                   help="zoo names: stride-1 stem, no stem pool (default: resolution <= 64)")
    add_config_arguments(p.add_argument_group("recipe and budget (TrainConfig)"), TrainConfig)
    o = p.add_argument_group("output")
    o.add_argument("--no-test", action="store_true", help="skip the final test evaluation")
    o.add_argument("--save", default=None,
                   help="write {'spec', 'state_dict'} here (torch.save; default: none)")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")
    return p


def _spec(args: argparse.Namespace, data_name: str):
    if is_spec_path(args.model):
        spec = resolve_spec(args.model, "model")
        return spec.replace(resolution=args.resolution) if args.resolution else spec
    channels, native = NATIVE_SHAPE[data_name]
    return zoo_spec(args.model, in_channels=channels, resolution=args.resolution or native,
                    num_classes=NUM_CLASSES.get(data_name, 1000), small_input=args.small_input)


#: keeps the budget arithmetic in range (1e308 epochs overflowed int()); far above any real run
MAX_EPOCHS = 1e6


def check_arguments(args: argparse.Namespace) -> None:
    """Numbers finite and in range, --save writable: checked before any data or training."""
    for name, high in (("epochs", MAX_EPOCHS), ("samples", MAX_EPOCHS * 1e9),
                       ("seconds", 1e9), ("lr", None), ("weight_decay", None)):
        check_option(f"--{name.replace('_', '-')}", getattr(args, name), None, high)
    check_option("--threads", args.threads, 1, MAX_THREADS)
    check_option("--subset", args.subset, 1)
    check_option("--val-size", args.val_size, 0)
    check_option("--test-size", args.test_size, 1)
    check_option("--resolution", args.resolution, 1, MAX_RESOLUTION)
    check_option("--seed", args.seed, 0, 2**32 - 1)
    check_writable("--save", args.save)


def _first(split: Any, n: int | None) -> Any:
    """The first ``n`` items of a split (all when ``n`` is None or larger)."""
    if n is None or split is None or n >= len(split):
        return split
    if n < 1:
        raise ValueError(f"test_size={n!r} is not allowed; expected an int >= 1")
    import torch

    from scaling.data import TensorSplit

    if isinstance(split, TensorSplit):
        return TensorSplit(split.x[:n], split.y[:n])
    return split.subset(torch.arange(n))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _save(path: str, spec, model) -> None:
    import torch

    from scaling.files import atomic_write

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_write(path, lambda fh: torch.save({"spec": spec.to_dict(), "state_dict": state}, fh))


@command(PROG, errors=(ValueError, TypeError, KeyError, FileNotFoundError))
def main(argv: list[str]) -> int:
    """Train one network; bad input is one line and exit code 2."""
    args = build_parser().parse_args(argv)
    check_arguments(args)
    data_name = dataset_name(args.data)
    if args.epochs is None and args.samples is None and args.seconds is None:
        args.epochs = 1.0
    cfg = config_from_args(TrainConfig, args)
    spec = _spec(args, data_name)
    from tqdm.auto import tqdm

    from scaling.data import load_dataset
    from scaling.train.trainer import evaluate, train

    data = load_dataset(data_name, args.data_root, val_size=args.val_size,
                        split_seed=args.split_seed, subset=args.subset,
                        resolution=spec.resolution, in_channels=spec.in_channels)
    data.test = _first(data.test, args.test_size)
    if spec.num_classes != data.num_classes:
        spec = spec.replace(num_classes=data.num_classes)
    say = (lambda *a: None) if args.json else tqdm.write  # noqa: E731  (above any live bar)
    say(f"{spec.name or args.model}: {data.summary()}")

    def report(number: int, m: dict) -> None:
        val = f"{100 * m['val_top1']:.2f}%" if m["val_top1"] is not None else "-"
        where = (f"epoch {number}" if cfg.evals_per_epoch == 1
                 else f"step {m['step']} (epoch {m['epochs']:.2f})")
        say(f"{where}: train loss {m['train_loss']:.4f}  val top-1 {val}  "
            f"{m['images_per_s']:.0f} img/s  {m['elapsed']:.1f} s")

    result = train(spec, data, cfg, callback=report, progress=args.progress, notice=say)
    if result.status == "ok" and not args.no_test and data.test is not None:
        say(f"evaluating on {len(data.test):,} test images")
        t0 = time.perf_counter()
        result.test_top1 = evaluate(result.model, data, split="test",
                                    batch_size=cfg.eval_batch_size, progress=args.progress)
        result.wall_time += time.perf_counter() - t0
    if args.json:
        from scaling.cost import complexity

        c = complexity(spec)
        out = {"model": args.model, "spec_name": spec.name, "data": data_name,
               "macs": c.macs, "params": c.params, **result.to_dict(),
               "test_images": len(data.test) if result.test_top1 is not None else 0,
               "args": vars(args)}
        print(json.dumps(_finite(out), default=str))
    else:
        test = f"{100 * result.test_top1:.2f}%" if result.test_top1 is not None else "-"
        best = f"{100 * result.best_val_top1:.2f}%" if result.best_val_top1 is not None else "-"
        print(f"status {result.status}{' (' + result.message + ')' if result.message else ''}; "
              f"best val top-1 {best}; test top-1 {test}; {result.images_per_s:.0f} img/s; "
              f"train {result.train_time:.1f} s, wall {result.wall_time:.1f} s (test included)")
    if args.save and result.model is not None:  # after the report: a full disk loses no result
        _save(args.save, spec, result.model)
    return 0 if result.status == "ok" else 1
