"""Datasets from disk for the proxy task: Fashion-MNIST / MNIST (IDX), CIFAR-10 (python pickle),
ImageFolder trees. Nothing is ever downloaded.

Small datasets live in memory as uint8 ``(N, C, H, W)`` tensors and are batched by indexing a
permutation; augmentation and normalisation run on whole batches (:mod:`scaling.data.batching`).
:func:`load_dataset` returns an :class:`ImageData` with a deterministic train/validation split of
the *training* set; the test set is only read by an explicit final evaluation, never by a search.

Data location, first match wins: the ``root`` argument, then ``$SCALING_DATA``, then the default
directory (``/usr/share/datasets/fashion-mnist`` from the Debian package ``dataset-fashion-mnist``).
``root`` and ``$SCALING_DATA`` may name the dataset directory itself or a parent holding it under
its usual name (``fashion-mnist``, ``mnist``, ``cifar-10-batches-py``).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from scaling.data.base import DATA_ENV, DatasetNotFoundError, ImageData, split_indices
from scaling.data.batching import BatchTransform, TensorLoader, TensorSplit, make_loader
from scaling.data.catalog import NATIVE_SHAPE, NUM_CLASSES, dataset_name
from scaling.ir.base import is_int

__all__ = ["NATIVE_SHAPE", "BatchTransform", "DatasetNotFoundError", "ImageData", "TensorLoader",
           "TensorSplit", "dataset_name", "load_dataset", "make_loader", "read_idx",
           "split_indices"]

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


# -- locating files -------------------------------------------------------------------------------
def _candidates(root: str | os.PathLike | None, subdir: str, default: str | None) -> list[str]:
    bases = [os.fspath(root)] if root is not None else (
        [os.environ[DATA_ENV]] if os.environ.get(DATA_ENV) else [])
    out = []
    for base in bases:
        out += [os.path.join(base, subdir), base]
    if not bases and default:
        out.append(default)
    return out


def _find(names: list[str], root, subdir: str, default: str | None, how: str) -> str:
    """The first candidate directory holding every file in ``names`` (each may be gzipped)."""
    tried = _candidates(root, subdir, default)
    for d in tried:
        if all(_resolve(d, n) for n in names):
            return d
    where = ", ".join(tried) if tried else "(no root given and no default)"
    raise DatasetNotFoundError(f"{subdir}: files {names} not found in {where}. {how}")


def _resolve(directory: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


# -- IDX (MNIST / Fashion-MNIST) -----------------------------------------------------------------
def _open(path: str) -> Any:
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _read_at_most(fh: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``fh``, read in chunks: a gzip bomb is decompressed no further
    than the size its header promises (plus one byte, to tell a longer file)."""
    out = bytearray()
    while len(out) < limit:
        chunk = fh.read(min(1 << 20, limit - len(out)))
        if not chunk:
            break
        out += chunk
    return bytes(out)


def read_idx(path: str, expect_magic: int) -> np.ndarray:
    """An IDX file (LeCun et al. 1998 format; .gz or raw) as a uint8 array, fully checked; the
    data is read only up to the size the header gives."""
    ndim = {IDX_IMAGES_MAGIC: 3, IDX_LABELS_MAGIC: 1}[expect_magic]
    header = 4 + 4 * ndim
    try:
        with _open(path) as fh:
            head = _read_at_most(fh, header)
            if len(head) < header:
                raise ValueError(f"{path}: {len(head)} bytes is shorter than the {header}-byte "
                                 "IDX header")
            magic = struct.unpack(">i", head[:4])[0]
            if magic != expect_magic:
                raise ValueError(f"{path}: magic number {magic:#010x} is wrong; expected "
                                 f"{expect_magic:#010x} (IDX uint8 with {ndim} dimension(s))")
            shape = struct.unpack(f">{ndim}i", head[4:header])
            if min(shape) < 0:
                raise ValueError(f"{path}: header says shape {shape}; expected dimensions >= 0 "
                                 "(the file is corrupt)")
            expected = math.prod(shape)
            data = _read_at_most(fh, expected + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is "
                         "truncated or corrupt") from None
    if len(data) != expected:
        more = "more than that" if len(data) > expected else len(data)
        raise ValueError(f"{path}: header says shape {shape} ({expected} bytes of data) but the "
                         f"file has {more}; the file is truncated or corrupt")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _idx_pair(directory: str, prefix: str, num_classes: int) -> TensorSplit:
    img_path = _resolve(directory, f"{prefix}-images-idx3-ubyte")
    lbl_path = _resolve(directory, f"{prefix}-labels-idx1-ubyte")
    if img_path is None or lbl_path is None:
        raise DatasetNotFoundError(f"{directory}: {prefix} IDX images or labels are missing")
    images = read_idx(img_path, IDX_IMAGES_MAGIC)
    labels = read_idx(lbl_path, IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{img_path} has {images.shape[0]} images but {lbl_path} has "
                         f"{labels.shape[0]} labels")
    _check_labels(lbl_path, labels, num_classes)
    x = torch.from_numpy(images.copy()).unsqueeze(1)
    return TensorSplit(x, torch.from_numpy(labels.astype(np.int64)))


def _check_labels(path: str, labels: np.ndarray, num_classes: int) -> None:
    if labels.size and int(labels.max()) >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise ValueError(f"{path}: label {int(labels[bad])} at index {bad} is out of range; "
                         f"expected 0..{num_classes - 1}")


def _load_idx(name: str, root, default: str | None, how: str) -> tuple[TensorSplit, TensorSplit]:
    names = [f"{p}-{k}-idx{d}-ubyte" for p in ("train", "t10k")
             for k, d in (("images", 3), ("labels", 1))]
    directory = _find(names, root, name, default, how)
    return _idx_pair(directory, "train", 10), _idx_pair(directory, "t10k", 10)


# -- CIFAR-10 (python pickle) ---------------------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a pickle cannot run code here."""

    _ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
                for n in ("_reconstruct", "scalar")} | {("numpy", "ndarray"), ("numpy", "dtype"),
                                                          ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _cifar_batch(path: str) -> TensorSplit:
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable CIFAR-10 python batch ({type(exc).__name__}: "
                         f"{exc}); the file is truncated, corrupt or not a CIFAR-10 batch"
                         ) from None
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        raise ValueError(f"{path}: expected a dict with b'data' and b'labels'")
    data, labels = np.asarray(obj[b"data"]), np.asarray(obj[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: data is {data.dtype} {data.shape}; expected uint8 (N, 3072)")
    if labels.ndim != 1 or labels.shape[0] != data.shape[0]:
        raise ValueError(f"{path}: {labels.shape} labels for {data.shape[0]} images")
    if labels.size and int(labels.min()) < 0:
        raise ValueError(f"{path}: negative label {int(labels.min())}; expected 0..9")
    _check_labels(path, labels, 10)
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return TensorSplit(x, torch.from_numpy(labels.astype(np.int64)))


def _cat(splits: list[TensorSplit]) -> TensorSplit:
    return TensorSplit(torch.cat([s.x for s in splits]), torch.cat([s.y for s in splits]))


def _load_cifar10(root) -> tuple[TensorSplit, TensorSplit]:
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    how = ("Extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) and pass "
           f"its cifar-10-batches-py folder as root or ${DATA_ENV}.")
    directory = _find(names, root, "cifar-10-batches-py", None, how)
    train = _cat([_cifar_batch(os.path.join(directory, n)) for n in names[:5]])
    return train, _cifar_batch(os.path.join(directory, "test_batch"))


# -- registry and the split ------------------------------------------------------------------------
FASHION_HOW = ("Install it with `apt-get install dataset-fashion-mnist` (files go to "
               f"/usr/share/datasets/fashion-mnist), or point root / ${DATA_ENV} at a folder "
               "with the four IDX files.")


@dataclass(frozen=True)
class DatasetInfo:
    """What a registered dataset is: its loader and its fixed properties."""

    load: Callable[[Any], tuple[TensorSplit, TensorSplit]]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool
    pad: int
    classes: tuple[str, ...] = ()


FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        lambda r: _load_idx("fashion-mnist", r, "/usr/share/datasets/fashion-mnist", FASHION_HOW),
        NUM_CLASSES["fashion-mnist"], (0.2860,), (0.3530,), flip=True, pad=2,
        classes=FASHION_CLASSES),
    "mnist": DatasetInfo(  # digits: no flip
        lambda r: _load_idx("mnist", r, None, f"Pass root or ${DATA_ENV}: a folder with the four "
                            "MNIST IDX files (no Debian package ships them)."),
        NUM_CLASSES["mnist"], (0.1307,), (0.3081,), flip=False, pad=2,
        classes=tuple(str(i) for i in range(10))),
    "cifar10": DatasetInfo(
        _load_cifar10, NUM_CLASSES["cifar10"], (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616), flip=True, pad=4,
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck")),
}


def _resize(split: TensorSplit, resolution: int) -> TensorSplit:
    if split.x.shape[-1] == resolution and split.x.shape[-2] == resolution:
        return split
    out = []
    for chunk in split.x.split(4096):
        y = torch.nn.functional.interpolate(chunk.float(), size=(resolution, resolution),
                                            mode="bilinear", antialias=True, align_corners=False)
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return TensorSplit(torch.cat(out), split.y)


def _channels(split: TensorSplit, in_channels: int) -> TensorSplit:
    c = split.x.shape[1]
    if c == in_channels:
        return split
    if c == 1 and in_channels == 3:  # grey -> RGB; no other count is a colour space
        return TensorSplit(split.x.expand(-1, in_channels, -1, -1).contiguous(), split.y)
    if c == 3 and in_channels == 1:  # ITU-R BT.601 luma
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return TensorSplit((split.x.float() * w).sum(1, keepdim=True).round().to(torch.uint8),
                           split.y)
    raise ValueError(f"in_channels={in_channels} is not allowed for {c}-channel images; "
                     f"expected {c}{', or 3 to convert' if c == 1 else ''}")


def load_dataset(name: str = "fashion-mnist", root: str | os.PathLike | None = None, *,
                 val_size: int = 5000, split_seed: int = 0, subset: int | None = None,
                 resolution: int | None = None, in_channels: int | None = None) -> ImageData:
    """Load a registered dataset (``fashion-mnist``, ``mnist``, ``cifar10``, ``imagefolder``).

    ``val_size`` images of the training set (seeded by ``split_seed``) become the validation
    split; ``subset`` keeps only the first N of the remaining training images (the permutation
    is random, so it is a random sample). ``resolution`` resizes once at load time (bilinear,
    antialiased); ``in_channels`` converts grey <-> RGB.
    """
    key = dataset_name(name)
    if key == "imagefolder":
        from scaling.data.folder import load_image_folder

        return load_image_folder(root, val_size=val_size, split_seed=split_seed, subset=subset,
                                 resolution=resolution or 224, in_channels=in_channels or 3)
    if subset is not None and (not is_int(subset) or subset < 1):
        raise ValueError(f"subset={subset!r} is not allowed; expected None or an int >= 1")
    for field_name, value in (("resolution", resolution), ("in_channels", in_channels)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{field_name}={value!r} is not allowed; expected an int >= 1")
    info = DATASETS[key]
    full, test = info.load(root)
    tr_idx, va_idx = split_indices(len(full), val_size, split_seed)
    if subset is not None:
        tr_idx = tr_idx[:subset]
    train, val = TensorSplit(full.x[tr_idx], full.y[tr_idx]), TensorSplit(full.x[va_idx],
                                                                           full.y[va_idx])
    c = in_channels or full.x.shape[1]
    res = resolution or full.x.shape[-1]
    train, val, test = (_resize(_channels(s, c), res) for s in (train, val, test))
    mean, std = info.mean, info.std
    if c != len(mean):
        mean, std = _convert_stats(mean, c), _convert_stats(std, c)
    return ImageData(key, train, val, test, info.num_classes, c, res, mean, std, info.flip,
                     info.pad, info.classes)


def _convert_stats(stats: tuple[float, ...], channels: int) -> tuple[float, ...]:
    if len(stats) == 1:
        return stats * channels
    return (sum(w * s for w, s in zip((0.299, 0.587, 0.114), stats)),)
