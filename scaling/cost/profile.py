"""Per-stage complexity of a zoo model or a spec file: ``python -m scaling.profile``.

    python -m scaling.profile efficientnet_b0 [--res 300] [--json] [--trace]
    python -m scaling.profile my_spec.json --latency --batch 8 --threads 2 --device cpu

The table is analytic (:func:`scaling.cost.complexity.complexity`, no model is built). ``--trace``
builds the model and adds the traced counts (params, FlopCounterMode MACs, fvcore activations) and
fvcore's FLOP total by operator, which also counts norms and pools: the difference from the
analytic MACs is shown per operator. ``--latency`` adds the median forward latency after warm-up.
Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scaling.cli import MAX_THREADS, Parser, check_option, command, format_table, resolve_spec
from scaling.cost.complexity import UNIT, Complexity, complexity
from scaling.ir import NetworkSpec
from scaling.ir.limits import MAX_RESOLUTION

_CONV_LINEAR = ("conv", "linear", "addmm", "matmul", "mm", "bmm", "einsum")


PROG = "python -m scaling.profile"


def build_parser() -> Parser:
    p = Parser(PROG, description="Per-stage params, MACs and activations of a zoo model or "
                                 "spec file.")
    p.add_argument("model", help="zoo model name, a .json/.yaml spec file, "
                   "a search's best.json (FILE#N: trial N) or a train --save checkpoint")
    p.add_argument("--res", type=int, default=None,
                   help="input resolution (default: the spec's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--trace", action="store_true",
                   help="build the model and add traced counts and fvcore's by-operator table")
    p.add_argument("--latency", action="store_true", help="add the median forward latency")
    p.add_argument("--batch", type=int, default=1, help="latency batch size")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for --latency (default: torch's)")
    p.add_argument("--device", default="cpu", help="device for --latency")
    p.add_argument("--repeats", type=int, default=10, help="timed passes for --latency")
    return p


def _fmt(n: int) -> str:
    return f"{n:,}"


def format_complexity(spec: NetworkSpec, c: Complexity) -> str:
    """The per-part table and totals as aligned text."""
    head = ["part", "output (C,H,W)", "params", UNIT, "activations"]
    body = [[r.name, "x".join(map(str, r.shape)), r.params, r.macs, r.activations]
            for r in c.rows]
    body.append(["total", "", c.params, c.macs, c.activations])
    title = (f"{spec.name or 'spec'} at {c.resolution}x{c.resolution}, batch 1 "
             f"({UNIT} = conv + linear multiply-adds)")
    return title + "\n" + format_table(head, body, left=2, rules=(-1, len(body) - 2))


def trace_report(spec: NetworkSpec, c: Complexity) -> dict[str, Any]:
    """Build the model; traced counts, fvcore's by-operator FLOPs and their gap to the MACs."""
    from scaling import build_model  # the lazy facade: torch loads here, on use
    from scaling.cost.counting import count_params, fvcore_report, traced_macs

    model = build_model(spec)
    res, cin = c.resolution, spec.in_channels
    fv = fvcore_report(model, res, cin)
    traced = {"params": count_params(model), "macs": traced_macs(model, res, cin),
              "activations": fv.activations}
    extra = {op: n for op, n in fv.by_operator.items() if op not in _CONV_LINEAR}
    return {"traced": traced,
            "analytic_minus_traced": {k: getattr(c, k) - v for k, v in traced.items()},
            "fvcore_total": fv.total, "fvcore_by_operator": fv.by_operator,
            "fvcore_minus_macs": fv.total - c.macs, "fvcore_extra_operators": extra,
            "fvcore_unsupported": fv.unsupported}


def format_trace(t: dict[str, Any], c: Complexity) -> str:
    lines = ["", f"{'built model':<22} {'analytic':>16}  {'traced':>16}  {'difference':>10}"]
    for k in ("params", "macs", "activations"):
        label = UNIT if k == "macs" else k
        lines.append(f"{label:<22} {_fmt(getattr(c, k)):>16}  {_fmt(t['traced'][k]):>16}  "
                     f"{t['analytic_minus_traced'][k]:>10,}")
    lines.append("")
    lines.append(f"fvcore FlopCountAnalysis total {_fmt(t['fvcore_total'])} "
                 f"(1 per MAC, plus norm and pool terms); by operator:")
    for op, n in t["fvcore_by_operator"].items():
        note = "" if op in _CONV_LINEAR else "  (not a MAC: counted by fvcore only)"
        lines.append(f"  {op:<22} {_fmt(n):>16}{note}")
    lines.append(f"  fvcore total - analytic {UNIT} = {_fmt(t['fvcore_minus_macs'])} "
                 f"= sum of the non-conv/linear operators "
                 f"{_fmt(sum(t['fvcore_extra_operators'].values()))}")
    if t["fvcore_unsupported"]:
        skipped = ", ".join(sorted(t["fvcore_unsupported"]))
        lines.append(f"  fvcore skipped (counted 0): {skipped}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    check_option("--res", args.res, 1, MAX_RESOLUTION)
    for name in ("batch", "repeats"):
        check_option(f"--{name}", getattr(args, name), 1)
    check_option("--threads", args.threads, 1, MAX_THREADS)
    spec = resolve_spec(args.model, "model")
    c = complexity(spec, args.res)
    out: dict[str, Any] = {"model": spec.name or args.model, "complexity": c.to_dict()}
    text = [format_complexity(spec, c)]
    if args.trace:
        t = trace_report(spec, c)
        out["trace"] = t
        text.append(format_trace(t, c))
    if args.latency:
        from scaling import build_model  # the lazy facade: torch loads here, on use
        from scaling.cost.counting import latency

        seconds = latency(build_model(spec), c.resolution, spec.in_channels, batch=args.batch,
                          threads=args.threads, device=args.device, repeats=args.repeats)
        out["latency"] = {"median_ms": seconds * 1e3, "batch": args.batch,
                          "threads": args.threads, "device": args.device}
        text.append(f"\nmedian forward latency: {seconds * 1e3:.2f} ms (batch {args.batch}, "
                    f"threads {args.threads or 'default'}, device {args.device}, "
                    f"{args.repeats} passes after warm-up)")
    out["text"] = "\n".join(text)
    return out


@command(PROG, errors=(ValueError, TypeError, KeyError, OSError))
def main(argv: list[str]) -> int:
    """``python -m scaling.profile MODEL [options]``; bad input: one line, exit code 2."""
    args = build_parser().parse_args(argv)
    out = run(args)
    if args.json:
        out.pop("text")
        print(json.dumps(out, indent=2))
    else:
        print(out["text"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
