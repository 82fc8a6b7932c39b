"""Benchmark: inference speed of the eager model, its deploy form (:func:`scaling.deploy`) and
torchvision's model, ``python -m scaling.bench deploy [--models ...] [--batch 1 32] [--res 224]
[--threads 1] [--rounds 31 7] [--device cpu]``.

Per model and batch size the variants run interleaved: each round times one forward pass of
every variant in turn, alternating the order from round to round (after warm-up passes), so
drifts in machine load hit all of them alike; the median over rounds is reported, with the speed
of each variant relative to torchvision's, as ``tv/X`` (torchvision's time over the variant's;
> 1: the variant is faster; a legend line says so). Variants: ``eager``, ``deploy``, ``unpacked``
(``deploy(pack=False)``: BN folded, channels_last, no pre-packed oneDNN weights, so the packing's
share of the gain can be read off), and, when torchvision is importable and has a model of that
name, torchvision's model as built (``tv``, NCHW) and converted to channels_last (``tv_cl``:
deploy's layout). All models have random weights (speed does not depend on them). Also printed:
the max abs logit difference between the deploy and the eager model. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

from scaling.cli import Parser, command

PROG = "python -m scaling.bench deploy"
#: batch size from which the default --rounds drops from 31 to 7 (a round takes longer)
BIG_BATCH = 16
MODELS = ("resnet50", "mobilenet_v2", "mobilenet_v3_large", "efficientnet_b0", "regnet_y_800mf")


def configure(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark."""
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   help=f"zoo names (default: {' '.join(MODELS)})")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32],
                   help="batch sizes (default: 1 32)")
    p.add_argument("--res", type=int, default=224, help="input resolution (default: 224)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--rounds", nargs="+", type=int, default=None,
                   help="interleaved timing rounds, median reported: one count for every batch "
                        "size or one per --batch entry (default: 31 for batches below "
                        f"{BIG_BATCH}, 7 from {BIG_BATCH} up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes per variant (default: 2)")
    p.add_argument("--device", default="cpu",
                   help="torch device, one that is present (default: cpu)")


@command(PROG, errors=(ValueError, KeyError))
def main(argv: list[str]) -> int:
    """Time eager vs deploy (vs torchvision) inference."""
    p = Parser(PROG, description=main.__doc__)
    configure(p)
    return run(p.parse_args(argv))


def _torchvision_builder(name: str) -> Callable | None:
    """torchvision's builder of zoo ``name`` (an alias or tagged name resolved), or None where
    torchvision is missing or has no such model (``resnet50d``, ``mobilenet_v2_x0_5``)."""
    from scaling.zoo.aliases import resolve

    try:
        import torchvision.models
    except ImportError:
        return None
    base, replacements = resolve(name)
    builder = getattr(torchvision.models, base, None) if not replacements else None
    return builder if callable(builder) and base in torchvision.models.list_models() else None


def _variants(name: str, device: str) -> dict[str, Callable]:
    import torch

    import scaling

    eager = scaling.create_model(name).eval().to(device)
    out: dict[str, Callable] = {"eager": eager, "deploy": scaling.deploy(eager),
                                "unpacked": scaling.deploy(eager, pack=False)}
    builder = _torchvision_builder(name)
    if builder is None:
        return out
    tv = builder(weights=None).eval().to(device)
    out["torchvision"] = tv
    # the same model in channels_last, for a fair reading of deploy's NHWC gain
    out["tv_cl"] = copy.deepcopy(tv).to(memory_format=torch.channels_last)
    return out


def _check_device(device: str) -> None:
    """A ValueError naming ``--device`` unless a tensor can be made there."""
    import torch

    try:
        if torch.device(device).type == "meta":
            raise ValueError("a meta tensor has no values to time")
        torch.empty(1, device=torch.device(device))
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        cuda = "; CUDA is not available here" if not torch.cuda.is_available() else ""
        raise ValueError(f"--device={device!r} is not usable ({reason}){cuda}; expected cpu or "
                         f"a device that is present") from None


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run(args: argparse.Namespace) -> int:
    """Time every model and batch size; one row each."""
    for field in ("res", "threads"):
        if getattr(args, field) < 1:
            raise ValueError(f"--{field}={getattr(args, field)} is not allowed; expected >= 1")
    if args.rounds is None:
        rounds = [31 if b < BIG_BATCH else 7 for b in args.batch]
    else:
        rounds = args.rounds * len(args.batch) if len(args.rounds) == 1 else args.rounds
    if len(rounds) != len(args.batch) or any(r < 1 for r in rounds):
        raise ValueError(f"--rounds={args.rounds} is not allowed; expected one count >= 1 or one "
                         f"per --batch entry ({len(args.batch)})")
    if args.warmup < 0 or any(b < 1 for b in args.batch):
        raise ValueError(f"--warmup={args.warmup} / --batch={args.batch} are not allowed; "
                         "expected warmup >= 0 and batch sizes >= 1")
    import torch

    from scaling.zoo import get_spec

    for name in args.models:
        get_spec(name)  # an unknown name: one line with close matches, before any timing
    _check_device(args.device)
    torch.set_num_threads(args.threads)
    print(f"inference ms per batch, median of {'/'.join(map(str, rounds))} interleaved rounds "
          f"(batch {'/'.join(map(str, args.batch))}; device {args.device}, threads "
          f"{torch.get_num_threads()}, res {args.res}, torch {torch.__version__})")
    print("legend: tv/X = torchvision's time / X's time (> 1: X is faster); tv_cl: torchvision's "
          "model in channels_last; '-': torchvision has no such model")
    print(f"{'model':<20}{'batch':>6}{'eager':>10}{'deploy':>10}{'unpacked':>10}{'tv':>10}"
          f"{'tv_cl':>10}{'tv/eager':>10}{'tv/unpacked':>13}{'tv/deploy':>11}{'tv_cl/deploy':>14}"
          f"{'max|diff|':>11}")
    for name in args.models:
        models = _variants(name, args.device)
        for batch, n_rounds in zip(args.batch, rounds):
            x = torch.randn(batch, 3, args.res, args.res, device=args.device)
            times: dict[str, list[float]] = {k: [] for k in models}
            with torch.inference_mode():
                diff = (models["eager"](x) - models["deploy"](x)).abs().max().item()
                for _ in range(args.warmup):
                    for m in models.values():
                        m(x)
                order = list(models.items())
                for r in range(n_rounds):
                    for key, m in (order if r % 2 == 0 else order[::-1]):
                        _sync(args.device)
                        t0 = time.perf_counter()
                        m(x)
                        _sync(args.device)
                        times[key].append(time.perf_counter() - t0)
            ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            tv, cl = ms.get("torchvision"), ms.get("tv_cl")
            cells = [f"{ms['eager']:>10.2f}", f"{ms['deploy']:>10.2f}", f"{ms['unpacked']:>10.2f}",
                     f"{tv:>10.2f}" if tv else f"{'-':>10}",
                     f"{cl:>10.2f}" if cl else f"{'-':>10}",
                     f"{tv / ms['eager']:>9.2f}x" if tv else f"{'-':>10}",
                     f"{tv / ms['unpacked']:>12.2f}x" if tv else f"{'-':>13}",
                     f"{tv / ms['deploy']:>10.2f}x" if tv else f"{'-':>11}",
                     f"{cl / ms['deploy']:>13.2f}x" if cl else f"{'-':>14}"]
            print(f"{name:<20}{batch:>6}{''.join(cells)}{diff:>11.1e}", flush=True)
    return 0
