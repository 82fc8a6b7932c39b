"""Benchmarks (timings, not tests): ``python -m scaling.bench NAME [options]``.

Each benchmark lives in its own module ``scaling.bench.<NAME>`` exposing ``main(argv) -> int``;
register a new one in :data:`BENCHMARKS`. ``python -m scaling.bench NAME --help`` shows its
options.
"""

from __future__ import annotations

import importlib
import sys

#: benchmark name -> (module, one-line description)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "train": ("scaling.bench.train",
              "training images/s on CPU: the trainer vs a plain PyTorch loop, zoo nets at 28x28"),
    "complexity": ("scaling.bench.complexity",
                   "analytic params/MACs vs fvcore FlopCountAnalysis, time per model"),
}


def _usage() -> str:
    lines = ["usage: python -m scaling.bench NAME [options]", "", "benchmarks:"]
    lines += [f"  {name:<12}{desc}" for name, (_, desc) in BENCHMARKS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"python -m scaling.bench: error: unknown benchmark {name!r}; expected one of "
              f"{sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    module_name = BENCHMARKS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        print(f"python -m scaling.bench: error: benchmark {name!r} is registered but "
              f"{module_name} is not available", file=sys.stderr)
        return 2
    return int(module.main(rest) or 0)

