"""Test helper: small IDX (Fashion-MNIST format) files written to a temporary folder."""

from __future__ import annotations

import gzip
import struct

import numpy as np


def idx_images(images: np.ndarray, magic: int = 2051) -> bytes:
    n, h, w = images.shape
    return struct.pack(">iiii", magic, n, h, w) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray, magic: int = 2049) -> bytes:
    return struct.pack(">ii", magic, len(labels)) + labels.astype(np.uint8).tobytes()


def write_file(path, payload: bytes, gz: bool) -> None:
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def make_idx_dir(root, n_train: int = 120, n_test: int = 40, gz: bool = True, seed: int = 0):
    """A fake Fashion-MNIST folder: pixel value encodes the label, so content is checkable."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = np.repeat(labels[:, None, None] * 20, 28 * 28, axis=1).reshape(n, 28, 28)
        write_file(root / f"{prefix}-images-idx3-ubyte", idx_images(images), gz)
        write_file(root / f"{prefix}-labels-idx1-ubyte", idx_labels(labels), gz)
    return root
