"""Benchmarks (timings, not tests): ``python -m scaling.bench NAME [options]``.

Each benchmark lives in its own module ``scaling.bench.<NAME>`` exposing ``main(argv) -> int``;
register a new one in :data:`BENCHMARKS`. ``python -m scaling.bench NAME --help`` shows its
options.
"""

from __future__ import annotations

import importlib

from scaling.cli import Parser, command

PROG = "python -m scaling.bench"
#: benchmark name -> (module, one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "train": ("scaling.bench.train",
              "training images/s on CPU: the trainer vs a plain PyTorch loop, zoo nets at 28x28"),
    "gpu": ("scaling.bench.gpu",
            "one device (CUDA when available): plain loop, trainer, search trials, concurrent "
            "spawned workers; one JSON line each"),
    "complexity": ("scaling.bench.complexity",
                   "analytic params/MACs vs fvcore FlopCountAnalysis, time per model"),
    "deploy": ("scaling.bench.deploy",
               "inference speed: eager vs scaling.deploy (BN folded) vs torchvision's model"),
    "latency": ("scaling.bench.latency",
                "latency predictor (scaling.latency) vs measured: median/p90 percent error, "
                "Spearman"),
}


def build_parser() -> Parser:
    """One subcommand per benchmark; each module's ``configure(parser)`` adds its options (its
    import is torch-free, so ``--help`` is fast)."""
    p = Parser(PROG, description=__doc__)
    sub = p.add_subparsers(dest="benchmark", metavar="NAME", required=True)
    for name, (module, desc) in BENCHMARKS.items():
        sp = sub.add_parser(name, prog=f"{PROG} {name}", help=desc, description=desc,
                            formatter_class=p.formatter_class)
        importlib.import_module(module).configure(sp)
    return p


@command(PROG, errors=(ValueError, TypeError, KeyError))
def main(argv: list[str]) -> int:
    """Run one benchmark: ``python -m scaling.bench NAME [options]``."""
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(BENCHMARKS[args.benchmark][0]).run(args) or 0)
