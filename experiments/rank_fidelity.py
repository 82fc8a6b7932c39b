"""Rank fidelity: does the study's short protocol rank models as a longer one does? (issue 30)

    python experiments/rank_fidelity.py [--study results/medium] [--out results/rank_fidelity]
                                        [--factor 3] [--models N] [--jobs 2] [--device auto]

Takes the family models of the study's ``plan.json`` (every family at every MAC point, one row
per distinct spec; ``--models N``: N of them spread evenly over MACs) and their accuracies under
the study's protocol from its ``runs.csv`` (mean over the study's seeds, and seed 0 alone), trains
each once (seed 0) under the same protocol with ``factor`` times the epochs, and writes
``OUT/rank_fidelity.csv`` and ``OUT/README.md``: Kendall's tau-b between the two rankings, by test
and by validation top-1, with a bootstrap CI (:func:`scaling.study.stats.kendall_tau_b`).
Resumable: every long run is a row of ``OUT/runs.csv`` keyed by (spec hash, seed, protocol key),
written atomically when it ends; a rerun trains only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scaling.cli import Parser, check_option, check_writable, command, fail  # noqa: E402
from scaling.study.plan import spec_key  # noqa: E402
from scaling.study.protocol import Protocol, train_seeds  # noqa: E402
from scaling.study.store import RunStore  # noqa: E402

SEED = 0


def study_protocol(plan: dict[str, Any]) -> Protocol:
    """The :class:`Protocol` a study's ``plan.json`` records (its key must match)."""
    fields = {k: v for k, v in plan["protocol"].items() if k != "key"}
    proto = Protocol(**{**fields, "seeds": tuple(fields["seeds"]),
                        "recipe": tuple(tuple(r) for r in fields.get("recipe", ()))})
    if proto.key() != plan["protocol"]["key"]:
        raise ValueError(f"plan protocol key {plan['protocol']['key']} does not match its fields "
                         f"({proto.key()}): the plan was written by other code")
    return proto


def long_protocol(short: Protocol, factor: float, override: dict[str, Any] | None = None
                  ) -> Protocol:
    """``short`` with ``factor`` times its epochs and seed 0 alone, everything else equal;
    ``override``: fields set afterwards (a tiny protocol for the test)."""
    if not factor > 0:
        raise ValueError(f"--factor must be > 0, got {factor!r}")
    return dataclasses.replace(short, **{"epochs": short.epochs * factor, "seeds": (SEED,),
                                         **(override or {})})


def pick_models(plan: dict[str, Any], count: int | None) -> list[dict[str, Any]]:
    """The distinct family models of ``plan`` by MACs; ``count`` of them evenly spread."""
    from scaling.ir import NetworkSpec

    seen: dict[str, dict[str, Any]] = {}
    for m in plan["models"]:
        if m["experiment"] == "family":
            spec = NetworkSpec.from_dict(m["spec"])
            seen.setdefault(spec_key(spec), {**m, "spec": spec, "spec_key": spec_key(spec)})
    models = sorted(seen.values(), key=lambda m: m["macs"])
    if count is not None:
        if not 1 <= count <= len(models):
            raise ValueError(f"--models must be in 1..{len(models)} (the plan's distinct family "
                             f"models), got {count}")
        step = (len(models) - 1) / max(count - 1, 1)
        models = [models[round(i * step)] for i in range(count)]
    return models


def short_results(models: list[dict[str, Any]], runs_csv: Path, key: str) -> dict[str, dict]:
    """Per spec: mean val/test top-1 over the study's seeds and seed 0's, from its runs.csv."""
    import pandas as pd

    runs = pd.read_csv(runs_csv, dtype={"spec_key": str})
    runs = runs[runs.protocol == key]
    out = {}
    for m in models:
        r = runs[runs.spec_key == m["spec_key"]]
        if SEED not in set(r.seed):
            raise ValueError(f"{m['spec'].name} (spec {m['spec_key']}) has no seed-{SEED} run "
                             f"under protocol {key} in {runs_csv}")
        s0 = r[r.seed == SEED].iloc[0]
        out[m["spec_key"]] = {"short_val": r.val_acc.mean(), "short_test": r.test_acc.mean(),
                              "short_seeds": len(r), "short_val_s0": s0.val_acc,
                              "short_test_s0": s0.test_acc}
    return out


def train_missing(models: list[dict[str, Any]], proto: Protocol, store: RunStore, device: str,
                  threads: int | None, jobs: int, log=print) -> None:
    """Train every model without a row in ``store`` (seed 0, ``proto``), biggest first."""
    from scaling.cost import complexity

    todo = [m for m in sorted(models, key=lambda m: -m["macs"])
            if RunStore.key(m["spec"], SEED, proto.key()) not in store.rows]
    if not todo:
        return
    log(f"training {len(todo)} runs under protocol {proto.key()} ({len(store.rows)} in "
        f"{store.path.name})")

    def record(m: dict[str, Any], out: dict[str, Any]) -> None:
        c = complexity(m["spec"])
        store.add({"key": RunStore.key(m["spec"], SEED, proto.key()), "spec_key": m["spec_key"],
                   "seed": SEED, "protocol": proto.key(), "model": m["spec"].name,
                   "macs": int(c.macs), "params": int(c.params),
                   "resolution": m["spec"].resolution, **out})
        log(f"{m['spec'].name}: val {out['val_acc']:.4f} test {out['test_acc']:.4f} "
            f"({out['wall_seconds']:.0f} s)")

    if jobs > 1 and len(todo) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(train_seeds, m["spec"], proto, [SEED], device, threads): m
                       for m in todo}
            for fut in as_completed(futures):
                record(futures[fut], fut.result()[0])
    else:
        for m in todo:
            record(m, train_seeds(m["spec"], proto, [SEED], device, threads)[0])


def report(rows: list[dict[str, Any]], short: Protocol, long: Protocol, study: Path) -> tuple:
    """The README's lines and the tau records: short vs long ranking by test and val top-1."""
    from scaling.study.stats import kendall_tau_b

    taus, lines = [], []
    if len(rows) >= 3:
        for split in ("test", "val"):
            for which, col in (("mean over the study's seeds", f"short_{split}"),
                               (f"seed {SEED}", f"short_{split}_s0")):
                t = kendall_tau_b([r[col] for r in rows], [r[f"long_{split}"] for r in rows])
                taus.append({"split": split, "short": which, "tau_b": t.tau, "low": t.low,
                             "high": t.high, "n": t.n})
                lines.append(f"| {split} | {which} | {t.tau:+.3f} | [{t.low:+.3f}, {t.high:+.3f}]"
                             f" | {t.n} |")
    head = [f"# Rank fidelity: {study.name} protocol {short.key()} vs {long.epochs:g} epochs "
            f"({long.key()})", "",
            f"{len(rows)} family models of `{study}/plan.json` (distinct specs, by MACs). Short: "
            f"the study's runs ({short.epochs:g} epochs, seeds {list(short.seeds)}); long: the "
            f"same protocol at {long.epochs:g} epochs, seed {SEED}, one run per model "
            "(`runs.csv`). Kendall tau-b between the two rankings with a 95% percentile "
            "bootstrap CI (2,000 resamples of the models, numpy seed 0; "
            "`scaling.study.stats.kendall_tau_b`). Provenance: `rank_fidelity.provenance.json` "
            "(command, commit, seed, device, date).", ""]
    if taus:
        head += ["| ranked by | short protocol | tau-b | 95% CI | models |",
                 "|---|---|---:|---|---:|", *lines, ""]
    else:
        head += ["Fewer than 3 models: no rank correlation.", ""]
    head += ["| model | MACs (M) | short val | short test | long val | long test |",
             "|---|---:|---:|---:|---:|---:|"]
    head += [f"| {r['model']} | {r['macs'] / 1e6:.2f} | {100 * r['short_val']:.2f} | "
             f"{100 * r['short_test']:.2f} | {100 * r['long_val']:.2f} | "
             f"{100 * r['long_test']:.2f} |" for r in rows]
    return head + [""], taus


def run(study: Path, out: Path, factor: float = 3.0, models: int | None = None, jobs: int = 2,
        device: str = "auto", threads: int | None = 1, override: dict[str, Any] | None = None,
        log=print) -> dict[str, Any]:
    """Train what is missing and write the table and README; ``override``: protocol fields of
    the long protocol set after the factor (a tiny protocol for the test)."""
    import pandas as pd

    from scaling.files import atomic_write_text
    from scaling.study.provenance import Provenance

    plan = json.loads((study / "plan.json").read_text())
    short = study_protocol(plan)
    long = long_protocol(short, factor, override)
    picked = pick_models(plan, models)
    before = short_results(picked, study / "runs.csv", short.key())
    out.mkdir(parents=True, exist_ok=True)
    store = RunStore(out / "runs.csv")
    t0 = time.perf_counter()
    train_missing(picked, long, store, device, threads, jobs, log)
    rows = []
    for m in picked:
        run_ = store.rows[RunStore.key(m["spec"], SEED, long.key())]
        rows.append({"model": m["spec"].name, "family": m["family"], "macs": m["macs"],
                     "spec_key": m["spec_key"], **before[m["spec_key"]],
                     "long_val": run_["val_acc"], "long_test": run_["test_acc"],
                     "long_wall_seconds": run_["wall_seconds"]})
    prov = Provenance(seeds=(SEED,), device=device, study=str(study), factor=factor,
                      short_protocol=short.key(),
                      long_protocol={**dataclasses.asdict(long), "key": long.key()})
    csv = atomic_write_text(out / "rank_fidelity.csv",
                            pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    lines, taus = report(rows, short, long, study)
    prov.write(csv, taus=taus)
    readme = atomic_write_text(out / "README.md", "\n".join(lines))
    log(f"rank fidelity: {len(rows)} models in {time.perf_counter() - t0:.0f} s; {readme}")
    return {"rows": rows, "taus": taus, "readme": str(readme)}


@command("rank_fidelity.py", errors=(ValueError,))
def main(argv: list[str]) -> int:
    """Train the long runs that are missing, then write the table and README."""
    p = Parser("rank_fidelity.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--study", type=Path, default=ROOT / "results" / "medium",
                   help="study folder with plan.json and runs.csv")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "rank_fidelity",
                   help="output folder (its runs.csv makes a rerun resume)")
    p.add_argument("--factor", type=float, default=3.0,
                   help="epochs of the long protocol / the study's")
    p.add_argument("--models", type=int, help="how many models, spread over MACs (default all)")
    p.add_argument("--jobs", type=int, default=2, help="parallel training processes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    args = p.parse_args(argv)
    for name in ("plan.json", "runs.csv"):
        if not (args.study / name).is_file():
            fail(f"--study {str(args.study)!r}: {name} is missing")
    check_option("--jobs", args.jobs, minimum=1)
    check_writable("--out", args.out, folder=True)
    run(args.study, args.out, args.factor, args.models, args.jobs, args.device, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
