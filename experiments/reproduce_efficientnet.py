"""EfficientNet-B0..B7 params and MACs from the IR beside the paper's (Tan & Le 2019, Table 2).

For each row, ``scale(B0, official row)`` (:mod:`scaling.compound.rule`) is counted analytically
(:mod:`scaling.cost.complexity`) at the paper's resolution (224/240/260/300/380/456/528/600) and at
torchvision's (B2: 288), and compared with the paper's rounded figures and with the exact
torchvision figures of ``tests/data/reference.csv`` (a copy of shared/reference.csv; or
``--reference``). No training.

Writes ``results/efficientnet/reproduce.csv`` and ``reproduce.md`` with provenance.

    python experiments/reproduce_efficientnet.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "results" / "efficientnet"
REFERENCE = ROOT / "tests" / "data" / "reference.csv"  # copy of shared/reference.csv

#: Tan & Le 2019, Table 2 (ImageNet): params, FLOPs (multiply-adds), top-1 (%), as printed.
PAPER: dict[str, tuple[float, float, float]] = {
    "b0": (5.3e6, 0.39e9, 77.1), "b1": (7.8e6, 0.70e9, 79.1), "b2": (9.2e6, 1.0e9, 80.1),
    "b3": (12e6, 1.8e9, 81.6), "b4": (19e6, 4.2e9, 82.9), "b5": (30e6, 9.9e9, 83.6),
    "b6": (43e6, 19e9, 84.0), "b7": (66e6, 37e9, 84.3),
}
#: torchvision's evaluation resolutions (its weights' transforms).
TORCHVISION_RES = {"b0": 224, "b1": 240, "b2": 288, "b3": 300, "b4": 380, "b5": 456,
                   "b6": 528, "b7": 600}


def _sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to the paper's precision (2 significant digits, e.g. 5.3M, 0.39B, 12M)."""
    from math import floor, log10

    return round(x, -int(floor(log10(abs(x)))) + digits - 1)


def table(reference: Path | None = REFERENCE) -> list[dict[str, Any]]:
    """One row per B0..B7: IR figures at the paper's and torchvision's resolutions, the paper's,
    and reference.csv's exact torchvision figures where given."""
    import pandas as pd

    from scaling.compound import official, scale
    from scaling.cost import complexity
    from scaling.zoo import get_spec

    ref = None
    if reference is not None and Path(reference).is_file():
        ref = pd.read_csv(reference).set_index("model")
    b0 = get_spec("efficientnet_b0")
    rows = []
    for name, (p_params, p_macs, p_top1) in PAPER.items():
        row_c = official(name)
        spec = scale(b0, row=row_c)
        at_paper = complexity(spec, row_c.resolution)
        at_tv = complexity(spec, TORCHVISION_RES[name])
        row: dict[str, Any] = {
            "model": f"efficientnet_{name}", "width": row_c.width, "depth": row_c.depth,
            "blocks": spec.num_blocks, "paper_res": row_c.resolution,
            "torchvision_res": TORCHVISION_RES[name],
            "ir_params": int(at_paper.params), "paper_params": p_params,
            "ir_macs_paper_res": int(at_paper.macs), "paper_macs": p_macs,
            "ir_macs_torchvision_res": int(at_tv.macs), "paper_top1": p_top1,
            "params_vs_paper": round(at_paper.params / p_params, 4),
            "macs_vs_paper": round(at_paper.macs / p_macs, 4),
            "params_rounds_to_paper": _sig(at_paper.params) == _sig(p_params),
            "macs_rounds_to_paper": _sig(at_paper.macs) == _sig(p_macs),
            "zoo_params": int(complexity(get_spec(f"efficientnet_{name}")).params),
        }
        if ref is not None and f"efficientnet_{name}" in ref.index:
            r = ref.loc[f"efficientnet_{name}"]
            row.update(ref_params=int(r["params"]), ref_macs_torchvision_res=int(r["macs_native"]),
                       params_equal_ref=int(r["params"]) == row["ir_params"],
                       macs_equal_ref=int(r["macs_native"]) == row["ir_macs_torchvision_res"])
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "EfficientNet B0-B7 from the IR (`scale(B0, official row)`) beside Tan & Le 2019, "
        "Table 2. MACs = conv + linear multiply-accumulates. Paper figures are rounded as "
        "printed; torchvision figures are exact (reference.csv).", "",
        "| model | res (paper / tv) | params IR | params paper | MACs IR @paper res | "
        "MACs paper | IR / paper | MACs IR @tv res | = torchvision | paper top-1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        eq = r.get("macs_equal_ref")
        eq = "n/a" if eq is None else ("yes" if eq and r["params_equal_ref"] else "NO")
        lines.append(
            f"| {r['model']} | {r['paper_res']} / {r['torchvision_res']} | "
            f"{r['ir_params'] / 1e6:.2f}M | {r['paper_params'] / 1e6:.1f}M | "
            f"{r['ir_macs_paper_res'] / 1e9:.3f}B | {r['paper_macs'] / 1e9:.2f}B | "
            f"{r['macs_vs_paper']:.3f} | {r['ir_macs_torchvision_res'] / 1e9:.3f}B | {eq} | "
            f"{r['paper_top1']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reference", type=Path, default=REFERENCE,
                   help="torchvision reference CSV (default tests/data/reference.csv)")
    p.add_argument("--out-dir", type=Path, default=OUT)
    p.add_argument("--quick", action="store_true", help="accepted for symmetry (no training)")
    args = p.parse_args(argv)
    import pandas as pd

    from scaling.study.provenance import Provenance, atomic_write_text

    prov = Provenance(seeds=[], device="cpu", reference=str(args.reference))
    rows = table(args.reference)
    csv = atomic_write_text(args.out_dir / "reproduce.csv",
                            pd.DataFrame(rows).to_csv(index=False))
    md = atomic_write_text(args.out_dir / "reproduce.md", markdown(rows))
    prov.write(csv, outputs=[csv.name, md.name])
    print(markdown(rows))
    print(f"wrote {csv} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
