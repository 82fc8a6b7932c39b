"""The study's runner: every stage of one config, resumable row by row.

    python -m scaling.study run tiny|medium|full|STUDY.yaml [--out DIR] [--device auto]

Stages, each skipped where its output exists (``--fresh`` starts over):

1. **search**: the baseline architecture search (:func:`scaling.search.run_search`) at the
   preset's MAC budget = the base point, in ``OUT/search/`` (an SQLite study: Optuna resumes it);
   its best spec and recipe go to ``OUT/search/baseline.json``.
2. **grid**: step 1 of compound scaling at phi = 1 on the searched baseline (the best trial's spec
   with its width refitted to the base point, as every family's is), only candidates whose
   realised MACs are within 10% of 2x
   (:func:`scaling.compound.match.matched_candidates`), trained with the first seed, ranked by
   validation top-1.
3. **families** and **single-dimension scaling** (:mod:`scaling.study.plan`): every model at its
   matched MAC point, every seed.
4. **report** (alone: ``python -m scaling.study report OUT``, from ``OUT/plan.json`` and
   ``OUT/runs.csv``): ``grid.csv``, ``family.csv``, ``single.csv`` (one row per model and seed: the
   realised MACs and their error against the target), ``plan.json`` (every spec), the figures and
   ``README.md`` with the findings (:mod:`scaling.study.report`).

Each training run is one row of ``OUT/runs.csv`` keyed by (spec hash, seed, protocol key),
written atomically when the run ends (on CUDA, when the last seed of its spec ends: a spec's
seeds run in one process, which plans its convolutions once); a restarted study trains only the
missing rows, and a spec that appears in two experiments is trained once. The runs themselves
go through :func:`execute` (local processes), the seam where another engine takes them, or,
with ``storage=`` (``--storage URL``), through any number of workers that share an Optuna RDB
storage (:mod:`scaling.study.shared`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scaling.study.config import resolve
from scaling.study.grid import confirm_plan, grid_table_rows, grid_winner, pending_plan
from scaling.study.plan import (
    StudyPreset,
    base_point,
    family_plan,
    grid_plan,
    renamed,
    single_plan,
    spec_key,
)
from scaling.study.protocol import adapt, train_seeds
from scaling.study.store import RUN_COLUMNS, RunStore, joined, run_row  # noqa: F401 (the API)


def train_all(entries: list[dict[str, Any]], seeds: tuple[int, ...], preset: StudyPreset,
              store: RunStore, device: str, threads: int | None, jobs: int,
              log: Callable[[str], None] = print, group_seeds: bool = False,
              executor: Callable[..., None] | None = None) -> None:
    """Train every distinct spec of ``entries`` for every seed not yet in ``store``, biggest
    first, through ``executor`` (default :func:`execute`). ``group_seeds``: a spec's missing
    seeds are one task, run in turn by one process (on CUDA they share its cuDNN plans); its
    rows are written when the last one ends."""
    from scaling.compound.match import macs_of

    proto = preset.protocol
    todo: dict[str, tuple[Any, list[int]]] = {}
    for e in entries:
        for seed in seeds:
            key = RunStore.key(e["spec"], seed, proto.key())
            if key in store.rows:
                continue
            spec, missing = todo.setdefault(spec_key(e["spec"]), (e["spec"], []))
            if seed not in missing:
                missing.append(seed)
    tasks = [(spec, missing) for spec, missing in todo.values()]
    if not group_seeds:
        tasks = [(spec, [seed]) for spec, missing in tasks for seed in missing]
    if not tasks:
        return
    tasks.sort(key=lambda t: -macs_of(t[0]))  # big first: balance
    total = sum(len(missing) for _, missing in tasks)
    log(f"training {total} runs ({len(store.rows)} already in {store.path.name})")
    t0 = time.perf_counter()
    done = 0

    def record(spec, seeds_run: list[int], outs: list[dict[str, Any]]) -> None:
        nonlocal done
        for seed, out in zip(seeds_run, outs):
            done += 1
            row = run_row(spec, seed, proto.key(), out)
            store.add(row)
            eta = (time.perf_counter() - t0) / done * (total - done)
            log(f"[{done}/{total}] {spec.name}: {row['macs'] / 1e6:.2f}M MACs seed {seed} val "
                f"{out['val_acc']:.4f} test {out['test_acc']:.4f} ({out['wall_seconds']:.0f} s; "
                f"eta {eta / 60:.1f} min)")

    (executor or execute)(tasks, proto, device, threads, jobs, record)


Task = tuple[Any, list[int]]  #: a spec and the seeds to train it with, in one process


def execute(tasks: list[Task], proto: Any, device: str, threads: int | None, jobs: int,
            record: Callable[[Any, list[int], list[dict[str, Any]]], None]) -> None:
    """Train every ``(spec, seeds)`` task under ``proto``; ``record(spec, seeds, results)`` as
    each ends (in this process). Here: ``jobs`` spawned local processes (each run seeds itself,
    so the results do not depend on ``jobs``), or this process for one job. The seam where an
    engine that runs the tasks elsewhere (many workers) replaces the local one:
    :func:`train_all` and :func:`run` take ``executor=``."""
    if jobs > 1 and len(tasks) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(train_seeds, spec, proto, missing, device, threads):
                       (spec, missing) for spec, missing in tasks}
            for fut in as_completed(futures):
                record(*futures[fut], fut.result())
    else:
        for spec, missing in tasks:
            record(spec, missing, train_seeds(spec, proto, missing, device, threads))


def search_stage(preset: StudyPreset, out: Path, device: str, log: Callable[[str], None],
                 prov: Any = None, shared: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run (or resume) the baseline search; its best trial as ``OUT/search/baseline.json``.
    ``shared``: the storage URL, heartbeat and grace of workers that share the search
    (:func:`scaling.study.shared.search`); the record is then always the storage's."""
    from scaling.files import atomic_write_json

    path = out / "search" / "baseline.json"
    found_here = path.is_file()
    if found_here and shared is None:
        return json.loads(path.read_text())
    from scaling.data import NATIVE_SHAPE
    from scaling.search.cli import format_counts
    from scaling.search.reevaluate import stored
    from scaling.search.report import best_trials, counts, score_name, trial_record, write_outputs
    from scaling.search.study import SearchConfig, run_search

    folder = out / "search"
    folder.mkdir(parents=True, exist_ok=True)
    if folder.resolve().is_relative_to(Path.cwd().resolve()):  # no machine paths stored
        folder = folder.resolve().relative_to(Path.cwd().resolve())
    p = preset.protocol
    data = {"data": p.dataset, "resolution": p.resolution, "data_root": p.data_root,
            "in_channels": None if NATIVE_SHAPE[p.dataset][0] == p.in_channels else p.in_channels}
    settings = {"seed": 0, "reevaluate": 0, **preset.search}  # as committed studies ran
    where = {"study": "search", "storage": f"sqlite:///{folder / 'search.db'}"}
    if shared is not None:
        from scaling.study.shared import search, study_names

        names = study_names(preset)
        where = {"study": names["search"], "storage": shared["storage"]}
        settings.update(heartbeat=shared["heartbeat"], grace=shared["grace"])
    cfg = SearchConfig(budget=preset.base_macs, resume=True, device=device, out_dir=str(folder),
                       quiet=True, **where, **data, **settings)
    t0 = time.perf_counter()
    if shared is not None:
        record, study = search(cfg, shared["storage"], names, shared["heartbeat"],
                               shared["grace"], log)
    else:
        study = run_search(cfg).study
        best = best_trials(study)
        if not best:
            raise RuntimeError(f"the search trained no feasible trial: {counts(study)}")
        record = {**trial_record(best[0]), "counts": counts(study),
                  "search_seconds": round(time.perf_counter() - t0, 1),
                  "reevaluation": stored(study)}
    write_outputs(study, str(folder), name="search")  # the same files with a shared storage
    atomic_write_json(path, record)
    if prov is not None and not found_here:  # by the invocation that ran the search
        for name in ("baseline.json", "search.csv", "search.trials.csv", "search.best.json"):
            prov.write(folder / name, search=dict(preset.search), budget=preset.base_macs)
    score = "-" if record.get("score") is None else f"{record['score']:.4g}"
    log(f"search: best trial #{record['number']} ({record['macs'] / 1e6:.2f}M MACs, "
        f"{score_name(cfg)} {score}); trials: {format_counts(record['counts'], cfg.evaluator)}")
    return record


def run(preset_name: str | Path | StudyPreset, out: Path, device: str = "auto",
        threads: int | None = 1, jobs: int | None = None, log: Callable[[str], None] = print,
        plan_only: bool = False, executor: Callable[..., None] | None = None,
        storage: str | None = None, heartbeat: int = 10, grace: int = 30) -> dict[str, Any]:
    """All stages of the study ``preset_name`` (a preset's name, a YAML file or a StudyPreset)
    into ``out``; returns the report's summary. ``plan_only``: train nothing; write
    ``plan.json`` (every model the study would train) from the search and the grid's runs
    already in ``out`` and return ``{"plan": path}``. ``executor``: see :func:`execute`.
    ``storage``: an Optuna RDB URL shared by any number of workers that run this same call
    (:mod:`scaling.study.shared`; ``jobs`` and ``executor`` are then unused); ``heartbeat`` and
    ``grace``: seconds between a worker's heartbeats, and of silence before its run is
    retrained by another."""
    from scaling.compound.match import macs_of
    from scaling.ir import NetworkSpec
    from scaling.study.provenance import Provenance, atomic_write_json
    from scaling.train.common import resolve_device

    if storage is not None and plan_only:
        raise ValueError("storage is not allowed with plan_only; expected one of them (a plan "
                         "is read from the study's folder)")
    shared = None
    if storage is not None:  # unreachable or not a URL: one line before anything runs
        from scaling.search.storage import open_rdb

        open_rdb(storage, heartbeat=heartbeat, grace=grace, max_retry=2)
        shared = {"storage": storage, "heartbeat": heartbeat, "grace": grace}
    preset = resolve(preset_name)  # base_macs: the search budget until the search has run
    preset_name = preset.name
    jobs = preset.jobs if jobs is None else jobs
    proto = preset.protocol
    prov = Provenance(seeds=proto.seeds, device=device, preset=preset_name,
                      protocol=protocol_record(proto))
    out.mkdir(parents=True, exist_ok=True)
    if not plan_only:
        keep_config(out, preset)
    search_reused = (out / "search" / "baseline.json").is_file()
    if plan_only and not search_reused:
        raise ValueError(f"plan_only needs the search's result, {out / 'search/baseline.json'}, "
                         "which is missing: run the study (or its search) first")
    searched = search_stage(preset, out, device, log, prov, shared)
    searched_root = adapt(NetworkSpec.from_dict(searched["spec"]), proto.resolution,
                          proto.in_channels, proto.num_classes).replace(name="searched")
    # the base point is the preset's, fixed before the search: the searched net's width is
    # refitted to it, as every hand-designed family's is, so the study's MAC points (and its
    # run time) do not move with what a search happens to find
    found = macs_of(searched_root)
    base = renamed(base_point(searched_root, preset), "searched phi0")
    store = RunStore(out / "runs.csv")
    search_state = "reused" if search_reused else "ran"
    started = None if plan_only else log_invocation(out, prov, None, len(store.rows),
                                                    search=search_state)

    grid = grid_plan(base, preset)
    log(f"grid: {len(grid)} candidates within {100 * preset.grid_mac_tol:g}% of 2x the base "
        f"(base: {base.spec.num_blocks} blocks, {base.macs / 1e6:.2f}M MACs)")
    before = len(store.rows)
    group = resolve_device(device).type == "cuda"  # a spec's seeds share its cuDNN plans
    here: list[int] = []  # runs this worker trained (shared storage)
    taken: set[str] = set()  # runs taken from the shared storage by an earlier stage

    def train(entries: list[dict[str, Any]], seeds: tuple[int, ...], stage: str) -> None:
        if shared is None:
            train_all(entries, seeds, preset, store, device, threads, jobs, log, group,
                      executor)
        else:
            from scaling.study.shared import study_names, train_stage

            here.append(train_stage(entries, seeds, preset, store, device, threads, storage,
                                    study_names(preset)[stage], heartbeat, grace, log,
                                    taken))

    if not plan_only:
        train(grid, proto.seeds[:1], "grid")
    else:
        missing = [e for e in grid
                   if RunStore.key(e["spec"], proto.seeds[0], proto.key()) not in store.rows]
        if missing:
            return pending_plan(preset_name, grid, missing, base, proto.key(), store.path, log)
    confirmed = confirm_plan(grid, preset, store)
    if confirmed and not plan_only:
        train(confirmed, proto.seeds, "confirm")
    elif any(RunStore.key(e["spec"], s, proto.key()) not in store.rows
             for e in confirmed for s in proto.seeds):
        return pending_plan(preset_name, grid, confirmed, base, proto.key(), store.path, log)
    grid_rows = grid_table_rows(grid, preset, store)
    winner, why = grid_winner(grid_rows, grid, preset)
    log(f"grid winner: alpha={winner[0]:g} beta={winner[1]:g} gamma={winner[2]:g} ({why})")

    family = family_plan(base, winner, preset, root=searched_root)
    single = single_plan(searched_root, base, winner, preset)
    plan = {"preset": preset_name, "protocol": protocol_record(proto),
            "search_budget": preset.base_macs, "base_macs": preset.base_macs, "winner": winner,
            "winner_reason": why,
            "searched": {**{k: v for k, v in searched.items() if k != "spec"},
                         "macs_as_found": found, "base_width": base.knob, "base_macs": base.macs},
            "models": [{**{k: v for k, v in e.items() if k != "spec"},
                        "spec": e["spec"].to_dict()} for e in grid + family + single]}
    plan_path = atomic_write_json(out / "plan.json", plan)
    prov.write(plan_path)
    if plan_only:
        return {"plan": str(plan_path)}
    train(family + single, proto.seeds, "runs")

    from scaling.study.report import write_report

    tables = {"grid": grid_rows, "family": joined(family, proto.seeds, store, proto.key()),
              "single": joined(single, proto.seeds, store, proto.key())}
    dropped = store.keep_read()  # every run the tables read is kept
    if dropped:
        log(f"runs.csv: dropped {dropped} runs that the plan no longer has")
    trained = sum(here) if shared else len(store.rows) + dropped - before
    log_invocation(out, prov, trained=trained, reused=len(store.rows) - trained,
                   dropped=dropped, search=search_state, index=started)
    return write_report(out, preset_name, preset, tables, plan, prov)


def log_invocation(out: Path, prov: Any, trained: int | None, reused: int, dropped: int = 0,
                   search: str = "ran", index: int | None = None) -> int:
    """``runs.provenance.json``: every invocation that wrote ``runs.csv`` (command, commit, date,
    wall time, runs trained and reused), so a resumed study keeps who trained which rows; a
    folder written before this log existed starts it from ``family.provenance.json``.
    ``search``: whether this invocation ran the baseline search or found it there. An
    invocation is logged when it starts training (``trained=None``: ``finished`` false, which a
    stopped invocation keeps) and again, at the same ``index``, when it ends."""
    from scaling.study.provenance import atomic_write_json

    path = out / "runs.provenance.json"
    keys = ("command", "git_commit", "device", "torch", "date", "wall_time_s")
    if path.is_file():
        invocations = json.loads(path.read_text())["invocations"]
    elif (out / "family.provenance.json").is_file():
        old = json.loads((out / "family.provenance.json").read_text())
        invocations = [{**{k: old.get(k) for k in keys}, "trained_runs": reused,
                        "reused_runs": 0, "source": "family.provenance.json"}]
    else:
        invocations = []
    now = prov.record()
    entry = {**{k: now.get(k) for k in keys}, "trained_runs": trained, "reused_runs": reused,
             "dropped_runs": dropped, "search": search, "finished": trained is not None}
    if index is None:
        invocations.append(entry)
        index = len(invocations) - 1
    else:
        invocations[index] = entry
    atomic_write_json(path, {**prov.record(), "result": "runs.csv", "invocations": invocations})
    return index


def protocol_record(proto: Any) -> dict[str, Any]:
    """The protocol as ``plan.json`` and the provenance store it: its fields and key, not the
    data's folder (a machine path)."""
    record = {k: v for k, v in dataclasses.asdict(proto).items() if k != "data_root"}
    return {**record, "key": proto.key()}


def keep_config(out: Path, preset: StudyPreset) -> None:
    """``OUT/study.yaml``: the config the study ran, which ``report OUT`` reads back."""
    from scaling.files import atomic_write_text

    path = out / "study.yaml"
    if preset.source and (not path.is_file() or path.read_text() != preset.source):
        atomic_write_text(path, preset.source)


def report(out: Path, config: str | Path | StudyPreset | None = None) -> dict[str, Any]:
    """Rewrite ``out``'s tables, figures and README from the models of its ``plan.json`` (as
    trained: re-planning cannot rebuild a study planned before a later refit), their runs in
    ``runs.csv`` (both left as they are) and the search's recorded settings, under ``config``
    (default: ``out/study.yaml``, else the preset named in ``plan.json``); trains nothing. A
    run of the plan that ``runs.csv`` lacks, or another protocol, is a ValueError."""
    from scaling.ir import NetworkSpec
    from scaling.study.provenance import Provenance
    from scaling.study.report import write_report

    if not (out / "plan.json").is_file() or not (out / "runs.csv").is_file():
        raise ValueError(f"{out} holds no study (expected plan.json and runs.csv in it): run "
                         "python -m scaling.study run CONFIG --out DIR first")
    plan = json.loads((out / "plan.json").read_text())
    if config is None:
        config = out / "study.yaml" if (out / "study.yaml").is_file() else plan["preset"]
    preset = resolve(config)
    proto, key = preset.protocol, plan["protocol"]["key"]
    if key != proto.key():
        raise ValueError(f"{out}/plan.json was planned under protocol {key}, the config "
                         f"{preset.name!r} has {proto.key()}: pass the study's config")
    searched = out / "search" / "baseline.provenance.json"  # the settings the search ran with
    search = json.loads(searched.read_text()).get("search") if searched.is_file() else None
    preset = dataclasses.replace(preset, base_macs=plan["base_macs"],
                                 search=search or preset.search)
    store = RunStore(out / "runs.csv")
    tables: dict[str, list[dict[str, Any]]] = {"grid": [], "family": [], "single": []}
    grid = [{**m, "spec": NetworkSpec.from_dict(m["spec"])} for m in plan["models"]
            if m["experiment"] == "grid"]
    for m in plan["models"]:
        entry = {**m, "spec": NetworkSpec.from_dict(m["spec"])}
        confirmed = m["experiment"] != "grid" or m.get("confirmed")
        seeds = proto.seeds if confirmed else proto.seeds[:1]
        if lost := [s for s in seeds if RunStore.key(entry["spec"], s, key) not in store.rows]:
            raise ValueError(f"{out}/runs.csv lacks {entry['spec'].name} seeds {lost} of "
                             f"plan.json under protocol {key}: resume the study (python -m "
                             "scaling.study run CONFIG --out DIR)")
        if m["experiment"] != "grid":
            tables[m["experiment"]] += joined([entry], seeds, store, key)
    tables["grid"] = grid_table_rows(grid, preset, store)
    prov = Provenance(seeds=proto.seeds, preset=preset.name, protocol=plan["protocol"],
                      report_only="runs from runs.csv, plan.json")
    return write_report(out, preset.name, preset, tables, plan, prov)
