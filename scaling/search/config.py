"""The search configuration: every setting of a search, validated, JSON-serialisable (worker
processes receive it as a dict; a study stores the settings that define it and refuses to resume
with others)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from scaling.search.evaluators import check_evaluator
from scaling.search.objectives import get_objective
from scaling.search.proxies import PROXIES, check_proxies
from scaling.search.space import load_space

SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "hyperband", "none")
# Keys that define what a study searches; a resumed run must agree on them.
IDENTITY = ("budget", "objective", "evaluator", "data", "resolution", "in_channels", "seed",
            "epochs", "subset", "val_size", "batch_size", "optimizer", "lr", "augment", "space",
            "reward_w")


class ConfigError(ValueError):
    """Bad search input (CLI exit code 2)."""


class StorageError(RuntimeError):
    """The storage URL cannot be opened (CLI exit code 2)."""


@dataclass
class SearchConfig:
    """Everything a search (and each of its worker processes) needs; JSON-serialisable."""

    study: str = "search"
    storage: str | None = None
    resume: bool = False
    budget: int = 10_000_000
    objective: str = "reward"
    evaluator: str = "train"
    data: str = "fashion-mnist"
    data_root: str | None = None
    resolution: int = 28
    in_channels: int | None = None
    trials: int = 40
    timeout: float | None = None
    workers: int = 1
    seed: int = 0
    device: str = "auto"
    sampler: str = "tpe"
    pruner: str = "median"
    startup_trials: int = 10
    epochs: float = 3.0
    trial_seconds: float | None = None
    subset: int | None = 10_000
    val_size: int = 5_000
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float | None = None
    channels_last: str = "auto"
    augment: bool = False
    threads: int | None = None
    proxies: tuple[str, ...] = PROXIES
    rank_proxy: str = "synflow"
    zc_batch: int = 64
    hybrid_samples: int | None = None
    reward_w: float = -0.07
    space: Any = None
    heartbeat: int = 10
    grace: int = 30
    max_retry: int = 1
    out_dir: str = "results/search"
    quiet: bool = False

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
            for name in ("trials", "workers", "resolution", "batch_size", "zc_batch",
                         "heartbeat", "grace"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name}={value!r} is not allowed; expected an int >= 1")
            if self.threads is not None and (isinstance(self.threads, bool)
                                             or not isinstance(self.threads, int)
                                             or self.threads < 1):
                raise ValueError(f"threads={self.threads!r} is not allowed; expected an int >= 1")
            if self.threads is None and self.workers > 1:  # no oversubscription of the cores
                self.threads = max(1, (os.cpu_count() or 1) // self.workers)
            if self.grace <= self.heartbeat:
                raise ValueError(f"grace={self.grace} is not allowed; expected more than "
                                 f"heartbeat={self.heartbeat} seconds")
            if not self.study or any(c in self.study for c in "/\\"):
                raise ValueError(f"study={self.study!r} is not allowed; expected a plain name")
            self.space = load_space(self.space)
        except (ValueError, TypeError) as exc:
            raise ConfigError(str(exc)) from None
        return self

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["proxies"] = list(self.proxies)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "proxies" in kwargs:
            kwargs["proxies"] = tuple(kwargs["proxies"])
        return cls(**kwargs)

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{os.path.join(self.out_dir, self.study + '.db')}"
