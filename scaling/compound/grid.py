"""Step 1 of compound scaling (Tan & Le 2019, section 3.3): a grid search of alpha, beta, gamma.

``python -m scaling.compound grid --base NAME --phi 1 --target 2 --tol 0.1 --step 0.05
[--mac-tol 0.1] [--evaluate macs|proxy] [--out CSV]`` enumerates ``alpha, beta, gamma >= 1`` on a
grid of ``step`` under ``|alpha * beta**2 * gamma**2 - target| <= tol``, scales the base by each at
``phi``, keeps those whose realised, rounded model costs ``target**phi`` x the base's MACs within
``mac_tol`` (the width refitted where the rule alone misses: at narrow widths the rounding of
channels can turn a 2x candidate into 3.7x) and scores it with an evaluator from
:data:`EVALUATORS` (higher score is better):

- ``macs`` (default, analytic, instant): params and MACs of the scaled spec; score
  ``-|log(MAC ratio / target**phi)|``, i.e. how closely the realised MAC growth meets the target
  once channels, repeats and resolution are rounded.
- ``proxy``: trains each scaled spec briefly with :func:`scaling.train.trainer.train` on a
  :func:`scaling.data.datasets.load_dataset` dataset (Fashion-MNIST by default) at a small base
  resolution;
  score = best validation top-1 (the paper's criterion, at CPU scale).

Register another evaluator with ``@register_evaluator("name")``: ``fn(base, scaled, ctx) -> dict``
with at least a ``score``.
"""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable
from typing import Any

from scaling.cli import (
    UsageError,
    check_option,
    check_writable,
    format_cell,
    format_table,
    parse_number,
    resolve_spec,
)
from scaling.compound.match import matched_candidates
from scaling.compound.rule import compound
from scaling.cost import complexity
from scaling.ir import NetworkSpec

Evaluator = Callable[[NetworkSpec, NetworkSpec, dict[str, Any]], dict[str, Any]]
EVALUATORS: dict[str, Evaluator | str] = {
    # evaluators that need torch live above this torch-free layer: named by "module:function",
    # imported on first use
    "proxy": "scaling.train.grid_proxy:evaluate_proxy",
}
MAX_CANDIDATES = 100_000


def _evaluator(name: str) -> Evaluator:
    """The evaluator registered as ``name``, importing it where it is named by location."""
    fn = EVALUATORS[name]
    if isinstance(fn, str):
        module, _, attr = fn.partition(":")
        fn = EVALUATORS[name] = getattr(importlib.import_module(module), attr)
    return fn


def register_evaluator(name: str) -> Callable[[Evaluator], Evaluator]:
    """Decorator: make ``fn(base, scaled, ctx) -> {'score': ..., ...}`` available as ``name``."""
    def _add(fn: Evaluator) -> Evaluator:
        EVALUATORS[name] = fn
        return fn

    return _add


def candidates(target: float, tol: float, step: float) -> list[tuple[float, float, float]]:
    """Grid points ``1 + i * step`` with ``|alpha * beta**2 * gamma**2 - target| <= tol``."""
    if step <= 0:
        raise UsageError(f"--step={step:g} is not allowed; expected > 0")
    if tol < 0:
        raise UsageError(f"--tol={tol:g} is not allowed; expected >= 0")
    if target + tol < 1:
        raise UsageError(f"--target={target:g} with --tol={tol:g} is unreachable: "
                         "alpha*beta^2*gamma^2 >= 1 when alpha, beta, gamma >= 1")
    hi = target + tol
    n_a = int(math.floor((hi - 1) / step + 1e-9)) + 1
    n_b = int(math.floor((math.sqrt(hi) - 1) / step + 1e-9)) + 1
    if n_a * n_b * n_b > MAX_CANDIDATES * 10:
        raise UsageError(f"--step={step:g} gives a grid of {n_a * n_b * n_b} points; use a "
                         "coarser step")
    grid = [round(1 + i * step, 10) for i in range(max(n_a, n_b))]
    out = []
    for a in grid[:n_a]:
        for b in grid[:n_b]:
            for g in grid[:n_b]:
                if abs(a * b * b * g * g - target) <= tol + 1e-12:
                    out.append((a, b, g))
    return out


@register_evaluator("macs")
def evaluate_macs(base: NetworkSpec, scaled: NetworkSpec, ctx: dict[str, Any]) -> dict[str, Any]:
    """Analytic params/MACs; score = -|log(MAC ratio / target**phi)|."""
    base_macs = ctx.setdefault("_base_macs", complexity(base).macs)
    c = complexity(scaled)
    ratio = c.macs / base_macs
    return {"params": c.params, "macs": c.macs, "mac_ratio": ratio,
            "score": -abs(math.log(ratio / ctx["target"] ** ctx["phi"]))}


#: what each column of the grid's table means (the ``grid`` subcommand's help epilog)
GRID_COLUMNS = """columns:
  alpha, beta, gamma  the candidate's depth, width and resolution bases
  product             alpha*beta^2*gamma^2, within --tol of --target
  d, r                alpha^phi, gamma^phi: the depth and resolution multipliers used
  w                   the width multiplier used: beta^phi, or the refitted one where refit
  refit               True: the rule's model missed target^phi x the base's MACs by more than
                      --mac-tol (rounding), so its width was refitted until it lands
                      (scaling.compound.match); False: the rule's model as it is
  resolution, blocks  the scaled model's input size and block count
  params, macs        the scaled model's exact counts; mac_ratio = macs / the base's
  score               the evaluator's, higher is better: macs: -|log(mac_ratio / target^phi)|
                      (0 = exactly on the target); proxy: best validation top-1
"""


def add_grid_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m scaling.compound grid``."""
    p.add_argument("--base", default="efficientnet_b0", help="zoo name, spec .json/.yaml file, "
                   "a search's best.json (FILE#N: trial N) or a train --save checkpoint")
    p.add_argument("--phi", default="1", help="phi at which candidates are compared")
    p.add_argument("--target", default="2", help="target of alpha*beta^2*gamma^2")
    p.add_argument("--tol", default="0.1", help="allowed |product - target|")
    p.add_argument("--step", default="0.05", help="grid step")
    p.add_argument("--mac-tol", default="0.1", help="keep candidates whose realised MACs are "
                   "within this fraction of target**phi x the base's, refitting the width where "
                   "the rule alone misses; 'none': every candidate as the rule scales it")
    p.add_argument("--evaluate", default="macs", choices=sorted(EVALUATORS),
                   help="evaluator (higher score is better)")
    p.add_argument("--out", help="write all candidates as CSV here (pandas, atomic; default: "
                   "none)")
    p.add_argument("--top", type=int, default=10, help="rows to print")
    p.add_argument("--divisor", type=int, default=8, help="channel divisor")
    g = p.add_argument_group("proxy evaluator")
    g.add_argument("--dataset", default="fashion-mnist", help="dataset of the proxy training")
    g.add_argument("--proxy-resolution", type=int, default=32,
                   help="base resolution for proxy training")
    g.add_argument("--subset", type=int, default=2000, help="training images")
    g.add_argument("--val-size", type=int, default=5000, help="validation images")
    g.add_argument("--epochs", type=float, default=1.0, help="training epochs per candidate")
    g.add_argument("--seed", type=int, default=0, help="seed of initialisation and training")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda")


def grid(base: NetworkSpec, phi: float = 1.0, target: float = 2.0, tol: float = 0.1,
         step: float = 0.05, evaluate: str = "macs", divisor: int = 8,
         mac_tol: float | None = None, **ctx: Any) -> list[dict[str, Any]]:
    """Score every grid candidate; rows sorted best first.

    ``mac_tol``: keep only candidates whose realised, rounded model costs ``target**phi`` x the
    base's MACs within ``+-mac_tol``, the width refitted where the rule alone misses
    (:func:`scaling.compound.match.matched_candidates`; rows gain ``refit`` and the width ``w``
    used); None scores every candidate as the rule scales it."""
    if evaluate not in EVALUATORS:
        raise UsageError(f"--evaluate={evaluate!r} is not allowed; expected one of "
                         f"{sorted(EVALUATORS)}")
    if phi < 0:
        raise UsageError(f"--phi={phi:g} is not allowed; expected >= 0")
    fn = _evaluator(evaluate)
    ctx.update(phi=phi, target=target)
    points = candidates(target, tol, step)
    if mac_tol is None:
        plans = [{"alpha": a, "beta": b, "gamma": g, "w": b ** phi,
                  "spec": compound(base, phi, a, b, g, divisor=divisor)} for a, b, g in points]
    else:
        if not 0 < mac_tol < 1:
            raise UsageError(f"--mac-tol={mac_tol:g} is not allowed; expected a fraction in "
                             "(0, 1), or none")
        plans = matched_candidates(base, points, phi, target, mac_tol, divisor=divisor)
    rows = []
    for plan in plans:
        a, b, g, scaled = plan["alpha"], plan["beta"], plan["gamma"], plan["spec"]
        metrics = fn(base, scaled, ctx)
        extra = {} if mac_tol is None else {"refit": plan["refit"]}
        rows.append({"alpha": a, "beta": b, "gamma": g, "product": a * b * b * g * g,
                     "d": a ** phi, "w": plan["w"], "r": g ** phi, **extra,
                     "resolution": scaled.resolution, "blocks": scaled.num_blocks, **metrics})
    rows.sort(key=lambda r: -r["score"])
    return rows


def run_grid(args: argparse.Namespace) -> int:
    """``python -m scaling.compound grid``: score the grid, print the top rows, write the CSV."""
    check_writable("--out", args.out)  # before the (possibly trained) grid
    check_option("--top", args.top, 0)
    phi = parse_number(args.phi, "--phi")
    nums = {n: parse_number(getattr(args, n), f"--{n}") for n in ("target", "tol", "step")}
    base = resolve_spec(args.base, "--base")
    ctx: dict[str, Any] = {}
    if args.evaluate == "proxy":
        if args.proxy_resolution < 8:
            raise UsageError(f"--proxy-resolution={args.proxy_resolution} is not allowed; "
                             "expected >= 8")
        base = base.replace(resolution=args.proxy_resolution)
        ctx.update(dataset=args.dataset, subset=args.subset, epochs=args.epochs,
                   val_size=args.val_size, seed=args.seed, device=args.device)
    mac_tol = None if str(args.mac_tol).lower() == "none" else parse_number(args.mac_tol,
                                                                          "--mac-tol")
    rows = grid(base, phi, evaluate=args.evaluate, divisor=args.divisor, mac_tol=mac_tol,
                **nums, **ctx)
    if not rows:
        raise UsageError(f"no grid point has |alpha*beta^2*gamma^2 - {nums['target']:g}| <= "
                         f"{nums['tol']:g} at step {nums['step']:g}"
                         + ("" if mac_tol is None else f" and realised MACs within "
                            f"{100 * mac_tol:g}% of {nums['target']:g}**phi x the base's"))
    if args.out:
        import pandas as pd

        from scaling.files import atomic_write_text

        atomic_write_text(args.out, pd.DataFrame(rows).to_csv(index=False))
    cols = [c for c in rows[0] if not c.startswith("_")]
    shown = rows[:args.top]
    print(f"{len(rows)} candidates for {base.name} at phi={phi:g}, target {nums['target']:g} "
          f"+- {nums['tol']:g}, step {nums['step']:g}, evaluator {args.evaluate!r} "
          "(MACs unit: multiply-accumulates)")
    if shown:
        print(format_table(cols, ([format_cell(r[c]) for c in cols] for r in shown), left=0))
    if args.out:
        print(f"wrote {args.out} ({len(rows)} rows)")
    return 0
