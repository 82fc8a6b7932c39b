"""Compound-scale the searched baseline for phi = 0..3 (Tan & Le 2019, section 3.3).

Step 1: grid search of (alpha, beta, gamma) at phi = 1 under alpha * beta**2 * gamma**2 ~ 2
(:func:`scaling.compound.grid.candidates`), each candidate trained under the study protocol and
ranked by validation top-1 (never test). Step 2: scale the baseline by phi = 0..3 with the
winner ("grid") and with the paper's 1.2 / 1.1 / 1.15 ("paper"), train every model for every seed
and write

- ``results/study/scale_family.csv``: rule, phi, alpha, beta, gamma, d, w, r, resolution,
  macs, params, seed, val_acc, test_acc, train_seconds, ... (one row per model and seed);
- ``results/study/grid_phi1.csv``: the grid candidates and their validation scores;
- ``results/study/scale_family_specs.json``: the baseline, the coefficients and every scaled
  spec (the input of ``compare_families.py``); each with ``<name>.provenance.json``.

``--quick`` is the CPU setting committed in results/ (minutes on 2 cores; the baseline's width is
refitted to 2M MACs first); the default is the full (GPU) setting. Without ``--baseline`` the
searched spec is read from ``results/search/baseline.json``; ``--quick``/``--tiny`` fall back to a
labelled stand-in when it does not exist.

    python experiments/scale_family.py --quick [--baseline results/search/baseline.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling.study.protocol import (  # noqa: E402
    STUDY,
    Protocol,
    add_protocol_args,
    protocol_from_args,
    run_models,
    searched_base,
    write_table,
)

PAPER = (1.2, 1.1, 1.15)
GRID = {"tiny": (0.4, 0.3), "quick": (0.2, 0.15), "full": (0.1, 0.1)}  # (step, tol)


def grid_search(base, proto: Protocol, step: float, tol: float, device: str,
                threads: int | None, jobs: int = 1) -> list[dict[str, Any]]:
    """Every grid candidate scaled to phi = 1 and trained with the protocol's first seed;
    rows best first by validation accuracy (ties: fewer MACs)."""
    import dataclasses

    from scaling.compound import compound
    from scaling.compound.grid import candidates

    models = []
    for a, b, g in candidates(2.0, tol, step):
        spec = compound(base, 1.0, a, b, g, name=f"grid-a{a:g}-b{b:g}-g{g:g}")
        models.append({"alpha": a, "beta": b, "gamma": g, "product": round(a * b * b * g * g, 4),
                       "blocks": spec.num_blocks, "model": spec.name, "spec": spec})
    one_seed = dataclasses.replace(proto, seeds=proto.seeds[:1])
    rows = run_models(models, one_seed, device, threads, jobs)
    for r in rows:
        r["protocol"] = proto.key()
    rows.sort(key=lambda r: (-(r["val_acc"] if r["val_acc"] == r["val_acc"] else -1), r["macs"]))
    return rows


def scaled_models(base, rules: dict[str, tuple[float, float, float]], phis: list[float]
                  ) -> list[dict[str, Any]]:
    """One entry per (rule, phi): columns plus the scaled spec."""
    from scaling.compound import compound

    models = []
    for rule, (a, b, g) in rules.items():
        for phi in phis:
            spec = compound(base, phi, a, b, g, name=f"{rule}-phi{phi:g}")
            models.append({"rule": rule, "phi": phi, "alpha": a, "beta": b, "gamma": g,
                           "d": round(a ** phi, 4), "w": round(b ** phi, 4),
                           "r": round(g ** phi, 4), "model": spec.name, "spec": spec})
    return models


def train_deduplicated(models: list[dict[str, Any]], proto: Protocol, device: str,
                       threads: int | None, jobs: int = 1) -> list[dict[str, Any]]:
    """Train each distinct spec once (phi = 0 is the same model for every rule)."""
    def key(m):
        return json.dumps(m["spec"].replace(name="").to_dict(), sort_keys=True)

    unique: dict[str, dict[str, Any]] = {}
    for m in models:
        unique.setdefault(key(m), m)
    trained = run_models(list(unique.values()), proto, device, threads, jobs)
    by_key: dict[str, list[dict[str, Any]]] = {}
    for k, m in unique.items():
        by_key[k] = [r for r in trained if r["model"] == m["model"]]
    rows = []
    for m in models:
        for r in by_key[key(m)]:
            rows.append({**r, **{c: v for c, v in m.items() if c != "spec"}})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", help="searched baseline spec JSON (default: results/search/)")
    p.add_argument("--phis", type=float, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--grid-step", type=float, help="grid step (default: preset)")
    p.add_argument("--grid-tol", type=float, help="|alpha*beta^2*gamma^2 - 2| tolerance")
    p.add_argument("--out-dir", type=Path, default=STUDY)
    add_protocol_args(p)
    args = p.parse_args(argv)
    preset, proto = protocol_from_args(args)
    from scaling.compound.match import macs_of
    from scaling.study.provenance import Provenance, atomic_write_json

    prov = Provenance(seeds=proto.seeds, device=args.device, preset=preset,
                      protocol={**proto.__dict__, "key": proto.key()})
    try:
        base, source, width = searched_base(args.baseline, proto, preset)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"baseline: {source}; width x{width} -> {macs_of(base) / 1e6:.2f}M MACs "
          f"(protocol {preset}, key {proto.key()})", flush=True)
    step, tol = GRID[preset]
    step, tol = args.grid_step or step, args.grid_tol if args.grid_tol is not None else tol
    grid_rows = grid_search(base, proto, step, tol, args.device, args.threads, args.jobs)
    best = grid_rows[0]
    rules = {"grid": (best["alpha"], best["beta"], best["gamma"]), "paper": PAPER}
    print(f"grid winner: alpha={best['alpha']} beta={best['beta']} gamma={best['gamma']}",
          flush=True)
    models = scaled_models(base, rules, args.phis)
    rows = train_deduplicated(models, proto, args.device, args.threads, args.jobs)
    for r in rows:
        r["baseline"] = source
    out = args.out_dir
    extra = {"baseline": source, "baseline_width_refit": width}
    write_table(grid_rows, out / "grid_phi1.csv", prov, grid_step=step, grid_tol=tol, **extra)
    write_table(rows, out / "scale_family.csv", prov, rules=rules, **extra)
    specs = {"baseline": source, "baseline_width_refit": width, "preset": preset,
             "protocol": {**proto.__dict__, "key": proto.key()}, "rules": rules,
             "baseline_spec": base.to_dict(), "models": [
                 {**{k: v for k, v in m.items() if k != "spec"}, "spec": m["spec"].to_dict()}
                 for m in models]}
    specs_path = atomic_write_json(out / "scale_family_specs.json", specs)
    prov.write(specs_path, **extra)
    print(f"wrote {out / 'scale_family.csv'} ({len(rows)} rows), {out / 'grid_phi1.csv'}, "
          f"{specs_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
