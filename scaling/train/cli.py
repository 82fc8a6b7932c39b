"""``python -m scaling.train NAME|spec.json --data fashion-mnist [--epochs E] [--subset N]
[--resolution R] [--device D] [--seed S] [--json]``: train one network, report validation and
(once, at the end) test accuracy.

NAME is a zoo name (``scaling.zoo.models``), adapted to the dataset's channels, classes and resolution;
a .json/.yaml file is a NetworkSpec used as written (its resolution sets the data's, unless
``--resolution`` is given). Without a budget the run is one epoch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import asdict
from typing import Any

PROG = "python -m scaling.train"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message}\n")


def zoo_spec(name: str, *, in_channels: int, resolution: int, num_classes: int,
             small_input: bool | None = None):
    """The zoo's spec ``name`` adapted to (in_channels, resolution, num_classes).

    ``small_input`` (default: ``resolution <= 64``) puts every stem conv at stride 1 and drops
    the stem max pool, so a 28x28 input is not reduced to 1x1 before the last stage.
    """
    try:
        import scaling.zoo as zoo
    except ImportError:
        raise ValueError(f"model name {name!r} needs scaling.zoo.models, which is not available; pass a "
                         "spec .json/.yaml file instead") from None
    small = resolution <= 64 if small_input is None else small_input
    return zoo.get_spec(name, in_chans=in_channels, resolution=resolution,
                        num_classes=num_classes, small_input=small)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Train a zoo network or a spec file on a dataset.")
    p.add_argument("model", help="zoo name, or a spec .json/.yaml file")
    p.add_argument("--data", default="fashion-mnist",
                   help="fashion-mnist (default), mnist, cifar10, imagefolder")
    p.add_argument("--data-root", default=None, help="dataset folder (default: $SCALING_DATA, "
                   "then the Debian location)")
    p.add_argument("--epochs", type=float, default=None)
    p.add_argument("--samples", type=int, default=None, help="budget in training images")
    p.add_argument("--seconds", type=float, default=None, help="budget in training seconds")
    p.add_argument("--subset", type=int, default=None, help="use N training images")
    p.add_argument("--val-size", type=int, default=5000, help="held out of train (default 5000)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--small-input", action=argparse.BooleanOptionalAction, default=None,
                   help="zoo names: stride-1 stem, no stem pool (default: resolution <= 64)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--lr", type=float, default=None, help="default 0.1 (SGD) / 2e-3 (AdamW) "
                   "x batch/256")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of the budget")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-augment", action="store_true", help="no batch augmentation")
    p.add_argument("--precise-bn", type=int, default=8, help="BN recalibration batches (0: off)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (ImageFolder)")
    p.add_argument("--no-test", action="store_true", help="skip the final test evaluation")
    p.add_argument("--save", default=None, help="write {'spec', 'state_dict'} here (torch.save)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    return p


def _spec(args: argparse.Namespace, data_name: str):
    from scaling.data import NATIVE_SHAPE
    from scaling.ir import load_spec

    if args.model.endswith((".json", ".yaml", ".yml")) or os.path.isfile(args.model):
        if not os.path.isfile(args.model):
            raise ValueError(f"spec file {args.model!r} does not exist")
        spec = load_spec(args.model)
        if args.resolution is not None:
            spec = spec.replace(resolution=args.resolution)
        return spec
    channels, native = NATIVE_SHAPE[data_name]
    return zoo_spec(args.model, in_channels=channels, resolution=args.resolution or native,
                    num_classes=10 if data_name != "imagefolder" else 1000,
                    small_input=args.small_input)


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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from scaling.data import dataset_name, load_dataset
    from scaling.train.trainer import TrainConfig, evaluate, train

    say = (lambda *a: None) if args.json else print  # noqa: E731
    try:
        data_name = dataset_name(args.data)
        if args.epochs is None and args.samples is None and args.seconds is None:
            args.epochs = 1.0
        cfg = TrainConfig(
            epochs=args.epochs, samples=args.samples, seconds=args.seconds,
            batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
            weight_decay=args.weight_decay, warmup=args.warmup,
            label_smoothing=args.label_smoothing, seed=args.seed, device=args.device,
            amp=args.amp, augment=not args.no_augment, precise_bn=args.precise_bn,
            num_workers=args.workers, threads=args.threads)
        spec = _spec(args, data_name)
        data = load_dataset(data_name, args.data_root, val_size=args.val_size,
                            split_seed=args.split_seed, subset=args.subset,
                            resolution=spec.resolution, in_channels=spec.in_channels)
        if spec.num_classes != data.num_classes:
            spec = spec.replace(num_classes=data.num_classes)
        say(f"{spec.name or args.model}: {data.summary()}")

        def report(epoch: int, m: dict) -> None:
            val = f"{100 * m['val_top1']:.2f}%" if m["val_top1"] is not None else "-"
            say(f"epoch {epoch}: train loss {m['train_loss']:.4f}  val top-1 {val}  "
                f"{m['images_per_s']:.0f} img/s  {m['elapsed']:.1f} s")

        result = train(spec, data, callback=report, progress=args.progress, **asdict(cfg))
    except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    if result.status == "ok" and not args.no_test and data.test is not None:
        result.test_top1 = evaluate(result.model, data, split="test")
    if args.save and result.model is not None:
        _save(args.save, spec, result.model)
    if args.json:
        from scaling.cost import complexity

        c = complexity(spec)
        out = {"model": args.model, "spec_name": spec.name, "data": data_name,
               "macs": c.macs, "params": c.params, **result.to_dict(), "args": vars(args)}
        print(json.dumps(_finite(out)))
    else:
        test = f"{100 * result.test_top1:.2f}%" if result.test_top1 is not None else "-"
        best = f"{100 * result.best_val_top1:.2f}%" if result.best_val_top1 is not None else "-"
        print(f"status {result.status}{' (' + result.message + ')' if result.message else ''}; "
              f"best val top-1 {best}; test top-1 {test}; {result.images_per_s:.0f} img/s; "
              f"train {result.train_time:.1f} s, wall {result.wall_time:.1f} s")
    return 0 if result.status == "ok" else 1
