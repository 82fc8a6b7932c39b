"""See the space: the validation-error EDF of random members of the default search space at the
medium base point, beside MobileNetV2 and EfficientNet-B0 (width) there (issue 29).

    python experiments/search_edf.py [--n 50] [--jobs 2] [--out results/search_edf]

Radosavovic et al. 2019 compare design spaces by the error EDF of N random members, each trained
once by one protocol (:mod:`scaling.search.edf`). Members are drawn at 0.9M MACs within the
study's 5% band and trained with seed 0 by the medium study's protocol and trainer (preset
``medium``); the hand families come from ``results/medium/runs.csv`` when its protocol key is
this protocol's, else are trained here with every seed. Resumable: ``OUT/runs.csv`` has one row
per run (spec hash, seed, protocol key), rewritten atomically after each: a restart trains only
what is missing."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from scaling.cli import Parser, check_option, check_writable, command, count_of  # noqa: E402
from scaling.compound.match import fit_width  # noqa: E402
from scaling.cost import complexity  # noqa: E402
from scaling.search.edf import check_members_window, edf, random_members  # noqa: E402
from scaling.study.config import PRESETS  # noqa: E402
from scaling.study.edf_figure import plot_edf  # noqa: E402
from scaling.study.plan import fitted, root_spec, spec_key  # noqa: E402
from scaling.study.protocol import train_seeds  # noqa: E402
from scaling.study.provenance import Provenance, atomic_write_text, repo_relative  # noqa: E402

PROG = "search_edf.py"
#: the hand families at the base point, named as the medium study's family plan names them
REFERENCES = {"MobileNetV2": "mobilenet_v2 width x1",
              "EfficientNet-B0 (width)": "efficientnet_b0 width x1"}
RUN_COLUMNS = ["key", "spec_key", "seed", "protocol", "model", "macs", "params", "val_acc",
               "test_acc", "status", "train_seconds", "wall_seconds", "device"]
QUICK = {"n": 3, "subset": 256, "epochs": 1.0, "val_size": 200, "test_size": 200, "seeds": [0]}


class Runs:
    """``runs.csv``: one row per finished run keyed by (spec hash, seed, protocol key)."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, {}
        if path.is_file():
            df = pd.read_csv(path, dtype={"key": str, "spec_key": str, "protocol": str})
            self.rows = {r["key"]: r for r in df.to_dict("records")}

    @staticmethod
    def key(spec: Any, seed: int, protocol: str) -> str:
        return f"{spec_key(spec)}-s{seed}-{protocol}"

    def add(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        df = pd.DataFrame(list(self.rows.values()), columns=RUN_COLUMNS)
        atomic_write_text(self.path, df.to_csv(index=False, float_format="%.6g"))


def train_missing(tasks: list[tuple[Any, int]], proto: Any, runs: Runs, args: Any) -> int:
    """Train every (spec, seed) of ``tasks`` not yet in ``runs``; returns how many ran."""
    todo = list({Runs.key(s, seed, proto.key()): (s, seed) for s, seed in tasks
                 if Runs.key(s, seed, proto.key()) not in runs.rows}.values())

    def record(spec: Any, seed: int, out: dict[str, Any]) -> None:
        c = complexity(spec)
        runs.add({"key": Runs.key(spec, seed, proto.key()), "spec_key": spec_key(spec),
                  "seed": seed, "protocol": proto.key(), "model": spec.name, "macs": c.macs,
                  "params": c.params, **out})
        print(f"[{len(runs.rows)}] {spec.name} seed {seed}: val {out['val_acc']:.4f} "
              f"({out['train_seconds']:.0f} s)", flush=True)

    if len(todo) > 1 and args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(train_seeds, s, proto, [seed], args.device, args.threads):
                       (s, seed) for s, seed in todo}
            for fut in as_completed(futures):
                record(*futures[fut], fut.result()[0])
    else:
        for s, seed in todo:
            record(s, seed, train_seeds(s, proto, [seed], args.device, args.threads)[0])
    return len(todo)


def reference_runs(preset: Any, proto: Any, runs: Runs, medium: Path, args: Any) -> Any:
    """One row per (hand family, seed) at the base point: the medium study's runs of this protocol
    matched by zoo name, MACs and parameter count (the spec hash moves when the IR gains a field;
    B0's base point is named by its compound plan there), else trained here."""
    done = pd.read_csv(medium, dtype={"protocol": str}) if medium.is_file() else None
    specs, tasks, rows = {}, [], []
    for family, name in REFERENCES.items():
        fit = fitted(fit_width, root_spec(family), preset.base_macs, tol=preset.mac_tol,
                     diffuse=True)  # as the study's family plan fits its base point
        spec, c = fit.spec.replace(name=name), complexity(fit.spec)
        found = pd.DataFrame() if done is None else done[
            done["model"].str.startswith(name.split()[0] + " ") & (done["macs"] == c.macs)
            & (done["params"] == c.params) & (done["protocol"] == proto.key())
            & done["seed"].isin(proto.seeds)].drop_duplicates("seed")
        if len(found) == len(proto.seeds):
            rows += [{"family": family, **r, "source": repo_relative(medium)}
                     for r in found.to_dict("records")]
        else:
            specs[family] = spec
            tasks += [(spec, seed) for seed in proto.seeds]
    train_missing(tasks, proto, runs, args)
    for family, spec in specs.items():
        rows += [{"family": family, **runs.rows[Runs.key(spec, s, proto.key())],
                  "source": repo_relative(runs.path)} for s in proto.seeds]
    cols = ["family", "model", "seed", "macs", "params", "val_acc", "test_acc", "source"]
    return pd.DataFrame(rows)[cols].rename(columns={"params": "param_count"})


def parse(argv: list[str]) -> Any:
    p = Parser(PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50, help="random members to train")
    p.add_argument("--seed", type=int, default=0, help="RandomSampler seed: which members")
    p.add_argument("--out", type=Path, help="output folder (default: results/search_edf)")
    p.add_argument("--medium-runs", type=Path, help="the medium study's runs, whose rows of "
                   "this protocol give the families (default: results/medium/runs.csv)")
    p.add_argument("--quick", action="store_true", help="a tiny size for a test: " + ", ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()))
    g = p.add_argument_group("protocol overrides (default: the medium preset's)")
    g.add_argument("--subset", type=int)
    g.add_argument("--epochs", type=float)
    g.add_argument("--val-size", type=int)
    g.add_argument("--test-size", type=int)
    g.add_argument("--seeds", type=int, nargs="+", help="seeds of the hand families (the "
                   "members train with the first)")
    p.add_argument("--jobs", type=int, default=2, help="training processes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    if "--quick" in argv:  # its sizes become the defaults: an option given beside it wins
        p.set_defaults(**QUICK)
    args = p.parse_args(argv)
    args.out = args.out or ROOT / "results" / "search_edf"
    args.medium_runs = args.medium_runs or ROOT / "results" / "medium" / "runs.csv"
    for name, low in (("n", 1), ("jobs", 1), ("threads", 1), ("subset", 1), ("epochs", 0.01),
                      ("val_size", 1), ("test_size", 1)):
        check_option(f"--{name.replace('_', '-')}", getattr(args, name), minimum=low)
    check_writable("--out", args.out, folder=True)
    return args


def member_rows(members: Any, specs: list[Any], runs: Runs, proto: Any) -> Any:
    """``samples.csv``: one row per member, its trial params as JSON (they rebuild its spec)."""
    rows = []
    for i, ((params, _), spec, attrs) in enumerate(zip(members, specs, members.attrs)):
        run, c = runs.rows[Runs.key(spec, proto.seeds[0], proto.key())], complexity(spec)
        rows.append({"sample": i, "spec_key": spec_key(spec), "macs": c.macs,
                     "param_count": c.params, **attrs, "val_acc": run["val_acc"],
                     "test_acc": run["test_acc"], "val_error": 1 - run["val_acc"],
                     "status": run["status"], "train_seconds": run["train_seconds"],
                     "params": json.dumps(params, sort_keys=True)})
    return pd.DataFrame(rows)


def readme(args: Any, proto: Any, members: Any, summary: dict[str, Any], fam: Any,
           command_line: str, commit: str) -> str:
    budget, (lo, hi), q = PRESETS["medium"].base_macs, summary["window"], summary["quartiles"]
    table = "\n".join(f"| {f} | {r['count']:.0f} | {100 * r['mean']:.2f} | {100 * r['std']:.2f} "
                      f"| {100 * r['min']:.2f}-{100 * r['max']:.2f} |" for f, r in fam.iterrows())
    failed = f"; {summary['failed']} runs failed" if summary["failed"] else ""
    return f"""# The default search space at the base point: error EDF of random members

Generated by `{command_line}` (commit {commit}); do not edit.

{count_of(args.n, "member")} of `scaling.search.space.DEFAULT_SPACE` drawn by Optuna's
RandomSampler (seed {args.seed}) through the search's own sampling code, MACs in
[{lo * budget:,.0f}, {hi * budget:,.0f}] ({lo:g}-{hi:g} x the base point, the study's band);
{members.rejected} of {members.drawn} draws fell outside and were drawn again. Each trained once
(seed {proto.seeds[0]}) by protocol `{proto.key()}`: {proto.subset} training images x
{proto.epochs:g} epochs, batch {proto.batch_size}, SGD lr {proto.lr:g}, zero-init last norm
{proto.zero_init_last}; validation = {proto.val_size} images held out of the training set (split
seed {proto.split_seed}).

| family at the base point | seeds | mean val acc % | std | range |
|---|---|---|---|---|
{table}

- within 1 point of EfficientNet-B0 (width)'s mean val accuracy: {100 * summary['near_b0']:.0f}%
- better than MobileNetV2's mean val accuracy: {100 * summary['above_mobilenetv2']:.0f}%
- val error quartiles: {100 * q[0]:.2f}% / median {100 * q[1]:.2f}% / {100 * q[2]:.2f}%{failed}

![EDF](edf.png)

What this cannot tell: each member trained with one seed (the families' seed spread, the bands
in the figure, is the size of the margins read off it); the error is validation error on
{proto.val_size} images (2,000 carry ~0.75 points of standard error), not test error; it describes
the space at this budget and protocol, not what a search in it finds. `samples.csv`: one row per
member (trial params as JSON, MACs, parameter count, val/test accuracy, training seconds);
`reference.csv`: the families' runs and their source; `edf.csv`; `runs.csv`: the resumable store.
"""


@command(PROG)
def main(argv: list[str]) -> int:
    args = parse(argv)
    preset = PRESETS["medium"]
    over = {k: getattr(args, k) for k in ("subset", "epochs", "val_size", "test_size")
            if getattr(args, k) is not None}
    proto = dataclasses.replace(preset.protocol, **over, **(
        {"seeds": tuple(args.seeds)} if args.seeds else {}))
    window = check_members_window((1 - preset.mac_tol, 1 + preset.mac_tol))
    prov = Provenance(seeds=[proto.seeds[0]], device=args.device, argv=[__file__, *argv],
                      sampler_seed=args.seed, threads_per_run=args.threads,
                      n=args.n, budget=preset.base_macs, window=list(window),
                      protocol={**dataclasses.asdict(proto), "key": proto.key()})
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    members = random_members(args.n, preset.base_macs, window, seed=args.seed)
    runs = Runs(out / "runs.csv")
    refs = reference_runs(preset, proto, runs, args.medium_runs, args)
    specs = [spec.replace(name=f"member {i}") for i, (_, spec) in enumerate(members)]
    trained = train_missing([(s, proto.seeds[0]) for s in specs], proto, runs, args)
    print(f"{trained} member runs trained, {args.n - trained} found in {runs.path.name}")
    samples = member_rows(members, specs, runs, proto)
    table = edf(samples["val_error"])
    for name, df in (("samples", samples), ("reference", refs), ("edf", table)):
        atomic_write_text(out / f"{name}.csv", df.to_csv(index=False, float_format="%.6g"))
    fam = refs.groupby("family", sort=False)["val_acc"].agg(["mean", "std", "min", "max", "count"])
    acc = samples["val_acc"]
    summary = {"n": args.n, "drawn": members.drawn, "rejected": members.rejected,
               "window": list(window), "failed": int(acc.isna().sum()),
               "near_b0": float(((acc - fam.loc["EfficientNet-B0 (width)", "mean"]).abs()
                                 <= 0.01).mean()),
               "above_mobilenetv2": float((acc > fam.loc["MobileNetV2", "mean"]).mean()),
               "quartiles": [round(float(v), 4)
                             for v in pd.Series(1 - acc).quantile([0.25, 0.5, 0.75])]}
    plot_edf(table, refs, args.n, out / "edf.png", f"{preset.base_macs / 1e6:g}M MACs x "
             f"[{window[0]:g}, {window[1]:g}], protocol {proto.key()}: {proto.subset} images x "
             f"{proto.epochs:g} epochs, validation {proto.val_size} images")
    atomic_write_text(out / "README.md", readme(args, proto, members, summary, fam,
                                                prov.record()["command"], prov.commit))
    for name in ("samples.csv", "edf.png", "README.md"):
        prov.write(out / name, summary=summary, medium_runs=repo_relative(args.medium_runs))
    print(f"{out / 'README.md'}: {100 * summary['near_b0']:.0f}% of {args.n} members within 1 "
          f"point of B0, {100 * summary['above_mobilenetv2']:.0f}% above MobileNetV2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
