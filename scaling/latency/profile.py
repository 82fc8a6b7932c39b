"""Measuring a latency table: each distinct part of some specs timed once, deployed, interleaved.

A part (:func:`scaling.latency.predict.parts`) is built alone (a block by
:func:`scaling.nn.blocks.build_block` from its geometry and stage, the stem by
:func:`scaling.nn.build.build_stem`, the head by :class:`scaling.nn.build.Head`), put in its
inference form (:func:`scaling.nn.deploy.deploy`: norms folded, channels_last, packed weights on
float32 CPU) and timed on an input of its real shape: channels_last as inside the deployed model
(the stem gets NCHW, as a user's model does). Timing (:func:`time_modules`) runs under
``torch.inference_mode`` with ``torch.set_num_threads(threads)``: warm-up calls, then rounds in
which every module runs once (a sample of enough calls to last ``min_ms``), in a new seeded
random order every round, so that drifts and bursts of machine load hit all alike; an entry is
the median over rounds, per call. (A fixed order, reversed every other round, gave a module the
same neighbours and the same phase of the round each time: in the benchmark at bc75657 seven
consecutive samples of 28x28 batch 1 ran 1.3-1.75x their predicted sum, against 0.97-1.29 for
all others, and six consecutive calibration models at 224x224 batch 1 1.35-1.65x; the median
over rounds kept it.)
"""

from __future__ import annotations

import math
import platform
import random
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from scaling.ir import NetworkSpec
from scaling.latency.parts import Part, parts
from scaling.latency.table import LatencyTable

__all__ = ["CLOCKS", "DTYPES", "check_clock", "environment", "measure_models", "measure_parts",
           "measure_parts_and_models", "model_runs", "profile", "sample_modules", "time_modules"]

DTYPES = ("float32", "bfloat16", "float16")
CLOCKS = ("wall", "cpu")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str, threads: int, batch: int, dtype: str) -> dict[str, Any]:
    """The table environment of a measurement here (:data:`scaling.latency.table.ENVIRONMENT`,
    plus ``device_kind``: the torch device string the entries were measured on)."""
    import torch

    check_options(device, threads, batch, dtype)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} is not allowed: torch sees no CUDA device")
        name = f"cuda {torch.cuda.get_device_name(torch.device(device))}"
    else:
        name = f"cpu {_cpu_name()}"
    return {"device": name, "device_kind": device, "torch": torch.__version__,
            "threads": threads, "batch": batch, "dtype": dtype}


def check_options(device: str, threads: int, batch: int, dtype: str) -> None:
    """ValueError naming the first option that is not allowed."""
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device={device!r} is not allowed; expected cpu, cuda or cuda:N")
    for name, value in (("threads", threads), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not allowed; expected an int >= 1")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed; expected one of {DTYPES}")


def _deployed(module: Any, device: str, dtype: str) -> Any:
    import torch

    from scaling.nn.deploy import deploy

    pack = device == "cpu" and dtype == "float32"
    module = deploy(module, copy_model=False, pack=pack)
    return module.to(device=device, dtype=getattr(torch, dtype))


def build_part(part: Part) -> Any:
    """The nn.Module of one part, as the model builder makes it (training form)."""
    from scaling.nn.blocks import build_block
    from scaling.nn.build import Head, build_stem

    spec = part.spec
    if part.kind == "stem":
        return build_stem(spec)
    if part.kind == "head":
        return _head_part(Head(spec, part.shape[0], spec.num_classes))
    return build_block(part.geometry, part.stage, spec.norm, spec.padding)


def _head_part(head: Any) -> Any:
    """The head as the model runs it: its conv (in ``forward_features``), then ``forward``."""
    from torch import nn

    class HeadPart(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, x: Any) -> Any:
            if self.head.conv is not None:
                x = self.head.conv(x)
            return self.head(x)

    return HeadPart()


def _input(shape: tuple[int, ...], batch: int, device: str, dtype: str, nhwc: bool) -> Any:
    import torch

    x = torch.randn(batch, *shape, device=device, dtype=getattr(torch, dtype))
    return x.contiguous(memory_format=torch.channels_last) if nhwc else x


def check_clock(clock: str, device: str, threads: int) -> None:
    """ValueError unless ``clock`` is one of :data:`CLOCKS` and fits the device and threads."""
    if clock not in CLOCKS:
        raise ValueError(f"clock={clock!r} is not allowed; expected one of {CLOCKS}")
    if clock == "cpu" and (device != "cpu" or threads != 1):
        raise ValueError(f"clock='cpu' is not allowed with device={device!r}, threads={threads}: "
                         "the calling thread's CPU time is the latency only on cpu with 1 thread")


def sample_modules(runs: Sequence[tuple[Any, Any]], device: str = "cpu", threads: int = 1,
                   rounds: int = 7, warmup: int = 2, min_ms: float = 2.0, repeats: int = 1,
                   clock: str = "wall", settle: int = 1, order_seed: int = 0
                   ) -> list[list[float]]:
    """ms per call of each ``(module, input)``: its ``rounds * repeats`` samples, interleaved
    (see the module docstring; in each round a module gives ``repeats`` samples back to back,
    the rounds' orders drawn by ``random.Random(order_seed)``).
    ``settle`` untimed calls precede each round's samples of a module: the interleaving leaves
    its weights and input cold in cache, and a sample of one call (a whole model) would time a
    cold call where a sample of many calls (a small part) times mostly warm ones; measured at
    28x28 batch 32, MobileNetV3-Small's single cold call took 1.8x its warm one."""
    import torch

    for name, value, low in (("rounds", rounds, 1), ("warmup", warmup, 0),
                             ("repeats", repeats, 1), ("settle", settle, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} is not allowed; expected an int >= {low}")
    if not (isinstance(min_ms, (int, float)) and 0 <= min_ms < float("inf")):
        raise ValueError(f"min_ms={min_ms!r} is not allowed; expected a finite number >= 0")
    check_clock(clock, device, threads)
    cuda = device.startswith("cuda")
    now = time.thread_time if clock == "cpu" else time.perf_counter

    def tick() -> float:
        if cuda:
            torch.cuda.synchronize()
        return now()

    torch.set_num_threads(threads)
    calls: list[int] = []
    samples: list[list[float]] = [[] for _ in runs]
    with torch.inference_mode():
        for module, x in runs:  # warm-up, and how many calls make a sample of min_ms
            for _ in range(warmup):
                module(x)
            t0 = tick()
            module(x)
            one = max(tick() - t0, 1e-7)
            calls.append(max(1, math.ceil(min_ms / 1e3 / one)))
        order, shuffle = list(range(len(runs))), random.Random(order_seed).shuffle
        for _ in range(rounds):
            shuffle(order)
            for i in order:
                module, x = runs[i]
                for _ in range(settle):
                    module(x)
                for _ in range(repeats):
                    t0 = tick()
                    for _ in range(calls[i]):
                        module(x)
                    samples[i].append((tick() - t0) / calls[i] * 1e3)
    return samples


def time_modules(runs: Sequence[tuple[Any, Any]], device: str = "cpu", threads: int = 1,
                 rounds: int = 7, warmup: int = 2, min_ms: float = 2.0, clock: str = "wall"
                 ) -> list[float]:
    """Median ms per call of each ``(module, input)``, interleaved (see the module docstring)."""
    return [statistics.median(s) for s in sample_modules(runs, device, threads, rounds, warmup,
                                                         min_ms, clock=clock)]


def _part_runs(unique: dict[str, Part], device: str, batch: int, dtype: str
               ) -> list[tuple[Any, Any]]:
    """Each part deployed with its input, then the harness probe (an ``nn.Identity``)."""
    from torch import nn

    runs = [(_deployed(build_part(p), device, dtype),
             _input(p.shape, batch, device, dtype, nhwc=p.kind != "stem"))
            for p in unique.values()]
    return runs + [(nn.Identity(), _input((1, 1, 1), batch, device, dtype, nhwc=False))]


def measure_parts(items: Iterable[Part], device: str = "cpu", threads: int = 1, batch: int = 1,
                  dtype: str = "float32", *, harness: list[float] | None = None, **timing: Any
                  ) -> dict[str, float]:
    """ms per distinct key of ``items`` (each built, deployed and timed once), less the harness
    cost per call (an ``nn.Identity`` timed among them; its ms is appended to ``harness`` when
    a list is given). An entry is never below 0."""
    entries, _ = measure_parts_and_models(items, (), device, threads, batch, dtype,
                                          harness=harness, **timing)
    return entries


def measure_parts_and_models(items: Iterable[Part], specs: Sequence[NetworkSpec],
                             device: str = "cpu", threads: int = 1, batch: int = 1,
                             dtype: str = "float32", *, harness: list[float] | None = None,
                             **timing: Any) -> tuple[dict[str, float], list[float]]:
    """:func:`measure_parts` of ``items`` and :func:`measure_models` of ``specs`` in the same
    interleaved rounds, so that a drift of machine load hits the entries and the whole models
    alike (what a predictor is judged on is their ratio)."""
    unique = {p.key: p for p in items}
    check_options(device, threads, batch, dtype)
    if not unique and not specs:
        return {}, []
    runs = _part_runs(unique, device, batch, dtype) + model_runs(specs, device, (batch,), dtype)
    times = time_modules(runs, device, threads, **timing)
    noop = times[len(unique)]
    if harness is not None:
        harness.append(noop)
    return ({k: max(0.0, t - noop) for k, t in zip(unique, times)}, times[len(unique) + 1:])


def model_runs(specs: Sequence[NetworkSpec], device: str = "cpu", batches: Sequence[int] = (1,),
               dtype: str = "float32") -> list[tuple[Any, Any]]:
    """``(deployed model, input of the user's NCHW shape)`` of each batch size, then each spec
    (batch-major), for :func:`time_modules` and :func:`sample_modules`; a spec's model is built
    and deployed once and serves all its batch sizes."""
    from scaling.nn.build import build_model

    models = [_deployed(build_model(s), device, dtype) for s in specs]
    return [(m, _input((s.in_channels, s.resolution, s.resolution), b, device, dtype, False))
            for b in batches for s, m in zip(specs, models)]


def measure_models(specs: Sequence[NetworkSpec], device: str = "cpu", threads: int = 1,
                   batch: int = 1, dtype: str = "float32", **timing: Any) -> list[float]:
    """ms per call of each whole deployed model (the user's NCHW input), interleaved."""
    check_options(device, threads, batch, dtype)
    return time_modules(model_runs(specs, device, (batch,), dtype), device, threads,
                        **timing)


def profile(specs: Sequence[NetworkSpec], device: str = "cpu", threads: int = 1, batch: int = 1,
            dtype: str = "float32", table: LatencyTable | None = None, **timing: Any
            ) -> LatencyTable:
    """A table of every distinct part of ``specs`` (those ``table`` already has are kept, not
    measured again; its environment must be this one)."""
    env = environment(device, threads, batch, dtype)
    if table is not None:
        table.check_environment(env, what="measurement on this machine")
        if table.entries and table.harness_ms is None:
            raise ValueError("latency table of format 1 (entries with the timing harness in) "
                             "cannot be extended: profile all its specs again")
    known = table.entries if table is not None else {}
    todo = [p for s in specs for p in parts(s) if p.key not in known]
    harness: list[float] = []
    found = measure_parts(todo, device, threads, batch, dtype, harness=harness, **timing)
    base = table if table is not None else LatencyTable(env)
    if harness and base.harness_ms is None:
        base = replace(base, harness_ms=harness[0])
    return base.with_entries(found)
