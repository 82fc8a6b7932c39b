"""The benchmarks' data: Fashion-MNIST (:func:`scaling.data.load_dataset`) or, for tests and
machines without it, seeded random 28x28 grey images with 10 classes (same shapes and dtypes)."""

from __future__ import annotations

from typing import Any

DATA_CHOICES = ("fashion-mnist", "synthetic", "auto")


def synthetic_data(train: int, val: int, seed: int = 0) -> Any:
    """An :class:`~scaling.data.ImageData` of random uint8 28x28 grey images, 10 classes (flip
    and 2-pixel pad-crop augmentation, like Fashion-MNIST's)."""
    import torch

    from scaling.data import ImageData, TensorSplit

    g = torch.Generator().manual_seed(seed)

    def split(n: int) -> TensorSplit:
        return TensorSplit(torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8),
                           torch.randint(0, 10, (n,), generator=g))

    return ImageData("synthetic", split(train), split(val) if val else None, None, 10, 1, 28,
                     (0.5,), (0.25,), True, 2)


def bench_data(name: str, subset: int, val_size: int) -> tuple[Any, str]:
    """(ImageData, what it is): ``name`` 'fashion-mnist', 'synthetic', or 'auto' (Fashion-MNIST
    when on disk, else synthetic). ``subset`` training images, ``val_size`` validation ones."""
    if name not in DATA_CHOICES:
        raise ValueError(f"data={name!r} is not allowed; expected one of {DATA_CHOICES}")
    if name != "synthetic":
        from scaling.data import DatasetNotFoundError, load_dataset

        try:
            return load_dataset("fashion-mnist", val_size=val_size, subset=subset), "fashion-mnist"
        except DatasetNotFoundError:
            if name == "fashion-mnist":
                raise
    return synthetic_data(subset, val_size), "synthetic (random images)"
