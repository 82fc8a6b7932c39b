"""``python -m scaling.compound match``: a base scaled to a MAC target, exactly.

    python -m scaling.compound match --base NAME|spec.json (--macs 2M | --ratio 1.92)
        [--by compound|width|depth|resolution] [--phi P] [--tol 0.05] [--json] [--out s.json]

The rule ``d, w, r = alpha**phi, beta**phi, gamma**phi`` promises MACs x
``(alpha*beta**2*gamma**2)**phi`` (Tan & Le 2019, eq. 3); the rounding of a small net's channels,
repeats and pixels can realise far more (2.69x for 1.92x). The matcher
(:mod:`scaling.compound.match`) refits one knob until the *realised* model costs the target:
``compound`` keeps the rule's depth and resolution at ``phi`` and refits the width (``phi``
defaults to the one whose ideal ratio is the target), ``width``/``depth``/``resolution`` scale
that dimension alone. Bad input: one line, exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from scaling.cli import UsageError, check_writable, parse_number, resolve_spec
from scaling.compound.match import fit_compound, fit_depth, fit_resolution, fit_width, macs_of
from scaling.compound.rule import ALPHA, BETA, GAMMA
from scaling.cost import complexity
from scaling.cost.units import format_macs, parse_budget

DIMENSIONS = ("compound", "width", "depth", "resolution")


def add_match_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m scaling.compound match``."""
    p.add_argument("--base", default="efficientnet_b0",
                   help="zoo name, spec file, or a search's best.json (FILE#N: trial N)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--macs", help="target MACs, e.g. 2M, 1.5G, 400000000; this or --ratio "
                        "is required")
    target.add_argument("--ratio", help="target as a multiple of the base's MACs; this or --macs "
                        "is required")
    p.add_argument("--by", default="compound", choices=DIMENSIONS,
                   help="the knob refitted: compound (the rule's depth and resolution at phi, "
                   "width refitted) or one dimension alone")
    p.add_argument("--phi", help="compound: phi of depth and resolution (default: log(ratio) / "
                   "log(alpha*beta^2*gamma^2), the phi whose ideal ratio is the target)")
    p.add_argument("--alpha", default=str(ALPHA), help="depth base (>= 1)")
    p.add_argument("--beta", default=str(BETA), help="width base (>= 1)")
    p.add_argument("--gamma", default=str(GAMMA), help="resolution base (>= 1)")
    p.add_argument("--tol", default="0.05", help="allowed |realised / target - 1|")
    p.add_argument("--divisor", type=int, default=8, help="channel divisor the base was built "
                   "with (finer ones are tried when it cannot land)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--out", help="write the matched spec (JSON) here, atomically (default: none)")


def _target(args: argparse.Namespace, base_macs: int) -> float:
    if args.macs is None and args.ratio is None:
        raise UsageError("one of --macs or --ratio is required")
    if args.macs is not None:
        try:
            return float(parse_budget(args.macs))
        except ValueError as exc:
            raise UsageError(f"--macs: {exc}") from None
    ratio = parse_number(args.ratio, "--ratio")
    if ratio <= 0:
        raise UsageError(f"--ratio={args.ratio} is not allowed; expected a number > 0")
    return ratio * base_macs


def run_match(args: argparse.Namespace) -> int:
    """Fit the base to the target and print what was fitted."""
    check_writable("--out", args.out)
    abg = [parse_number(getattr(args, n), f"--{n}") for n in ("alpha", "beta", "gamma")]
    for n, v in zip(("alpha", "beta", "gamma"), abg):
        if v < 1:
            raise UsageError(f"--{n}={v:g} is not allowed; expected >= 1")
    tol = parse_number(args.tol, "--tol")
    if not 0 < tol < 1:
        raise UsageError(f"--tol={args.tol} is not allowed; expected a fraction in (0, 1)")
    base = resolve_spec(args.base, "--base")
    m0 = macs_of(base)
    target = _target(args, m0)
    phi = None
    if args.by == "compound":
        product = abg[0] * abg[1] ** 2 * abg[2] ** 2
        if args.phi is not None:
            phi = parse_number(args.phi, "--phi")
        elif product > 1:
            phi = math.log(target / m0) / math.log(product)
        else:
            raise UsageError("--by compound needs --phi when alpha*beta^2*gamma^2 = 1")
        if phi < 0:
            raise UsageError(f"--phi={phi:g} is not allowed; expected phi >= 0 (a target at "
                             "least the base's MACs, or --by width|depth|resolution)")
        fit = fit_compound(base, phi, *abg, ratio=target / m0, tol=tol, divisor=args.divisor)
    elif args.by == "width":
        fit = fit_width(base, target, tol=tol, divisors=_divisors(args.divisor))
    elif args.by == "depth":
        fit = fit_depth(base, target, tol=tol)
    else:
        fit = fit_resolution(base, target, tol=tol)
    rep = _report(base, fit, args.by, phi, abg)
    if args.out:
        from scaling.files import atomic_write_text

        atomic_write_text(args.out, fit.spec.to_json() + "\n")
    print(json.dumps(rep, indent=2) if args.json else _render(rep))
    if args.out and not args.json:
        print(f"wrote {args.out}")
    return 0


def _divisors(divisor: int) -> tuple[int, ...]:
    from scaling.compound.match import finer

    return finer(divisor)


def _report(base: Any, fit: Any, by: str, phi: float | None, abg: list[float]) -> dict[str, Any]:
    c0, c1 = complexity(base), complexity(fit.spec)
    knob = {"compound": "width", "width": "width", "depth": "depth factor",
            "resolution": "resolution factor"}[by]
    return {"base": base.name, "by": by, "phi": phi,
            "alpha": abg[0], "beta": abg[1], "gamma": abg[2], "knob": knob, "value": fit.knob,
            "divisor": fit.divisor, "rounding": fit.rounding, "unit": "MACs",
            "target": round(fit.target), "macs": {"base": c0.macs, "matched": c1.macs},
            "params": {"base": c0.params, "matched": c1.params},
            "ratio_to_base": c1.macs / c0.macs, "ratio_to_target": fit.ratio,
            "blocks": [base.num_blocks, fit.spec.num_blocks],
            "resolution": [base.resolution, fit.spec.resolution],
            "last_channels": [base.stages[-1].out_channels, fit.spec.stages[-1].out_channels]}


def _render(rep: dict[str, Any]) -> str:
    how = (f"compound at phi = {rep['phi']:.4g} (depth alpha^phi, resolution gamma^phi), width "
           "refitted" if rep["by"] == "compound" else f"{rep['by']} alone")
    m, p = rep["macs"], rep["params"]
    return "\n".join([
        f"base: {rep['base']}, {format_macs(m['base'])} MACs; target "
        f"{format_macs(rep['target'])} MACs (x{rep['target'] / m['base']:.4g})",
        f"matched by {how}: {rep['knob']} {rep['value']:.6g} (divisor {rep['divisor']}, "
        f"{rep['rounding']} rounding)",
        f"realised: {m['matched']:,} MACs = x{rep['ratio_to_base']:.4f} the base, "
        f"{rep['ratio_to_target']:.4f} of the target; params {p['base']:,} -> {p['matched']:,}",
        f"blocks {rep['blocks'][0]} -> {rep['blocks'][1]}, resolution {rep['resolution'][0]} -> "
        f"{rep['resolution'][1]}, last stage {rep['last_channels'][0]} -> "
        f"{rep['last_channels'][1]} channels",
    ])
