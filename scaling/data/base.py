"""What every dataset source shares: the dataset container, the split, the not-found error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from scaling.data.batching import BatchTransform
from scaling.ir.base import is_int

DATA_ENV = "SCALING_DATA"  # a directory holding the datasets, or one dataset's directory


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are not on disk; the message says where we looked and how to get them."""


@dataclass
class ImageData:
    """A dataset ready for training: splits plus what a model and the augmentation need.

    ``train``/``val``/``test`` are :class:`TensorSplit` (in memory) or a map-style torch Dataset
    yielding ``(uint8 CHW tensor, label)`` (ImageFolder). ``val`` is carved out of the training
    set; ``test`` is None where the source has none.
    """

    name: str
    train: Any
    val: Any
    test: Any
    num_classes: int
    in_channels: int
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool
    pad: int
    classes: tuple[str, ...] = ()

    def transform(self, train: bool) -> BatchTransform:
        """Batch augmentation (training only) and normalisation for this dataset."""
        return BatchTransform(self.mean, self.std, pad=self.pad if train else 0,
                              flip=self.flip and train)

    def summary(self) -> str:
        sizes = ", ".join(f"{k} {len(v) if v is not None else 0}"
                          for k, v in (("train", self.train), ("val", self.val),
                                       ("test", self.test)))
        return (f"{self.name}: {sizes}; {self.in_channels}x{self.resolution}x{self.resolution}, "
                f"{self.num_classes} classes")


def split_indices(n: int, val_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded permutation of ``range(n)`` cut into (train, val) index sets, disjoint."""
    if not is_int(val_size) or not 0 <= val_size < n:
        raise ValueError(f"val_size={val_size!r} is not allowed; expected an int in [0, {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:], perm[:val_size]
