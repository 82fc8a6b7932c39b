"""Where a search trial's fixed seconds go (issue 13): one warm-up trial, then trials profiled.

The GPU bench measured ~4.5 s of fixed cost per trial on an H100 (wall minus images / steady
images/s) against ~0.2 s on the CPU. This script runs the search's own trial loop
(:func:`scaling.bench.loops.run_trials`, the ``train`` evaluator, the bench's search settings) and
writes, for the profiled trials:

- ``trial_python.txt``: cProfile, cumulative time per Python function (build, proxies, trainer
  epochs, evaluation, precise BN; CUDA time lands at the call that synchronises);
- ``trial_ops.txt``: torch.profiler's operator table (self CPU and device time), which separates
  kernel time from launch overhead and names first-call costs (cuDNN/cuBLAS setup, module loads);
- ``trial_summary.json``: per trial wall, images, steady images/s and fixed seconds, plus
  provenance (command, commit, device, date).

    python experiments/profile_trial.py --device cuda --out results/bench/profile-h100
    python experiments/profile_trial.py --device cpu --tiny --out /tmp/profile   # rehearsal
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="auto (CUDA when available) | cpu | cuda")
    p.add_argument("--trials", type=int, default=3, help="profiled trials (after one warm-up)")
    p.add_argument("--budget", default="6M", help="MAC budget of the sampled nets")
    p.add_argument("--tiny", action="store_true", help="CPU rehearsal sizes (seconds)")
    p.add_argument("--out", type=Path, required=True, help="folder for the three files")
    args = p.parse_args(argv)
    import torch

    from scaling.bench.loops import make_context, run_trials
    from scaling.search.objectives import parse_budget
    from scaling.study.provenance import Provenance, atomic_write_json, atomic_write_text

    dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    sizes = ({"epochs": 1.0, "subset": 256, "val_size": 128, "batch_size": 64} if args.tiny else
             {"epochs": 1.0, "subset": 5000, "val_size": 1000, "batch_size": 256})
    cfg = {"budget": parse_budget(args.budget), "evaluator": "train", "device": dev, "seed": 0,
           "pruner": "none", "threads": None, "out_dir": "unused", "quiet": True, **sizes}
    prov = Provenance(seeds=[0], device=dev, settings=cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ctx = make_context(cfg)
    setup_s = time.perf_counter() - t0
    warm = run_trials(ctx, 1)  # the process's first trial: lazy initialisation of everything
    activities = [torch.profiler.ProfilerActivity.CPU]
    if dev.startswith("cuda"):
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    prof = cProfile.Profile()
    with torch.profiler.profile(activities=activities) as ops:
        prof.enable()
        res = run_trials(ctx, args.trials)
        prof.disable()
    buf = io.StringIO()
    # file names without their folders: a result names no machine's paths
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("cumulative").print_stats(60)
    atomic_write_text(args.out / "trial_python.txt", buf.getvalue())
    sort = "self_cuda_time_total" if len(activities) > 1 else "self_cpu_time_total"
    table = ops.key_averages().table(sort_by=sort, row_limit=60, max_name_column_width=60)
    atomic_write_text(args.out / "trial_ops.txt", table)
    summary = {"device_name": torch.cuda.get_device_name() if dev.startswith("cuda") else "cpu",
               "setup_s": round(setup_s, 3), "warm_up_trial": warm, "profiled": res,
               "note": "profiled trials run under cProfile and torch.profiler: their wall and "
                       "fixed seconds include the profilers' overhead; the warm-up trial's "
                       "do not"}
    path = atomic_write_json(args.out / "trial_summary.json", summary)
    prov.write(path)
    print(json.dumps({"warm_fixed_s": warm.get("fixed_s"), "profiled_fixed_s":
                      res.get("fixed_s"), "trial_s": res.get("trial_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
