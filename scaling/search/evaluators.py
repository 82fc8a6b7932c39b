"""Trial evaluators and the Optuna objective function.

Registry :data:`EVALUATORS` (add one with ``EVALUATORS[name] = fn``; ``fn(ctx, trial, spec,
cost) -> Evaluation``):

- ``train``: short proxy training (:func:`scaling.train.trainer.train`) on a seeded subset with the
  study's pruner over epochs (single objective; Optuna cannot prune multi-objective trials);
  the score is the final validation top-1.
- ``zero-cost``: the proxies of :mod:`scaling.search.proxies` on one minibatch; the score is
  the ``rank_proxy`` (default synflow).
- ``hybrid``: trials are trained like ``train``; the study driver first screens samples with
  ``zero-cost`` in a companion study and enqueues the best k (see :mod:`scaling.search.study`).

Every evaluated trial stores its spec JSON, analytic MACs/params/activations and each proxy it
computed (``proxy_<name>``) in its user attrs, so any trial rebuilds and proxies can be
rank-correlated with accuracy afterwards. Over-budget samples are never evaluated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scaling.data.catalog import ALIASES, NATIVE_SHAPE, NUM_CLASSES
from scaling.search.objectives import get_objective, set_budget_constraint
from scaling.search.space import sample_recipe, sample_spec

# The config (:class:`scaling.search.config.SearchConfig`) imports this registry to check its
# evaluator name, so this module types it as ``Any``: no import back.
SearchConfig = Any


@dataclass
class Evaluation:
    """What an evaluator found. ``score`` None means: not comparable (diverged) -> penalty."""

    score: float | None
    status: str = "ok"
    proxies: dict[str, float | None] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


class SearchContext:
    """Per-process state of a search: the config, the dataset and the proxy minibatch (loaded
    lazily, once), the device. ``data``: an :class:`~scaling.data.ImageData` to use instead of
    loading ``cfg.data`` (benchmarks and tests on synthetic images)."""

    def __init__(self, cfg: SearchConfig, rank: int = 0, data: Any = None) -> None:
        self.cfg, self.rank = cfg, rank
        self._data: Any = data
        self._batch: dict[int, Any] = {}
        self._latency: Any = None

    def latency_table(self) -> Any:
        """The search's latency table (loaded once per process)."""
        if self._latency is None:
            from scaling.latency import load_table

            self._latency = load_table(self.cfg.latency_table)
        return self._latency

    def measure_missing(self, parts: list[Any]) -> dict[str, float]:
        """Entries the table lacks, measured here in its environment (3 short rounds: profile
        ahead for precise ones) and kept for this process's later trials (the file is not
        changed)."""
        from scaling.latency.predict import measure_options
        from scaling.latency.profile import measure_parts

        table = self.latency_table()
        found = measure_parts(parts, **measure_options(table), rounds=3, warmup=1, min_ms=1.0)
        self._latency = table.with_entries(found)
        return found

    @property
    def device(self) -> str:
        from scaling.train import resolve_device

        return str(resolve_device(self.cfg.device))

    def data(self) -> Any:
        if self._data is None:
            from scaling.data import load_dataset

            cfg = self.cfg
            self._data = load_dataset(cfg.data, cfg.data_root, val_size=cfg.val_size,
                                      split_seed=0, subset=cfg.subset,
                                      resolution=cfg.resolution, in_channels=cfg.in_channels)
        return self._data

    @property
    def in_channels(self) -> int:
        if self.cfg.in_channels:
            return self.cfg.in_channels
        key = ALIASES.get(self.cfg.data, self.cfg.data)
        return NATIVE_SHAPE[key][0] if key in NUM_CLASSES else self.data().in_channels

    @property
    def num_classes(self) -> int:
        key = ALIASES.get(self.cfg.data, self.cfg.data)
        return NUM_CLASSES.get(key) or self.data().num_classes

    def batch(self, size: int | None = None) -> tuple[Any, Any]:
        """``size`` (default ``zc_batch``) training images (seeded choice), normalised as for
        evaluation; one cached minibatch per size."""
        size = self.cfg.zc_batch if size is None else size
        if size not in self._batch:
            import torch

            data = self.data()
            n = min(size, len(data.train))
            gen = torch.Generator().manual_seed(self.cfg.seed)
            idx = torch.randperm(len(data.train), generator=gen)[:n]
            split = data.train
            if hasattr(split, "x"):  # in memory
                x, y = split.x[idx], split.y[idx]
            else:  # an ImageFolder tree, decoded image by image
                items = [split[i] for i in idx.tolist()]
                x = torch.stack([item[0] for item in items])
                y = torch.tensor([item[1] for item in items])
            self._batch[size] = (data.transform(train=False)(x), y)
        return self._batch[size]


def channels_last(cfg: SearchConfig) -> bool | str:
    """The trial's memory layout: 'auto' lets the trainer choose (channels_last whenever the net
    has a conv, on CPU too: 1.2-1.7x faster for these nets at 28x28, ``python -m scaling.bench
    train``); 'on' / 'off' force it."""
    return {"on": True, "off": False}.get(cfg.channels_last, "auto")


def one_shape(ctx: SearchContext) -> bool:
    """Whether a trial runs its net at one batch shape and precision (proxies, training,
    precise BN, validation): on CUDA, where each new shape costs a cuDNN plan per layer."""
    from scaling.train import resolve_device
    from scaling.train.common import uses_one_shape

    return uses_one_shape("auto", resolve_device(ctx.cfg.device))


def compute_trial_proxies(ctx: SearchContext, spec: Any, model: Any = None,
                          train_batch: int | None = None) -> dict[str, float | None]:
    """The config's proxies of ``spec``; on ``model`` (the net the trial trains) when given, else
    on a net built under the search seed (the same initial weights).

    ``train_batch``: the batch size the trial trains at. On CUDA every proxy then runs at that
    batch size and under the trial's autocast dtype, so the net meets one shape and precision in
    the whole trial: cuDNN plans every new conv configuration, 2-5 ms of host time per layer and
    direction, and the proxies' own shapes took 7.5 of 23.9 s of three trials on an H100
    (results/bench/profile-h100/). Elsewhere (and without ``train_batch``) the proxies use
    ``zc_batch`` images in float32, so CPU scores are what they were (:func:`one_shape`).
    """
    from scaling.search.proxies import compute_proxies
    from scaling.train import resolve_device
    from scaling.train.common import amp_dtype

    names = ctx.cfg.proxies
    if not names:
        return {}
    dev = resolve_device(ctx.cfg.device)
    single = train_batch is not None and one_shape(ctx)
    needs_batch = any(n in ("naswot", "grad_norm") for n in names) or single
    batch = ctx.batch(train_batch if single else None) if needs_batch else None
    return compute_proxies(spec, batch, names, seed=ctx.cfg.seed, device=dev, model=model,
                           channels_last=channels_last(ctx.cfg) is not False,
                           one_shape=single, amp=amp_dtype("auto", dev) if single else None)


def zero_cost(ctx: SearchContext, trial: Any, spec: Any, cost: Any) -> Evaluation:
    proxies = compute_trial_proxies(ctx, spec)
    score = proxies.get(ctx.cfg.rank_proxy)
    return Evaluation(None if score is None else float(score), proxies=proxies)


def train_spec(ctx: SearchContext, spec: Any, seed: int | None = None,
               callback: Callable[[int, dict], Any] | None = None,
               before_train: Callable[[Any], Any] | None = None,
               recipe: dict[str, Any] | None = None, evals_per_epoch: float = 1,
               eval_points: tuple[int, ...] = ()) -> Any:
    """Train ``spec`` by the search's protocol (data split, subset, epochs, optimizer, seed):
    what every trial gets, and what baselines must get to be comparable; ``recipe``: a trial's
    sampled recipe (user attr ``recipe``) over the fixed one. ``before_train(model)``
    sees the freshly built net (:func:`scaling.train.trainer.train`); ``evals_per_epoch``: the
    looks of a pruned trial (the weights do not depend on it), ``eval_points`` the ones among
    them that validate (all where empty)."""
    from scaling.train import train

    cfg = ctx.cfg
    return train(spec, ctx.data(), epochs=cfg.epochs, seconds=cfg.trial_seconds,
                 evals_per_epoch=evals_per_epoch, eval_points=eval_points,
                 **recipe_kwargs(cfg, recipe),
                 seed=cfg.seed if seed is None else seed, device=cfg.device,
                 channels_last=channels_last(cfg), one_shape=one_shape(ctx),
                 augment=cfg.augment, zero_init_last=cfg.zero_init_last, threads=cfg.threads,
                 callback=callback, before_train=before_train,
                 progress=False)


def rung_points(cfg: SearchConfig) -> tuple[int, ...]:
    """The evaluation points where sha/hyperband can decide (``min_resource * prune_factor**k``,
    every bracket's rungs among them) and the last one; () for other pruners (every point).
    A point between rungs would cost a validation and a precise-BN pass and decide nothing."""
    if cfg.pruner not in ("sha", "hyperband"):
        return ()
    points, step = {cfg.reports}, cfg.min_resource
    while step < cfg.reports:
        points.add(step)
        step *= cfg.prune_factor
    return tuple(sorted(points))


def recipe_kwargs(cfg: SearchConfig, recipe: dict[str, Any] | None = None) -> dict[str, Any]:
    """The recipe keywords of :func:`scaling.train.train`: the config's fixed recipe (optimizer,
    lr, batch size; the rest TrainConfig's defaults) overridden by a sampled ``recipe``. A sampled
    optimizer other than the config's drops the config's lr (it was meant for the other one)."""
    out: dict[str, Any] = {"batch_size": cfg.batch_size, "optimizer": cfg.optimizer, "lr": cfg.lr}
    recipe = dict(recipe or {})
    if recipe.get("optimizer", cfg.optimizer) != cfg.optimizer:
        out["lr"] = None
    return {**out, **recipe}


def train_eval(ctx: SearchContext, trial: Any, spec: Any, cost: Any) -> Evaluation:
    import optuna

    cfg = ctx.cfg
    objective = get_objective(cfg.objective)
    proxies: dict[str, float | None] = {}
    callback: Callable[[int, dict], Any] | None = None
    looks, points = 1.0, ()
    # an enqueued hand-designed net is the reference the search must beat: it is never pruned
    # (a large net starts slower than a small one, and EfficientNet-B0 fell at the first rung)
    if not objective.multi and cfg.pruner != "none" and not trial.user_attrs.get("enqueued"):
        looks, points = float(cfg.evals_per_epoch), rung_points(cfg)

        def callback(report: int, metrics: dict) -> bool:
            if metrics.get("val_top1") is None:
                return True
            trial.report(objective.intermediate(metrics["val_top1"], cost.macs, cfg.budget,
                                                cfg.reward_w), report)
            return not trial.should_prune()

    recipe = trial.user_attrs.get("recipe")
    train_batch = recipe_kwargs(cfg, recipe)["batch_size"]

    def before_train(model: Any) -> None:  # the proxies of the very net the trial trains
        proxies.update(compute_trial_proxies(ctx, spec, model, train_batch))

    result = train_spec(ctx, spec, callback=callback, before_train=before_train, recipe=recipe,
                        evals_per_epoch=looks, eval_points=points)
    if cfg.proxies and not proxies:  # a train() that did not call before_train (a stand-in)
        proxies.update(compute_trial_proxies(ctx, spec))
    history = [h["val_top1"] for h in result.history if h["val_top1"] is not None]
    steady = result.history[-1].get("images_per_s", 0.0) if result.history else 0.0
    attrs = {"val_acc": result.final_val_top1, "best_val_acc": result.best_val_top1,
             "val_history": history, "train_time": round(result.train_time, 3),
             "images_per_s": round(result.images_per_s, 1), "train_samples": result.samples,
             "steady_images_per_s": round(steady, 1), "wall_time": round(result.wall_time, 3),
             "device": result.device, "reports": len(history),
             "epochs_trained": _epochs_trained(result)}
    if result.status == "pruned":
        for key, value in {**attrs, **_proxy_attrs(proxies), "status": "pruned"}.items():
            trial.set_user_attr(key, value)
        raise optuna.TrialPruned(f"pruned after {attrs['epochs_trained']:g} epochs "
                                 f"({len(history)} evaluation points)")
    score = result.final_val_top1 if result.status == "ok" else None
    return Evaluation(score, status=result.status, proxies=proxies, attrs=attrs)


def _epochs_trained(result: Any) -> float:
    """The epochs a trial trained: its steps over the steps of an epoch (history's ``epochs``);
    one per history entry for a trainer that does not say."""
    last = result.history[-1] if result.history else {}
    return round(float(last["epochs"]), 4) if "epochs" in last else len(result.history)


EVALUATORS: dict[str, Callable[[SearchContext, Any, Any, Any], Evaluation]] = {
    "train": train_eval,
    "zero-cost": zero_cost,
    "hybrid": train_eval,
}


def check_evaluator(name: str) -> None:
    if name not in EVALUATORS:
        raise ValueError(f"evaluator={name!r} is not allowed; expected one of "
                         f"{tuple(EVALUATORS)}")


def _proxy_attrs(proxies: dict[str, float | None]) -> dict[str, float | None]:
    return {f"proxy_{k}": v for k, v in proxies.items()}


def window_space(space: Any, cfg: SearchConfig) -> Any:
    """``space`` for the window objective: a sampled ``budget_fraction`` range clipped to the
    window (a fraction below it only yields samples that are rejected unbuilt); its step is
    dropped where the clipped range is no multiple of it. Other objectives, and spaces without
    such a range, unchanged."""
    frac = space.get("budget_fraction") if isinstance(space, dict) else None
    if cfg.objective != "window" or not isinstance(frac, dict) or "low" not in frac:
        return space
    low, high = max(float(frac["low"]), cfg.window[0]), min(float(frac["high"]), cfg.window[1])
    if low >= high:
        return space
    clipped = {**frac, "low": low, "high": high}
    step = frac.get("step")
    if step and abs((high - low) / step - round((high - low) / step)) > 1e-9:
        clipped.pop("step")
    return {**space, "budget_fraction": clipped}


def trial_spec(trial: Any, ctx: SearchContext, space: Any) -> Any:
    """The trial's net: the enqueued spec of a fixed-spec trial (user attr ``fixed_spec``,
    :mod:`scaling.search.enqueue`), else the one its parameters sample from ``space``."""
    from scaling.ir import NetworkSpec

    cfg = ctx.cfg
    fixed = trial.user_attrs.get("fixed_spec")
    if fixed:
        return NetworkSpec.from_json(fixed)
    return sample_spec(trial, space, cfg.resolution, ctx.in_channels, ctx.num_classes,
                       budget=cfg.budget)


def make_objective(ctx: SearchContext, evaluator: str | None = None
                   ) -> Callable[[Any], float | tuple[float, float]]:
    """The Optuna objective: sample a spec (or take an enqueued one), count it, evaluate it only
    if its MACs are feasible (within the budget; for ``window`` within the window) and, with a
    latency budget, its predicted latency (:func:`scaling.latency.predict`) is within it."""
    from scaling.cost import complexity
    from scaling.latency import predict
    from scaling.search.objectives import latency_status, macs_status

    cfg = ctx.cfg
    objective = get_objective(cfg.objective)
    name = evaluator or cfg.evaluator
    check_evaluator(name)
    evaluate = EVALUATORS[name]
    space = window_space(cfg.space, cfg)

    def run(trial: Any) -> float | tuple[float, float]:
        spec = trial_spec(trial, ctx, space)
        sample_recipe(trial, space)  # after the architecture: an old space's params stay
        cost = complexity(spec)
        status, constraint = macs_status(objective.name, cost.macs, cfg.budget, cfg.window)
        for key, value in {"spec": spec.to_json(indent=None), "macs": cost.macs,
                           "params": cost.params, "activations": cost.activations,
                           "budget": cfg.budget, "feasible": status is None,
                           "worker": ctx.rank, "evaluator": name}.items():
            trial.set_user_attr(key, value)
        if status is None and cfg.latency_budget is not None:
            latency = predict(spec, ctx.latency_table(), measure=ctx.measure_missing)
            trial.set_user_attr("latency_ms", round(latency, 4))
            status, constraint = latency_status(latency, cfg.latency_budget, cfg.budget)
            trial.set_user_attr("feasible", status is None)
        set_budget_constraint(trial, cost.macs, cfg.budget, constraint)
        if status is not None:
            trial.set_user_attr("status", status)
            return objective.penalty(cost.macs)
        result = evaluate(ctx, trial, spec, cost)
        for key, value in {**result.attrs, **_proxy_attrs(result.proxies),
                           "status": result.status, "score": result.score}.items():
            trial.set_user_attr(key, value)
        if result.score is None:
            return objective.penalty(cost.macs)
        return objective.values(result.score, cost.macs, cfg.budget, cfg.reward_w)

    return run
