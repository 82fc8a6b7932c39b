"""Batches without per-sample Python work: in-memory splits (:class:`TensorSplit`) indexed by a
seeded permutation (:class:`TensorLoader`), and augmentation + normalisation on whole batches
(:class:`BatchTransform`) on whatever device the batch is on. :func:`make_loader` picks the loader
for a split (a torch ``DataLoader`` for map-style datasets such as ImageFolder).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class TensorSplit:
    """An in-memory split: uint8 images ``x`` (N, C, H, W) and int64 labels ``y`` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> TensorSplit:
        return TensorSplit(self.x.to(device), self.y.to(device))


class TensorLoader:
    """Batches of an in-memory split by slicing a (seeded) permutation: no per-sample Python work.

    With ``drop_last`` the ragged last batch is dropped, unless the split is smaller than one
    batch (then the whole split is one batch), so BatchNorm never sees a batch of one.
    """

    def __init__(self, split: TensorSplit, batch_size: int, *, shuffle: bool = False,
                 drop_last: bool = False, generator: torch.Generator | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is not allowed; expected an int >= 1")
        self.split, self.batch_size = split, batch_size
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator

    def __len__(self) -> int:
        n = len(self.split)
        if self.drop_last and n >= self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs = len(self.split), self.batch_size
        x, y = self.split.x, self.split.y
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(x.device)
            for i in range(len(self)):
                idx = order[i * bs:(i + 1) * bs]
                yield x[idx], y[idx]
        else:
            for i in range(len(self)):
                yield x[i * bs:(i + 1) * bs], y[i * bs:(i + 1) * bs]


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A CPU draw moved to ``device``; to CUDA through pinned memory without blocking the host
    (a pageable copy waits, once per step)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


class BatchTransform:
    """uint8 batch -> float batch: random crop with zero padding and horizontal flip (training),
    then per-channel normalisation ``(x/255 - mean) / std``. Random draws come from ``generator``
    (CPU) so a seed fixes them on any device."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], *, pad: int = 0,
                 flip: bool = False) -> None:
        self.mean, self.std, self.pad, self.flip = tuple(mean), tuple(std), pad, flip
        self._stats: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _norm(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (x.device, x.shape[1])
        if key not in self._stats:
            if len(self.mean) != x.shape[1]:
                raise ValueError(f"batch has {x.shape[1]} channels but mean/std have "
                                 f"{len(self.mean)}")
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1) * 255.0
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1) * 255.0
            self._stats[key] = (mean, std)
        return self._stats[key]

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected an (N, C, H, W) batch, got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        if self.pad > 0:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            offs = _to_device(torch.randint(0, 2 * p + 1, (2, n), generator=generator), x.device)
            rows = (offs[0][:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (offs[1][:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            bidx = torch.arange(n, device=x.device)[:, None, None, None]
            cidx = torch.arange(c, device=x.device)[None, :, None, None]
            x = padded[bidx, cidx, rows, cols]
        if self.flip:
            mask = _to_device(torch.rand(n, generator=generator) < 0.5, x.device)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        mean, std = self._norm(x)
        return (x.float() - mean) / std


def make_loader(split: Any, batch_size: int, *, shuffle: bool = False, drop_last: bool = False,
                seed: int = 0, num_workers: int = 0, device: torch.device | str = "cpu"):
    """A batch iterator over ``split``: :class:`TensorLoader` for in-memory splits, else a
    ``torch.utils.data.DataLoader`` (workers, pinned memory on CUDA). Batches are uint8."""
    gen = torch.Generator().manual_seed(seed)
    if isinstance(split, TensorSplit):
        return TensorLoader(split, batch_size, shuffle=shuffle, drop_last=drop_last,
                            generator=gen)
    drop = drop_last and len(split) >= batch_size
    return torch.utils.data.DataLoader(
        split, batch_size=batch_size, shuffle=shuffle, drop_last=drop, generator=gen,
        num_workers=num_workers, pin_memory=torch.device(device).type == "cuda",
        persistent_workers=num_workers > 0)
