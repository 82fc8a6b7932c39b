"""``python -m scaling.study``: run a study from its config, rewrite its report, show its plan.

    python -m scaling.study run tiny|medium|full|STUDY.yaml [--out DIR] [--jobs N]
    python -m scaling.study report DIR
    python -m scaling.study plan tiny|medium|full|STUDY.yaml [--out DIR]

CONFIG is a shipped preset's name (``scaling/study/presets/``) or a YAML file
(:mod:`scaling.study.config`); DIR defaults to ``results/NAME``. The engine is imported only by
the command that runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from scaling.cli import Parser, command

PROG = "python -m scaling.study"


def _parser() -> argparse.ArgumentParser:
    p = Parser(PROG, description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{run,report,plan}")
    run = sub.add_parser("run", help="run (or resume) a study: search, grid, families, report",
                         formatter_class=p.formatter_class)
    plan = sub.add_parser("plan", help="what a study would train and how long it should take; "
                          "writes DIR/plan.json once the search and the grid have run",
                          formatter_class=p.formatter_class)
    for s in (run, plan):
        s.add_argument("config", help="a preset (tiny, medium, full) or a study YAML file")
        s.add_argument("--out", type=Path, help="the study's folder (default: results/NAME)")
        s.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda")
        s.add_argument("--jobs", type=int, help="parallel training processes (default: config)")
    run.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    run.add_argument("--fresh", action="store_true", help="delete DIR's runs and search first")
    report = sub.add_parser("report", help="rewrite DIR's tables, figures and README from its "
                            "runs (trains nothing)", formatter_class=p.formatter_class)
    report.add_argument("dir", type=Path, help="a study's folder (plan.json, runs.csv)")
    report.add_argument("--config", help="the study's config (default: DIR/study.yaml, else the "
                        "preset named in DIR/plan.json)")
    return p


def _check_jobs(jobs: int | None) -> None:
    if jobs is not None and jobs < 1:
        raise ValueError(f"--jobs={jobs} is not allowed; expected an int >= 1")


@command(PROG, errors=(ValueError, FileNotFoundError))
def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        from scaling.study.runner import report

        summary = report(args.dir, args.config)
        print(f"{args.dir}: {summary['readme']} and {len(summary['figures'])} figures rewritten")
        return 0
    _check_jobs(args.jobs)
    from scaling.study.config import resolve

    preset = resolve(args.config)
    out = args.out or Path("results") / preset.name
    if args.command == "plan":
        return show_plan(preset, out, args.device, args.jobs)
    if args.threads < 1:
        raise ValueError(f"--threads={args.threads} is not allowed; expected an int >= 1")
    if args.fresh and out.exists():
        import shutil

        shutil.rmtree(out)
    from scaling.study.runner import run

    t0 = time.perf_counter()
    summary = run(preset, out, args.device, args.threads, args.jobs)
    print(f"study {preset.name} done in {(time.perf_counter() - t0) / 60:.1f} min: "
          f"{summary.get('readme')}")
    return 0


def show_plan(preset: Any, out: Path, device: str, jobs: int | None) -> int:
    """Print the runs the study would train (those not yet in ``out/runs.csv``) and their
    estimated time (:mod:`scaling.study.estimate`); writes ``out/plan.json`` where the search
    and the grid have run (as ``run`` would), nothing otherwise."""
    import json

    from scaling.ir import NetworkSpec
    from scaling.study import estimate
    from scaling.study.plan import PAPER, base_point, family_plan, grid_plan, single_plan
    from scaling.study.protocol import adapt, stand_in_baseline
    from scaling.study.runner import run
    from scaling.study.store import RunStore
    from scaling.train.common import resolve_device

    p = preset.protocol
    kind = resolve_device(device).type
    jobs = preset.jobs if jobs is None else jobs
    searched = out / "search" / "baseline.json"
    print(f"study {preset.name}: {p.dataset} {p.resolution}x{p.resolution}, {p.in_channels} "
          f"channel(s), {p.num_classes} classes; protocol {p.key()}; seeds {list(p.seeds)}")
    plan = None
    if searched.is_file():
        summary = run(preset, out, device, plan_only=True, log=lambda line: None)
        if summary.get("plan"):
            plan = json.loads(Path(summary["plan"]).read_text())
            print(f"search: done ({searched}); plan: {summary['plan']}")
    if plan is None:
        if searched.is_file():
            root, what = NetworkSpec.from_dict(json.loads(searched.read_text())["spec"]), "found"
            note = "the grid is not trained yet: its winner is taken as the paper's rule here"
        else:
            root, what = stand_in_baseline(), "stand-in"
            s = preset.search
            print(f"search: to run, {s.get('trials', '?')} trials at "
                  f"{preset.base_macs:,} MACs ({s.get('evaluator', 'train')} evaluator)")
            note = ("the searched net is not known before its search: the stand-in (B0 layout, "
                    "depth 0.5) takes its place, and the paper's rule the grid winner's")
        root = adapt(root, p.resolution, p.in_channels, p.num_classes).replace(name="searched")
        base = base_point(root, preset)
        models = [{**e, "spec": e["spec"].to_dict()} for e in (
            grid_plan(base, preset) + family_plan(base, PAPER, preset)
            + single_plan(root, base, PAPER, preset))]
        plan = {"models": models}
        print(f"estimate: {note} ({what} net)")
    store = RunStore(out / "runs.csv")
    todo: dict[str, int] = {}
    total_macs: list[int] = []
    for m in plan["models"]:
        spec = NetworkSpec.from_dict(m["spec"])
        seeds = p.seeds[:1] if m["experiment"] == "grid" else p.seeds
        for seed in seeds:
            key = RunStore.key(spec, seed, p.key())
            if key not in store.rows and key not in todo:
                todo[key] = m["macs"]
                total_macs.append(m["macs"])
    for name in ("grid", "family", "single"):
        ms = [m for m in plan["models"] if m["experiment"] == name]
        if ms:
            macs = [m["macs"] for m in ms]
            print(f"  {name}: {len(ms)} models, {min(macs):,}-{max(macs):,} MACs")
    images = estimate.train_images(p)
    speed = estimate.fit_speed(out / "runs.csv", kind, (images or 0) * p.epochs)
    source = f"fitted on {out / 'runs.csv'}" if speed else "fitted on the committed studies"
    speed = speed or estimate.SPEED.get(kind, estimate.SPEED["cpu"])
    line = f"to train: {len(todo)} runs ({len(store.rows)} already in runs.csv)"
    if images is None:
        print(f"{line}; time unknown: give protocol.subset (an ImageFolder's size is not read "
              "before it runs)")
        return 0
    busy = estimate.seconds(total_macs, images * p.epochs, speed)
    wall = busy / max(1, min(jobs, len(todo)))
    print(f"{line}; about {estimate.format_duration(wall)} on {kind} with {jobs} job(s) "
          f"({estimate.format_duration(busy)} of training; speed {source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
