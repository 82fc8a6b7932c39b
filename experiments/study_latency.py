"""The study, in time: the medium study's family comparison against measured latency (issue 31).

    python experiments/study_latency.py [--study results/medium] [--out results/medium/latency]
        [--batches 1 32] [--rounds 9] [--repeats 3] [--families NAME ...] [--table FILE ...]

Every model of ``STUDY/family.csv`` (its spec from ``STUDY/plan.json``; nothing is retrained) is
built, deployed (:mod:`scaling.nn.deploy`: norms folded, channels_last, packed weights) and timed
whole on this CPU in float32 with one thread, at each batch size, all (model, batch) interleaved
and warmed, the median and IQR of ``rounds x repeats`` samples
(:func:`scaling.study.latency.measure_latency`). ``--table`` adds the predictor's value
(:func:`scaling.latency.predict`) for the batch size of each table. Writes ``OUT/latency.csv``,
``OUT/accuracy_vs_latency.png``, ``OUT/README.md`` and their provenance.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from scaling.cli import Parser, check_option, check_writable, command, fail  # noqa: E402
from scaling.study.latency import (  # noqa: E402
    accuracy_by_model,
    measure_latency,
    per_mac,
    plot_accuracy_vs_latency,
)
from scaling.study.plan import spec_key  # noqa: E402
from scaling.study.provenance import Provenance, atomic_write_text, repo_relative  # noqa: E402

PROG = "study_latency.py"
#: --quick: the first two ratios of two families (or of --families), short timing
QUICK = {"ratios": (1, 2), "families": 2, "rounds": 2, "repeats": 1, "warmup": 1, "min_ms": 0.0}
COLUMNS = ["model", "family", "method", "ratio", "spec_key", "macs", "params", "batch",
           "latency_ms", "iqr_ms", "repeats", "test_acc_mean", "test_acc_std", "n_seeds"]


def parse(argv: list[str]) -> Any:
    p = Parser(PROG, description=__doc__)
    p.add_argument("--study", type=Path, default=ROOT / "results" / "medium",
                   help="the study folder: plan.json and family.csv")
    p.add_argument("--out", type=Path, default=None, help="output folder (default STUDY/latency)")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32], help="batch sizes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    p.add_argument("--repeats", type=int, default=3, help="samples per model in each round")
    p.add_argument("--warmup", type=int, default=2, help="warm-up calls per (model, batch)")
    p.add_argument("--min-ms", type=float, default=2.0, help="least time of one sample (ms)")
    p.add_argument("--families", nargs="+", default=None, help="families (default: all)")
    p.add_argument("--table", nargs="+", type=Path, default=None,
                   help="latency tables (python -m scaling.latency profile) to predict from")
    p.add_argument("--quick", action="store_true",
                   help=f"ratios {QUICK['ratios']} of {QUICK['families']} families, "
                   f"{QUICK['rounds']} rounds x {QUICK['repeats']} (a test)")
    args = p.parse_args(argv)
    for name in ("threads", "rounds", "repeats"):
        check_option(f"--{name}", getattr(args, name), minimum=1)
    check_option("--warmup", args.warmup, minimum=0)
    check_option("--min-ms", args.min_ms, minimum=0)
    if bad := [b for b in args.batches if b < 1]:
        fail(f"--batches {bad[0]} is not allowed; expected batch sizes >= 1")
    args.batches = list(dict.fromkeys(args.batches))
    if args.quick:
        args.rounds, args.repeats = QUICK["rounds"], QUICK["repeats"]
        args.warmup, args.min_ms = QUICK["warmup"], QUICK["min_ms"]
    args.out = args.out if args.out is not None else args.study / "latency"
    return args


def study_models(args: Any) -> tuple[pd.DataFrame, list[str]]:
    """One row per model of the family comparison with its accuracy and ``spec``; the order of
    all the study's families (their colours)."""
    from scaling.ir import NetworkSpec

    paths = {name: args.study / name for name in ("plan.json", "family.csv")}
    if lost := [str(p) for p in paths.values() if not p.is_file()]:
        fail(f"--study {args.study}: {', '.join(lost)} missing; expected a study folder written "
             "by python -m scaling.study run")
    plan = json.loads(paths["plan.json"].read_text())
    runs = pd.read_csv(paths["family.csv"], dtype={"spec_key": str})
    order = list(dict.fromkeys(runs["family"]))
    if unknown := [f for f in args.families or [] if f not in order]:
        fail(f"--families {unknown[0]!r} is not in {paths['family.csv']}; expected some of "
             f"{order}")
    chosen = args.families or (order[:QUICK["families"]] if args.quick else order)
    models = accuracy_by_model(runs[runs["family"].isin(chosen)])
    if args.quick:
        models = models[models["ratio"].isin(QUICK["ratios"])].reset_index(drop=True)
    specs = {(m["family"], m["method"], float(m["ratio"])): m["spec"]
             for m in plan["models"] if m["experiment"] == "family"}
    found = []
    for r in models.itertuples():
        spec = specs.get((r.family, r.method, float(r.ratio)))
        if spec is None or spec_key(spec := NetworkSpec.from_dict(spec)) != r.spec_key:
            raise ValueError(f"{paths['plan.json']} has no spec of {r.model!r} ({r.family}, "
                             f"{r.method} x{r.ratio:g}) with spec_key {r.spec_key} as in "
                             f"{paths['family.csv']}: the two files are of different studies")
        found.append(spec.replace(name=r.model))
    return models.assign(spec=found), order


def predictions(models: pd.DataFrame, tables: list[Any]) -> dict[tuple[str, int], float]:
    """(spec_key, batch) -> predicted ms from the table of that batch (missing parts measured)."""
    from scaling.latency import predict

    return {(r.spec_key, t.environment["batch"]): predict(r.spec, t, measure=True)
            for t in tables for r in models.drop_duplicates("spec_key").itertuples()}


def load_tables(args: Any) -> list[Any]:
    from scaling.latency import load_table

    tables = [load_table(p) for p in args.table or []]
    for path, t in zip(args.table or [], tables):
        env = t.environment
        if (env["threads"], env["dtype"]) != (args.threads, "float32") or \
                env["batch"] not in args.batches or env.get("device_kind", "cpu") != "cpu":
            fail(f"--table {path} is {t.describe()}; expected a cpu table of float32, threads="
                 f"{args.threads} and a batch in --batches {args.batches}")
    if len({t.environment["batch"] for t in tables}) < len(tables):
        fail("--table: two tables of one batch size; merge them (python -m scaling.latency merge)")
    return tables


def readme(args: Any, table: pd.DataFrame, ranking: pd.DataFrame, env: dict[str, Any],
           prov: Provenance, seconds: float, load: tuple[float, float]) -> str:
    b0 = min(args.batches)
    lines = [
        "# The study's families in time: accuracy vs measured latency", "",
        f"Generated by `{prov.record()['command']}` at commit `{prov.commit}`"
        f" ({prov.date}); the code is `experiments/study_latency.py`.", "",
        f"**What.** The {table['model'].nunique()} models of the family comparison of "
        f"`{repo_relative(args.study)}` (`family.csv`, specs from `plan.json`; nothing "
        f"retrained; {table['spec_key'].nunique()} distinct specs, each timed once), "
        f"{table['family'].nunique()} families, at batch "
        f"{' and '.join(map(str, args.batches))}. Accuracy: mean test top-1 over the study's "
        "seeds.", "",
        "**How.** Each model built and deployed (`scaling.deploy`: norms folded, channels_last, "
        f"packed weights), float32, `torch.set_num_threads({args.threads})`, under "
        "`inference_mode`; every (model, batch) warmed, then timed in interleaved rounds (order "
        f"reversed every other round): {args.rounds} rounds x {args.repeats} samples of at "
        f"least {args.min_ms:g} ms each; `latency_ms` is the median per call, `iqr_ms` its "
        f"interquartile range. Measuring took {seconds:.0f} s.", "",
        f"**Environment.** {env['device']}; torch {env['torch']}; {args.threads} thread(s); "
        f"load average {load[0]:.2f} before and {load[1]:.2f} after, on {os.cpu_count()} "
        "CPUs. Other work on the machine inflates and spreads the times: read the IQR.", "",
        f"**Cheap in MACs, slow in time** (base point, ratio 1; ns per MAC per image, and its "
        f"multiple of the fastest family; ranked slowest first at batch {b0}):", "",
        "| family | model | MACs | " + " | ".join(
            f"b{b} ms | b{b} ns/MAC | b{b} x fastest" for b in args.batches) + " |",
        "|---|---|---:|" + "---:|---:|---:|" * len(args.batches)]
    for r in ranking.to_dict("records"):
        cells = [f"{r[f'latency_ms_b{b}']:.3g} | {r[f'ns_per_mac_b{b}']:.3g} | "
                 f"{r[f'x_fastest_b{b}']:.2f}" for b in args.batches]
        lines.append(f"| {r['family']} | {r['model']} | {r['macs']:,} | " + " | ".join(cells)
                     + " |")
    lines += ["", f"Slowest per MAC at batch {b0}: {ranking['family'].iloc[0]}; fastest: "
              f"{ranking['family'].iloc[-1]}.", ""]
    if "predicted_ms" in table:
        err = ((table["predicted_ms"] - table["latency_ms"]).abs() / table["latency_ms"] * 100)
        lines += [f"**Predictor.** From the table(s) {[repo_relative(t) for t in args.table]}: "
                  f"median absolute error {err.median():.1f}%, 90th percentile "
                  f"{err.quantile(0.9):.1f}% over {int(err.notna().sum())} (model, batch).", ""]
    lines += ["Files: `latency.csv` (one row per model and batch), `accuracy_vs_latency.png` "
              "(one panel per batch; colours and markers by the study's family order), "
              "`*.provenance.json`.", ""]
    return "\n".join(lines)


@command(PROG, errors=(ValueError, KeyError))
def main(argv: list[str]) -> int:
    import torch

    from scaling.latency.profile import environment

    args = parse(argv)
    check_writable("--out", args.out, folder=True)
    tables = load_tables(args)
    models, order = study_models(args)
    seeds = sorted(int(s) for s in pd.read_csv(args.study / "family.csv")["seed"].unique())
    prov = Provenance(seeds=seeds, device="cpu", argv=[__file__, *argv], init_seed=0,
                      threads=args.threads, batches=args.batches, rounds=args.rounds,
                      repeats=args.repeats, warmup=args.warmup, min_ms=args.min_ms,
                      study=repo_relative(args.study), quick=args.quick)
    env = environment("cpu", args.threads, args.batches[0], "float32")
    torch.manual_seed(0)
    unique = models.drop_duplicates("spec_key").reset_index(drop=True)
    print(f"timing {len(unique)} models x batch {args.batches}, {args.rounds} rounds x "
          f"{args.repeats}, {args.threads} thread(s)", flush=True)
    t0, before = time.perf_counter(), os.getloadavg()[0]
    timed = measure_latency(list(unique["spec"]), args.batches, args.threads, rounds=args.rounds,
                            repeats=args.repeats, warmup=args.warmup, min_ms=args.min_ms)
    seconds, load = time.perf_counter() - t0, (before, os.getloadavg()[0])
    timed["spec_key"] = unique["spec_key"].to_numpy()[timed["model_index"]]
    table = models.merge(timed.drop(columns="model_index"), on="spec_key")
    table = table.rename(columns={"acc_mean": "test_acc_mean", "acc_std": "test_acc_std"})
    columns = list(COLUMNS)
    if tables:
        predicted = predictions(models, tables)
        table["predicted_ms"] = [predicted.get((k, b)) for k, b in
                                 zip(table["spec_key"], table["batch"])]
        columns.append("predicted_ms")
    table = table.sort_values(["batch", "family", "macs"], key=lambda c: c.map(
        order.index) if c.name == "family" else c, ignore_index=True)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "latency.csv", table[columns].to_csv(index=False,
                                                                      float_format="%.6g"))
    plot_accuracy_vs_latency(table.rename(columns={"test_acc_mean": "acc_mean",
                                                   "test_acc_std": "acc_std"}),
                             args.out / "accuracy_vs_latency.png", order,
                             f"{repo_relative(args.study)}, {env['device']}, deployed float32, "
                             f"{args.threads} thread(s)")
    ranking = per_mac(table)
    text = readme(args, table, ranking, env, prov, seconds, load)
    atomic_write_text(args.out / "README.md", text)
    for name in ("latency.csv", "accuracy_vs_latency.png", "README.md"):
        prov.write(args.out / name, environment=env, measure_seconds=round(seconds, 2),
                   load_average=[round(v, 2) for v in load],
                   models=int(table["model"].nunique()))
    print(f"{args.out / 'latency.csv'}: {len(table)} rows; measuring took {seconds:.1f} s; "
          f"slowest per MAC at batch {min(args.batches)}: {ranking['family'].iloc[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
