"""The loops that ``python -m scaling.bench gpu`` times: a plain training loop on resident data,
the search's trial loop, and the target of its spawned worker processes (picklable, top level).

Every timing waits for the device (``torch.cuda.synchronize``) before reading the clock.
"""

from __future__ import annotations

import statistics
import time
from typing import Any


def sync(dev: Any) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously)."""
    import torch

    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize(dev)


def plain_loop(model: Any, data: Any, dev: Any, batch_size: int, epochs: int,
               seed: int = 0) -> list[tuple[int, float]]:
    """A plain training loop: the uint8 training split resident on ``dev`` (moved once), per
    batch a seeded-permutation slice normalised to float on the device, channels_last, bf16
    autocast on CUDA, SGD with Nesterov momentum, ``zero_grad / forward / cross_entropy /
    backward / step``, nothing else. Returns (images, seconds) per epoch."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(dev)
    cl = torch.channels_last
    model = model.to(dev).to(memory_format=cl).train()
    x_all, y_all = data.train.x.to(dev), data.train.y.to(dev)
    mean = torch.tensor(data.mean, device=dev).view(1, -1, 1, 1) * 255
    std = torch.tensor(data.std, device=dev).view(1, -1, 1, 1) * 255
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    amp = torch.bfloat16 if dev.type == "cuda" else None
    gen = torch.Generator().manual_seed(seed)
    n = len(y_all)
    steps = max(1, n // batch_size)
    out = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(dev)
        sync(dev)
        t0 = time.perf_counter()
        for i in range(steps):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = ((x_all[idx].float() - mean) / std).contiguous(memory_format=cl)
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(dev)
        out.append((steps * min(batch_size, n), time.perf_counter() - t0))
    return out


def make_context(cfg_dict: dict[str, Any], rank: int = 0, data: Any = None) -> Any:
    """A :class:`~scaling.search.evaluators.SearchContext` for ``cfg_dict`` with its data (and
    the proxy minibatch) loaded and the device initialised: what a trial loop needs before its
    clock starts."""

    from scaling.search.config import SearchConfig
    from scaling.search.evaluators import SearchContext

    ctx = SearchContext(SearchConfig.from_dict(cfg_dict).validate(), rank, data=data)
    ctx.data()
    if ctx.cfg.proxies:
        ctx.batch()
    warm_up(ctx.device)
    return ctx


def warm_up(dev: Any) -> None:
    """One tiny conv step (autocast on CUDA) on ``dev``: the CUDA context, cuDNN and cuBLAS
    handles and the CPU kernel libraries start here, not inside the first timed trial."""
    import torch
    import torch.nn.functional as F

    dev = torch.device(dev)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8 * 26 * 26, 10))
    net = net.to(dev).to(memory_format=torch.channels_last)
    x = torch.randn(8, 1, 28, 28, device=dev).contiguous(memory_format=torch.channels_last)
    amp = torch.bfloat16 if dev.type == "cuda" else None
    with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
        out = net(x)
    F.cross_entropy(out.float(), torch.zeros(8, dtype=torch.long, device=dev)).backward()
    sync(dev)


def run_trials(ctx: Any, n_trials: int) -> dict[str, Any]:
    """``n_trials`` trials of the search's objective (:func:`scaling.search.evaluators.
    make_objective`) for the context ``ctx`` (:func:`make_context`) in an in-memory study, random
    sampler seeded by ``seed + rank``.

    Returns images trained, wall seconds, the trials evaluated (over-budget samples are
    counted apart), per trial its wall seconds, CPU seconds and fixed seconds (wall - images /
    that trial's steady images/s: building, proxies, warm-up, evaluation)."""
    import optuna

    from scaling.search.evaluators import make_objective
    from scaling.search.objectives import get_objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    cfg = ctx.cfg
    objective = make_objective(ctx)
    study = optuna.create_study(directions=list(get_objective(cfg.objective).directions),
                                sampler=optuna.samplers.RandomSampler(seed=cfg.seed + ctx.rank))
    walls, cpus, fixed, images, over = [], [], [], 0, 0
    sync(ctx.device)
    t0 = time.perf_counter()
    for _ in range(n_trials):
        trial = study.ask()
        w0, c0 = time.perf_counter(), time.process_time()
        try:
            values = objective(trial)
            state = optuna.trial.TrialState.COMPLETE
        except optuna.TrialPruned:
            values, state = None, optuna.trial.TrialState.PRUNED
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        study.tell(trial, values, state=state)
        attrs = trial.user_attrs
        if attrs.get("status") == "over_budget":
            over += 1
            continue
        walls.append(wall)
        cpus.append(cpu)
        samples = int(attrs.get("train_samples") or 0)
        images += samples
        steady = float(attrs.get("steady_images_per_s") or 0.0)
        if samples and steady > 0:
            fixed.append(wall - samples / steady)
    sync(ctx.device)
    return {"images": images, "seconds": time.perf_counter() - t0, "trials": len(walls),
            "over_budget": over, "trial_s": walls, "trial_cpu_s": cpus, "fixed_s": fixed,
            "device": ctx.device}


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def trial_worker(conf: dict[str, Any], rank: int, barrier: Any, queue: Any) -> None:
    """Target of one spawned worker process: load the data, warm the device, wait at
    ``barrier`` for every worker, run ``conf['trials']`` trials, put the result on ``queue``."""
    try:
        import torch

        if conf.get("threads"):
            torch.set_num_threads(conf["threads"])
        data = None
        if conf.get("synthetic"):
            from scaling.bench.data import synthetic_data

            data = synthetic_data(conf["search"]["subset"], conf["search"]["val_size"],
                                  seed=rank)
        ctx = make_context(conf["search"], rank, data)
        barrier.wait()
        start = time.time()
        result = run_trials(ctx, conf["trials"])
        queue.put({**result, "rank": rank, "start": start, "end": time.time()})
    except BaseException as exc:  # the parent must hear of it, not wait forever
        barrier.abort()
        queue.put({"rank": rank, "error": f"{type(exc).__name__}: {exc}"})
