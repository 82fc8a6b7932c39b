"""Benchmark: analytic complexity vs fvcore's FlopCountAnalysis, ``python -m scaling.bench
complexity [--models a b ...] [--res 224|native] [--repeats N]``.

For each model, in one run: the analytic :func:`scaling.cost.complexity.complexity` timed warm
(stage cache filled, as in a search that revisits stages; median of many calls) and cold (cache
cleared before every call: a spec never seen), and fvcore's
``FlopCountAnalysis(model, x).total()`` on the built model (tracing included, model
construction excluded; best of ``--repeats``). Prints both times per model, the ratios and
their medians. A benchmark, not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from scaling.cli import Parser, command
from scaling.cost import clear_cache, complexity
from scaling.ir.limits import MAX_RESOLUTION

PROG = "python -m scaling.bench complexity"


def _time_analytic(spec, res: int) -> tuple[float, float]:
    """(warm, cold) seconds per call of complexity(spec, res)."""
    clear_cache()
    complexity(spec, res)
    n, t = 1, 0.0
    while t < 0.05:  # warm: scale the loop to ~50 ms, median of 5 loops
        n *= 4
        t0 = time.perf_counter()
        for _ in range(n):
            complexity(spec, res)
        t = time.perf_counter() - t0
    warm = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            complexity(spec, res)
        warm.append((time.perf_counter() - t0) / n)
    cold = []
    for _ in range(200):
        clear_cache()
        t0 = time.perf_counter()
        complexity(spec, res)
        cold.append(time.perf_counter() - t0)
    return statistics.median(warm), statistics.median(cold)


def _time_fvcore(spec, res: int, repeats: int) -> float:
    import torch
    from fvcore.nn import FlopCountAnalysis

    from scaling.nn.build import build_model

    model = build_model(spec).eval()
    x = torch.zeros(1, spec.in_channels, res, res)
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            t0 = time.perf_counter()
            FlopCountAnalysis(model, (x,)).unsupported_ops_warnings(False) \
                .uncalled_modules_warnings(False).tracer_warnings("none").total()
            best = min(best, time.perf_counter() - t0)
    return best


def configure(p: argparse.ArgumentParser) -> None:
    """The options of this benchmark."""
    p.add_argument("--models", nargs="+", default=None, help="zoo names (default: all)")
    p.add_argument("--res", default="224", help="an int, or 'native' for each model's own")
    p.add_argument("--repeats", type=int, default=1, help="fvcore runs per model (best of)")


@command(PROG, errors=(ValueError, KeyError))
def main(argv: list[str]) -> int:
    """Time the analytic complexity against fvcore's FlopCountAnalysis."""
    p = Parser(PROG, description=main.__doc__)
    configure(p)
    return run(p.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Time every model and print one row each, then the median ratios."""
    import scaling.zoo as zoo

    names = args.models or list(zoo.list_models())
    specs = [zoo.get_spec(n) for n in names]
    if args.res != "native" and not (args.res.isdigit() and 1 <= int(args.res) <= MAX_RESOLUTION):
        raise ValueError(f"--res={args.res!r} is not allowed; expected 'native' or an int in "
                         f"[1, {MAX_RESOLUTION}]")
    if args.repeats < 1:
        raise ValueError(f"--repeats={args.repeats} is not allowed; expected >= 1")
    import torch

    print(f"analytic complexity vs fvcore FlopCountAnalysis (torch threads "
          f"{torch.get_num_threads()}, fvcore best of {args.repeats})")
    print(f"{'model':<22}{'res':>5}{'MACs':>16}{'warm us':>10}{'cold us':>10}{'fvcore ms':>11}"
          f"{'ratio warm':>12}{'ratio cold':>12}")
    warm_ratios, cold_ratios = [], []
    for name, spec in zip(names, specs):
        res = spec.resolution if args.res == "native" else int(args.res)
        warm, cold = _time_analytic(spec, res)
        fv = _time_fvcore(spec, res, args.repeats)
        warm_ratios.append(fv / warm)
        cold_ratios.append(fv / cold)
        print(f"{name:<22}{res:>5}{complexity(spec, res).macs:>16,}{warm * 1e6:>10.1f}"
              f"{cold * 1e6:>10.1f}{fv * 1e3:>11.1f}{fv / warm:>12,.0f}{fv / cold:>12,.0f}",
              flush=True)
    print(f"median ratio: warm {statistics.median(warm_ratios):,.0f}x, "
          f"cold {statistics.median(cold_ratios):,.0f}x; "
          f"minimum: warm {min(warm_ratios):,.0f}x, cold {min(cold_ratios):,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
