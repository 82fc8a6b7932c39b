"""What a search trial's looks cost: one complete trial at the medium protocol validated at all
nine evaluation points against the same run validated at the rungs of successive halving only
(points 1, 3 and 9: ``scaling.search.evaluators.rung_points``), in alternating pairs.

Each look between rungs costs a validation pass (2,000 images) and 8 batches of precise BN and
decides nothing. The weights do not depend on the looks, so the two arms train the same run and
end at the same validation accuracy (checked). The net is the medium study's searched base
(``results/medium/search/baseline.json``, written by ``python -m scaling.study run medium``).

    python experiments/look_cost.py [--pairs 2] [--baseline results/medium/search/baseline.json]

Prints one line per run and the mean wall and training seconds of each arm; writes nothing.
The wall ratio of the arms moves with the machine's speed from run to run (two pairs at 54769e8:
training alone took 90-112 s); the seconds outside the training are the looks' cost.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", type=int, default=2, help="pairs of runs, order alternating")
    p.add_argument("--baseline", type=Path,
                   default=ROOT / "results/medium/search/baseline.json",
                   help="a search's baseline.json (its spec is trained)")
    args = p.parse_args(argv)
    if args.pairs < 1:
        p.error(f"--pairs {args.pairs} is not allowed; expected >= 1")

    from scaling.data import load_dataset
    from scaling.ir import NetworkSpec
    from scaling.train import train

    spec = NetworkSpec.from_dict(json.loads(args.baseline.read_text())["spec"])
    data = load_dataset("fashion-mnist", val_size=2000, subset=20000, resolution=spec.resolution,
                        in_channels=1)
    protocol = {"epochs": 2, "batch_size": 64, "lr": 0.05, "zero_init_last": True,
                "augment": False, "evals_per_epoch": 4.5, "threads": 1, "device": "cpu",
                "progress": False}
    arms = {"every point": (), "rungs only": (1, 3, 9)}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in arms}
    finals: dict[str, set[float]] = {name: set() for name in arms}
    for pair in range(args.pairs):
        order = list(arms) if pair % 2 == 0 else list(arms)[::-1]
        for name in order:
            t0 = time.perf_counter()
            res = train(spec, data, eval_points=arms[name], **protocol)
            wall = time.perf_counter() - t0
            times[name].append((wall, res.train_time))
            finals[name].add(res.final_val_top1)
            looks = sum(h["val_top1"] is not None for h in res.history)
            print(f"pair {pair} {name}: wall {wall:.1f} s, training {res.train_time:.1f} s, "
                  f"{looks} validations, final val {res.final_val_top1:.4f}", flush=True)
    for name, rows in times.items():
        wall = sum(r[0] for r in rows) / len(rows)
        trained = sum(r[1] for r in rows) / len(rows)
        print(f"{name}: mean wall {wall:.1f} s, mean training {trained:.1f} s, outside the "
              f"training (validations, precise BN, set-up) {wall - trained:.1f} s, over "
              f"{len(rows)}")
    every, rungs = (sum(r[0] for r in times[n]) for n in arms)
    print(f"rungs only / every point, wall: {rungs / every:.3f}; same final accuracy: "
          f"{finals['every point'] == finals['rungs only']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
