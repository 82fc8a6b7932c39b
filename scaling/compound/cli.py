"""``python -m scaling.compound``: compound-scale a base spec and report what changed.

    python -m scaling.compound --phi 3 [--base NAME|spec.json] [--alpha A --beta B --gamma G]
                               [--json] [--out spec.json]
    python -m scaling.compound --phi 0:7            # one row per phi
    python -m scaling.compound grid --base NAME --phi 1 --target 2 --tol 0.1 --step 0.05 ...
    python -m scaling.compound match --base NAME --macs 2M      # the realised model at a target

A small net's rounding can realise far more MACs than the rule's ideal ``1.92**phi``; the report
then warns on stderr and names ``match``, which refits the width to the target
(:mod:`scaling.compound.match_cli`).

This path imports no torch, pandas or matplotlib (the grid's proxy evaluator and CSV do, lazily).
Bad input gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from scaling.cli import (
    Parser,
    UsageError,
    check_writable,
    command,
    parse_number,
    resolve_spec,
)
from scaling.compound.grid import GRID_COLUMNS, add_grid_arguments, run_grid
from scaling.compound.match_cli import add_match_arguments, run_match
from scaling.compound.rule import (
    ALPHA,
    BETA,
    EFFICIENTNET,
    GAMMA,
    coefficients,
    compound,
    ideal_ratio,
    scale,
)
from scaling.cost import complexity
from scaling.ir import NetworkSpec
from scaling.ir.limits import MAX_BLOCKS

DEFAULT_BASE = "efficientnet_b0"


def parse_phis(text: str) -> list[float]:
    """'3' -> [3.0]; 'a:b' -> a, a+1, ..., b; 'a:b:s' -> a, a+s, ..., b (inclusive)."""
    parts = text.split(":")
    if len(parts) == 1:
        phis = [parse_number(parts[0], "--phi")]
    elif len(parts) in (2, 3):
        lo, hi = parse_number(parts[0], "--phi start"), parse_number(parts[1], "--phi stop")
        step = parse_number(parts[2], "--phi step") if len(parts) == 3 else 1.0
        if step <= 0 or hi < lo:
            raise UsageError(f"--phi {text!r} is not allowed; expected start:stop[:step] with "
                             "stop >= start and step > 0")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        if n > 1000:
            raise UsageError(f"--phi {text!r} gives {n} values; expected at most 1000")
        phis = [round(lo + i * step, 12) for i in range(n)]
    else:
        raise UsageError(f"--phi {text!r} is not allowed; expected a number or start:stop[:step]")
    for p in phis:
        if p < 0:
            raise UsageError(f"--phi {p:g} is not allowed; expected phi >= 0")
    return phis


def load_base(name: str) -> NetworkSpec:
    """A zoo name or a file holding a spec (:func:`scaling.cli.resolve_spec`)."""
    return resolve_spec(name, "--base")


def _ratio(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None or not a else b / a


def is_efficientnet(spec: NetworkSpec) -> bool:
    return spec.family == "efficientnet"


def official_rows(base: NetworkSpec) -> list[dict[str, Any]]:
    """The official EfficientNet rows scaled from B0 (the base if it is B0, else the zoo's)."""
    b0 = base
    if base.name != "efficientnet_b0":
        b0 = load_base("efficientnet_b0")
    rows = []
    for row in EFFICIENTNET.values():
        spec = scale(b0, row=row)
        c = complexity(spec)
        rows.append({"name": row.name, "d": row.depth, "w": row.width,
                     "resolution": row.resolution, "dropout": row.dropout,
                     "blocks": spec.num_blocks, "params": c.params, "macs": c.macs})
    return rows


def nearest_official(rows: list[dict[str, Any]], macs: int | None) -> dict[str, Any] | None:
    """The row nearest in MACs on a log scale (a ratio, not a difference)."""
    rows = [r for r in rows if r["macs"]]
    if not rows or not macs:
        return None
    return min(rows, key=lambda r: abs(math.log(r["macs"] / macs)))


def report(base: NetworkSpec, phi: float, alpha: float, beta: float, gamma: float,
           scaled: NetworkSpec | None = None, official: list | None = None) -> dict[str, Any]:
    """Everything the CLI prints about scaling ``base`` by ``phi``, as plain data."""
    d, w, r = coefficients(phi, alpha, beta, gamma)
    scaled = compound(base, phi, alpha, beta, gamma) if scaled is None else scaled
    c0, c1 = complexity(base), complexity(scaled)
    p0, m0, p1, m1 = c0.params, c0.macs, c1.params, c1.macs
    last0, last1 = base.stages[-1].out_channels, scaled.stages[-1].out_channels
    out: dict[str, Any] = {
        "base": base.name, "phi": phi, "alpha": alpha, "beta": beta, "gamma": gamma,
        "product": alpha * beta ** 2 * gamma ** 2, "d": d, "w": w, "r": r,
        "depth": {"raw": d, "blocks_base": base.num_blocks, "blocks": scaled.num_blocks,
                  "realized": scaled.num_blocks / base.num_blocks},
        "width": {"raw": w, "last_base": last0, "last": last1, "realized": last1 / last0},
        "resolution": {"raw": base.resolution * r, "base": base.resolution,
                       "rounded": scaled.resolution,
                       "realized": scaled.resolution / base.resolution},
        "stem": [list(base.stem.channels), list(scaled.stem.channels)],
        "head": [base.head.channels, scaled.head.channels],
        "stages": [{"stage": i, "block": a.block, "kernel": a.kernel, "stride": a.stride,
                    "channels": [a.out_channels, b.out_channels],
                    "repeats": [a.repeats, b.repeats]}
                   for i, (a, b) in enumerate(zip(base.stages, scaled.stages))],
        "unit": "MACs",
        "params": {"base": p0, "scaled": p1, "ratio": _ratio(p0, p1)},
        "macs": {"base": m0, "scaled": m1, "ratio": _ratio(m0, m1)},
        "ideal_ratio": ideal_ratio(phi, alpha, beta, gamma),
    }
    if official is not None:
        nominal = [o for o in official if float(phi).is_integer() and o["name"] == f"b{phi:g}"]
        out["official"] = {"nearest": nearest_official(official, m1),
                           "nominal": nominal[0] if nominal else None}
    return out


def _n(v: Any, spec: str = ",") -> str:
    return "n/a" if v is None else format(v, spec)


def render(rep: dict[str, Any]) -> str:
    """The text report of one phi."""
    dep, wid, res = rep["depth"], rep["width"], rep["resolution"]
    lines = [
        f"base: {rep['base']} ({res['base']}x{res['base']})",
        f"alpha = {rep['alpha']:g}, beta = {rep['beta']:g}, gamma = {rep['gamma']:g}, "
        f"alpha*beta^2*gamma^2 = {rep['product']:.6g}",
        f"phi = {rep['phi']:g}",
        f"d = alpha^phi = {rep['d']:.7g}   repeats ceil(n*d): {dep['blocks_base']} -> "
        f"{dep['blocks']} blocks (x{dep['realized']:.4g})",
        f"w = beta^phi = {rep['w']:.7g}   channels make_divisible(c*w): last stage "
        f"{wid['last_base']} -> {wid['last']} (x{wid['realized']:.4g})",
        f"r = gamma^phi = {rep['r']:.7g}   resolution {res['base']}*r = {res['raw']:.6g} -> "
        f"{res['rounded']} (x{res['realized']:.4g})",
        "",
        f"{'stage':<6}{'block':<14}{'k':>3}{'s':>3}   {'channels':<16}{'repeats':<10}",
        f"{'stem':<6}{'conv':<14}{'':>3}{'':>3}   "
        f"{'/'.join(map(str, rep['stem'][0]))} -> {'/'.join(map(str, rep['stem'][1]))}",
    ]
    for s in rep["stages"]:
        ch = f"{s['channels'][0]} -> {s['channels'][1]}"
        rp = f"{s['repeats'][0]} -> {s['repeats'][1]}"
        lines.append(f"{s['stage']:<6}{s['block']:<14}{s['kernel']:>3}{s['stride']:>3}   "
                     f"{ch:<16}{rp:<10}")
    if rep["head"][0] is not None:
        lines.append(f"{'head':<6}{'conv1x1':<14}{'':>6}   {rep['head'][0]} -> {rep['head'][1]}")
    p, m = rep["params"], rep["macs"]
    lines += [
        "",
        f"{'':<8}{'params':>16}{'MACs':>18}",
        f"{'base':<8}{_n(p['base']):>16}{_n(m['base']):>18}",
        f"{'scaled':<8}{_n(p['scaled']):>16}{_n(m['scaled']):>18}",
        f"{'ratio':<8}{_n(p['ratio'], '.4f'):>16}{_n(m['ratio'], '.4f'):>18}",
        f"ideal MAC ratio (alpha*beta^2*gamma^2)^phi = {rep['ideal_ratio']:.4f}",
    ]
    off = rep.get("official") or {}
    cols = [("rule phi=" + format(rep["phi"], "g"), {
        "d": rep["d"], "w": rep["w"], "resolution": res["rounded"], "blocks": dep["blocks"],
        "params": p["scaled"], "macs": m["scaled"]})]
    if off.get("nominal"):
        cols.append((f"{off['nominal']['name']} (phi={rep['phi']:g})", off["nominal"]))
    if off.get("nearest") and off["nearest"] is not off.get("nominal"):
        cols.append((f"{off['nearest']['name']} (nearest MACs)", off["nearest"]))
    if len(cols) > 1:
        near = off["nearest"]["name"].upper() if off.get("nearest") else "n/a"
        lines += ["", f"pure rule vs the official EfficientNet rows (nearest in MACs: {near}):",
                  f"{'':<12}" + "".join(f"{c:>22}" for c, _ in cols)]
        for key, spec in (("d", ".6g"), ("w", ".6g"), ("resolution", "d"), ("blocks", "d"),
                          ("params", ","), ("macs", ",")):
            label = "MACs" if key == "macs" else key
            lines.append(f"{label:<12}" + "".join(f"{_n(v[key], spec):>22}" for _, v in cols))
    return "\n".join(lines)


def render_rows(reps: list[dict[str, Any]]) -> str:
    """One line per phi; the nearest official EfficientNet row in MACs is a column only for an
    EfficientNet base (the official rows scale B0, nothing else)."""
    official = any((rep.get("official") or {}).get("nearest") for rep in reps)
    head = (f"{'phi':>6}{'d':>9}{'w':>9}{'r':>9}{'res':>6}{'blocks':>8}{'params':>14}"
            f"{'MACs':>17}{'ratio':>9}{'ideal':>9}"
            + ("  nearest official (MACs)" if official else ""))
    lines = [head]
    for rep in reps:
        near = (rep.get("official") or {}).get("nearest")
        lines.append(
            f"{rep['phi']:>6g}{rep['d']:>9.4f}{rep['w']:>9.4f}{rep['r']:>9.4f}"
            f"{rep['resolution']['rounded']:>6}{rep['depth']['blocks']:>8}"
            f"{_n(rep['params']['scaled']):>14}{_n(rep['macs']['scaled']):>17}"
            f"{_n(rep['macs']['ratio'], '.3f'):>9}{rep['ideal_ratio']:>9.3f}"
            + (f"  {near['name'] if near else 'n/a'}" if official else ""))
    return "\n".join(lines)


PROG = "python -m scaling.compound"


def build_parser() -> Parser:
    p = Parser(PROG, description="Compound scaling (Tan & Le 2019): d=alpha^phi, w=beta^phi, "
                                 "r=gamma^phi. Subcommand 'grid' searches alpha, beta, gamma.")
    p.add_argument("--phi", help="a number, or start:stop[:step] (inclusive); required")
    p.add_argument("--base", default=DEFAULT_BASE, help="zoo name, spec .json/.yaml file, "
                   "a search's best.json (FILE#N: trial N) or a train --save checkpoint")
    p.add_argument("--alpha", default=str(ALPHA), help="depth base (>= 1)")
    p.add_argument("--beta", default=str(BETA), help="width base (>= 1)")
    p.add_argument("--gamma", default=str(GAMMA), help="resolution base (>= 1)")
    p.add_argument("--divisor", type=int, default=8, help="channel divisor")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--out", help="write the scaled spec (JSON) here, atomically (default: none)")
    sub = p.add_subparsers(dest="command", metavar="{grid,match}")
    add_grid_arguments(sub.add_parser(
        "grid", prog=f"{PROG} grid", formatter_class=p.formatter_class,
        help="grid search of alpha, beta, gamma (Tan & Le 2019, step 1)",
        description="Grid search of alpha, beta, gamma under alpha*beta^2*gamma^2 ~ target "
                    "(Tan & Le 2019, step 1).", epilog=GRID_COLUMNS))
    from scaling.compound import match_cli

    add_match_arguments(sub.add_parser(
        "match", prog=f"{PROG} match", formatter_class=p.formatter_class,
        help="the base scaled to a MAC target, realised (scaling.compound.match)",
        description=(match_cli.__doc__ or "").split("\n\n", 1)[1]))
    return p


#: realised / ideal MAC ratio beyond which the report warns (rounding of a small net)
WARN_OFF = 0.10


def warn_off_ratio(reps: list[dict[str, Any]], base_name: str) -> None:
    """One line on stderr when a scaled model's realised MAC ratio misses the rule's ideal by
    more than :data:`WARN_OFF`, naming the matcher that lands on the target."""
    import sys

    off = [r for r in reps if r["macs"]["ratio"] and r["phi"] > 0
           and abs(r["macs"]["ratio"] / r["ideal_ratio"] - 1) > WARN_OFF]
    if not off:
        return
    worst = max(off, key=lambda r: abs(math.log(r["macs"]["ratio"] / r["ideal_ratio"])))
    cases = "; ".join(f"phi {r['phi']:g}: x{r['macs']['ratio']:.3g} against the ideal "
                      f"x{r['ideal_ratio']:.3g}" for r in off[:4])
    cases += "; ..." if len(off) > 4 else ""
    coeffs = "".join(f" --{n} {v:g}" for n, v, d in zip(("alpha", "beta", "gamma"),
                                                        (worst["alpha"], worst["beta"],
                                                         worst["gamma"]), (ALPHA, BETA, GAMMA))
                     if v != d)
    print(f"{PROG}: warning: the realised MACs miss the rule's ideal by more than "
          f"{100 * WARN_OFF:g}% ({cases}), from rounding channels (make_divisible), repeats "
          f"(ceil) and pixels; for the model at the ideal MACs run: {PROG} match --base "
          f"{base_name} --phi {worst['phi']:g}{coeffs} --ratio {worst['ideal_ratio']:.4g}",
          file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Scale the base by each phi and print the report."""
    if args.phi is None:
        raise UsageError("the following arguments are required: --phi")
    phis = parse_phis(args.phi)
    abg = [parse_number(getattr(args, n), f"--{n}") for n in ("alpha", "beta", "gamma")]
    for n, v in zip(("alpha", "beta", "gamma"), abg):
        if v < 1:
            raise UsageError(f"--{n}={v:g} is not allowed; expected >= 1")
    if args.out and len(phis) != 1:
        raise UsageError("--out needs a single --phi value, not a range")
    check_writable("--out", args.out)
    base = load_base(args.base)
    for phi in phis:
        d = coefficients(phi, *abg)[0]
        blocks = sum(math.ceil(s.repeats * d) for s in base.stages)
        if blocks > MAX_BLOCKS:
            raise UsageError(f"--phi {phi:g} gives {blocks} blocks (d = {d:.4g}); expected at "
                             f"most {MAX_BLOCKS}")
    official = official_rows(base) if is_efficientnet(base) else None
    reps, scaled = [], None
    for phi in phis:
        scaled = compound(base, phi, *abg, divisor=args.divisor)
        reps.append(report(base, phi, *abg, scaled=scaled, official=official))
    warn_off_ratio(reps, args.base)
    if args.out:
        from scaling.files import atomic_write_text

        atomic_write_text(args.out, scaled.to_json() + "\n")  # type: ignore[union-attr]
    if args.json:
        print(json.dumps(reps[0] if len(reps) == 1 else reps, indent=2))
    else:
        print(render(reps[0]) if len(reps) == 1 else render_rows(reps))
        if args.out:
            print(f"\nwrote {args.out}")
    return 0


@command(PROG, errors=(ValueError, TypeError, OSError, OverflowError))
def main(argv: list[str]) -> int:
    """Entry point: ``grid``, ``match`` or the scaling report; bad input is one line and exit
    code 2."""
    args = build_parser().parse_args(argv)
    if args.command == "match":
        return run_match(args)
    return run_grid(args) if args.command == "grid" else run(args)
