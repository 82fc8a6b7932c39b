"""The search configuration: every setting of a search, validated, JSON-serialisable (worker
processes receive it as a dict; a study stores the settings that define it and refuses to resume
with others)."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from scaling.cli import MAX_THREADS
from scaling.ir.base import is_int, is_number
from scaling.latency.table import parse_latency
from scaling.search.evaluators import EVALUATORS, check_evaluator
from scaling.search.names import PROXIES, check_proxies, parse_proxies
from scaling.search.objectives import (
    OBJECTIVES,
    WINDOW,
    check_window,
    format_macs,
    get_objective,
    parse_budget,
    parse_window,
)
from scaling.search.space import load_space
from scaling.train.config import TrainConfig

#: longest study name in UTF-8 bytes: its files (``NAME.best.json``, the atomic writer's
#: ``.NAME.best.json.XXXXXXXX.tmp``) must stay within the 255-byte file names of common file systems
MAX_STUDY_NAME = 200
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "sha", "hyperband", "none")
# Keys that define what a study searches; a resumed run must agree on them.
IDENTITY = ("budget", "objective", "evaluator", "data", "resolution", "in_channels", "seed",
            "epochs", "subset", "val_size", "batch_size", "optimizer", "lr", "augment", "space",
            "reward_w", "zero_init_last", "window", "evals_per_epoch", "latency_budget")
#: identity keys added after studies were stored without them: a missing one means this value
#: (the window's default before it became a band around the budget; one look an epoch)
IDENTITY_DEFAULTS = {"zero_init_last": False, "window": [0.9, 1.0], "evals_per_epoch": 1,
                     "latency_budget": None}


class ConfigError(ValueError):
    """Bad search input (CLI exit code 2)."""


class StorageError(RuntimeError):
    """The storage URL cannot be opened (CLI exit code 2)."""


def _count_or_all(text: str) -> int | None:
    """CLI text of ``subset``: N images, or 0 for all (None)."""
    n = int(text)
    if n < 0:
        raise ValueError(f"subset={n} is not allowed; expected an int >= 0 (0: all)")
    return n or None


def _names(text: str) -> tuple[str, ...]:
    """CLI text of ``enqueue``: comma-separated zoo names (checked in :meth:`validate`)."""
    return tuple(n.strip() for n in str(text).split(",") if n.strip())


def _evals(text: str) -> float | str:
    """CLI text of ``evals_per_epoch``: 'auto' or a number (checked in :meth:`validate`)."""
    try:
        value = "auto" if text == "auto" else float(text)
    except ValueError:
        raise ValueError(f"evals_per_epoch={text!r} is not allowed; expected auto or a number "
                         ">= 1") from None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def auto_evals_per_epoch(pruner: str, factor: int, epochs: float) -> float:
    """Evaluation points an epoch for ``evals_per_epoch='auto'``: with sha/hyperband enough for
    ``factor**2`` reports over the run (rungs at 1/factor**2, 1/factor and all of it: three
    rungs, the top one the protocol), at least one an epoch; other pruners one an epoch."""
    if pruner not in ("sha", "hyperband"):
        return 1.0
    return max(1.0, factor ** 2 / epochs)


def _opt(default: Any, help_text: str, **more: Any) -> Any:
    return field(default=default, metadata={"help": help_text, **more})


def check_enqueue(names: Any) -> tuple[str, ...]:
    """``names`` as a tuple of known zoo model names (:func:`scaling.zoo.list_models`), each
    once; a ValueError naming the first unknown one."""
    from scaling.zoo import list_models

    if isinstance(names, str):
        names = _names(names)
    known = set(list_models())
    for name in names:
        if not isinstance(name, str) or name not in known:
            raise ValueError(f"enqueue={name!r} is not allowed; expected zoo model names "
                             "(python -m scaling.zoo lists them), comma-separated")
    if len(set(names)) != len(names):
        raise ValueError(f"enqueue={','.join(names)!r} is not allowed: a name is repeated")
    return tuple(names)


def check_study_name(name: Any) -> None:
    """A ValueError unless ``name`` can name the study and its files: a non-empty str, not '.' or
    '..', no path separator, newline, control or bidi character, at most
    :data:`MAX_STUDY_NAME` bytes."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise ValueError(f"study={name!r} is not allowed; expected a plain name")
    bad = [c for c in name if c in "/\\" or not (c.isprintable() or c == " ")]
    if bad:
        raise ValueError(f"study={name!r} is not allowed: it contains {bad[0]!r}; expected a "
                         "name without path separators, control or bidi characters")
    if len(name.encode("utf-8")) > MAX_STUDY_NAME:
        raise ValueError(f"study name of {len(name.encode('utf-8'))} bytes is not allowed; "
                         f"expected at most {MAX_STUDY_NAME} (its files' names)")


@dataclass
class SearchConfig:
    """Everything a search (and each of its worker processes) needs; JSON-serialisable. The
    single source of the ``python -m scaling.search`` flags, their help texts and defaults."""

    study: str | None = _opt(None, "study name (default: DATA-rRES-BUDGET-OBJECTIVE-EVALUATOR)")
    storage: str | None = _opt(None, "Optuna storage URL (default: sqlite:///OUT/STUDY.db)")
    resume: bool = _opt(False, "continue an existing study (load_if_exists)")
    budget: int = _opt(10_000_000, "MAC budget: 10M, 1.5G or 400000000", type=parse_budget,
                       metavar="MACS")
    latency_budget: float | None = _opt(None, "hard latency budget beside the MAC budget, "
                                        "predicted from --latency-table: 5ms, 800us (over it: "
                                        "rejected and resampled like over-MAC samples; "
                                        "default: none)",
                                        type=parse_latency, metavar="TIME")
    latency_table: str | None = _opt(None, "latency table file of --latency-budget (python -m "
                                     "scaling.latency profile; default: none)", metavar="FILE")
    objective: str = _opt("reward", f"what the search optimises: {', '.join(OBJECTIVES)} "
                          "(window: val accuracy with MACs in --window x budget)")
    window: tuple[float, float] = _opt(WINDOW, "the window objective's MAC window, fractions of "
                                       "the budget: LO,HI (0 < LO < HI <= 2; default: the 5%% "
                                       "band the study's fitter accepts)", type=parse_window,
                                       metavar="LO,HI")
    enqueue: tuple[str, ...] = _opt((), "zoo families fitted to the budget (by width) and "
                                    "evaluated as the first trials, e.g. mobilenet_v2,"
                                    "efficientnet_b0", type=_names, metavar="NAMES")
    evaluator: str = _opt("train", f"how a trial is scored: {', '.join(EVALUATORS)}")
    data: str = _opt("fashion-mnist", "dataset (scaling.data)")
    data_root: str | None = _opt(None, "dataset folder (default: $SCALING_DATA, Debian path)")
    resolution: int = _opt(28, "input resolution")
    in_channels: int | None = _opt(None, "input channels (default: the dataset's)")
    trials: int = _opt(40, "target number of finished trials")
    timeout: float | None = _opt(None, "stop starting trials after S seconds (default: none)")
    workers: int = _opt(1, "worker processes sharing the storage")
    seed: int = _opt(0, "seed of sampler, initialisation, training")
    device: str = _opt("auto", "auto (CUDA when available), cpu, cuda or cuda:N")
    sampler: str = _opt("tpe", f"Optuna sampler: {', '.join(SAMPLERS)}")
    pruner: str = _opt("median", f"pruner of trained trials: {', '.join(PRUNERS)} (sha: "
                       "successive halving, hyperband: Hyperband, both over the evaluation points "
                       "with the whole protocol as the top rung)")
    prune_factor: int = _opt(3, "reduction factor of sha/hyperband: 1 in N trials goes on to "
                             "the next rung")
    startup_trials: int = _opt(10, "random trials before TPE")
    prune_warmup: float = _opt(0.5, "fraction of the run a trial trains before the median pruner "
                               "may stop it (slow starters are not cut blindly)")
    prune_startup: int = _opt(5, "finished trials before the median pruner acts")
    epochs: float = _opt(3.0, "training epochs per trial")
    evals_per_epoch: Any = _opt("auto", "evaluation points an epoch, the looks a pruner gets at "
                                "evenly spaced steps of the same schedule (auto: enough for "
                                "rungs at 1/F^2, 1/F and all of the run with sha/hyperband and "
                                "--prune-factor F; else one an epoch)", type=_evals,
                                metavar="K|auto")
    trial_seconds: float | None = _opt(None, "training-time cap per trial (default: none)")
    subset: int | None = _opt(10_000, "training images per trial (0: all)", type=_count_or_all)
    val_size: int = _opt(5_000, "validation images held out of train")
    batch_size: int = _opt(128, "training batch size")
    optimizer: str = _opt("sgd", "optimizer of the trial training: sgd, adamw")
    lr: float | None = _opt(None, "learning rate (default: the linear scaling rule)")
    channels_last: str = _opt("auto", "memory layout: auto (CUDA: trainer's choice; CPU: off), "
                              "on, off")
    augment: bool = _opt(False, "random crop + flip while training")
    zero_init_last: bool = _opt(False, "start every residual block of a trial's net as the "
                                "identity (scaling.nn.init_weights)")
    threads: int | None = _opt(None, "torch CPU threads per worker (default: torch's, or "
                               "cores / workers)")
    proxies: tuple[str, ...] = _opt(PROXIES, "zero-cost proxies to record, comma-separated, or "
                                    "none", type=parse_proxies, metavar="NAMES")
    rank_proxy: str = _opt("synflow", "proxy that scores zero-cost/hybrid samples: "
                           f"{', '.join(PROXIES)}")
    zc_batch: int = _opt(64, "minibatch size of the proxies")
    hybrid_samples: int | None = _opt(None, "hybrid: samples scored zero-cost (default: 5 x "
                                      "trials)")
    reward_w: float = _opt(-0.07, "MnasNet reward exponent w (Tan et al. 2019): halving the "
                           "MACs pays 2^-w - 1 relative accuracy (-0.07: 4.97%%; -0.014: 1%%)")
    reevaluate: int = _opt(3, "after the search, retrain the best K trials with more seeds and "
                           "pick the best mean (0: off; not for zero-cost)", metavar="K")
    reevaluate_seeds: int = _opt(3, "seeds of each re-evaluated trial (seed+1 .. seed+S)",
                                 metavar="S")
    pick_margin: float = _opt(1.0, "a searched trial is picked over the best re-evaluated "
                              "enqueued family only if its mean leads by more than this many "
                              "standard errors of the difference (seed std pooled over the "
                              "re-evaluated trials; 0: the best mean wins)", metavar="Z")
    space: Any = _opt(None, "search space YAML/JSON file (default: the built-in space)",
                      type=str, metavar="FILE")
    heartbeat: int = _opt(10, "heartbeat interval in seconds")
    grace: int = _opt(30, "seconds before a silent trial is failed")
    max_retry: int = _opt(1, "re-runs of a trial whose worker died")
    out_dir: str = _opt("runs/search", "folder of the db, CSV, best specs (runs/ is "
                        "gitignored: a search run from the checkout leaves the committed "
                        "results/ alone)", flag="--out")
    quiet: bool = _opt(False, "no per-trial lines")

    def __post_init__(self) -> None:
        if self.study is None and isinstance(self.budget, int):
            self.study = (f"{self.data}-r{self.resolution}-{format_macs(self.budget)}-"
                          f"{self.objective}-{self.evaluator}")

    def validate(self) -> SearchConfig:
        """Resolve the space and check every choice; raises :class:`ConfigError`."""
        try:
            get_objective(self.objective)
            check_evaluator(self.evaluator)
            self.proxies = check_proxies(self.proxies)
            if self.rank_proxy not in PROXIES:
                raise ValueError(f"rank_proxy={self.rank_proxy!r} is not allowed; expected one "
                                 f"of {PROXIES}")
            if self.evaluator in ("zero-cost", "hybrid") and self.rank_proxy not in self.proxies:
                self.proxies = (*self.proxies, self.rank_proxy)
            for name, value, allowed in (("sampler", self.sampler, SAMPLERS),
                                         ("pruner", self.pruner, PRUNERS),
                                         ("channels_last", self.channels_last,
                                          ("auto", "on", "off"))):
                if value not in allowed:
                    raise ValueError(f"{name}={value!r} is not allowed; expected one of {allowed}")
            self.window = check_window(self.window)
            self.enqueue = check_enqueue(self.enqueue)
            for name in ("trials", "workers", "resolution", "batch_size", "zc_batch",
                         "heartbeat", "grace", "reevaluate_seeds"):
                value = getattr(self, name)
                if not is_int(value) or value < 1:
                    raise ValueError(f"{name}={value!r} is not allowed; expected an int >= 1")
            if not is_number(self.pick_margin) or self.pick_margin < 0:
                raise ValueError(f"pick_margin={self.pick_margin!r} is not allowed; expected a "
                                 "number >= 0 (standard errors)")
            if not is_number(self.prune_warmup) or not 0 <= self.prune_warmup <= 1:
                raise ValueError(f"prune_warmup={self.prune_warmup!r} is not allowed; expected a "
                                 "fraction of the epochs in [0, 1]")
            for name, low in (("prune_startup", 0), ("reevaluate", 0), ("prune_factor", 2)):
                value = getattr(self, name)
                if not is_int(value) or value < low:
                    raise ValueError(f"{name}={value!r} is not allowed; expected an int >= {low}")
            if self.threads is not None and (isinstance(self.threads, bool)
                                             or not isinstance(self.threads, int)
                                             or not 1 <= self.threads <= MAX_THREADS):
                raise ValueError(f"threads={self.threads!r} is not allowed; expected an int >= 1 "
                                 f"and <= {MAX_THREADS}")
            if self.threads is None and self.workers > 1:  # no oversubscription of the cores
                self.threads = max(1, (os.cpu_count() or 1) // self.workers)
            if self.grace <= self.heartbeat:
                raise ValueError(f"grace={self.grace} is not allowed; expected more than "
                                 f"heartbeat={self.heartbeat} seconds")
            if self.evals_per_epoch == "auto":
                self.evals_per_epoch = auto_evals_per_epoch(self.pruner, self.prune_factor,
                                                            self.epochs)
            TrainConfig(epochs=self.epochs, evals_per_epoch=self.evals_per_epoch)  # checks it
            check_study_name(self.study)
            self.space = load_space(self.space)
            self._check_latency()
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None
        return self

    def _check_latency(self) -> None:
        """--latency-budget and --latency-table come together; the table must load."""
        if (self.latency_budget is None) != (self.latency_table is None):
            raise ValueError("latency_budget and latency_table go together: "
                             f"latency_budget={self.latency_budget!r}, "
                             f"latency_table={self.latency_table!r}")
        if self.latency_budget is not None:
            from scaling.latency import load_table

            self.latency_budget = parse_latency(self.latency_budget)
            load_table(self.latency_table)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("proxies", "window", "enqueue"):
            out[key] = list(getattr(self, key))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("proxies", "window", "enqueue"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @property
    def reports(self) -> int:
        """Evaluation points of a full trial (the pruner's steps count them from 1):
        ``ceil(epochs * evals_per_epoch)``, fewer where an epoch has fewer steps than points."""
        return max(1, math.ceil(self.epochs * float(self.evals_per_epoch) - 1e-9))

    @property
    def prune_warmup_steps(self) -> int:
        """Reports before the median pruner may act (Optuna's ``n_warmup_steps``):
        ``ceil(prune_warmup * reports)``, at least 1."""
        return max(1, math.ceil(self.prune_warmup * self.reports - 1e-9))

    @property
    def min_resource(self) -> int:
        """The lowest rung of sha/hyperband, in reports: ``reports / prune_factor**2``
        (rounded, at least 1), so the rungs sit at about 1/F^2, 1/F and all of the run."""
        return max(1, round(self.reports / self.prune_factor ** 2))

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{os.path.join(self.out_dir, self.study + '.db')}"
