"""Loaders on small IDX / pickle / image files written here, the split, batching, augmentation."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from idx_files import idx_images, idx_labels, make_idx_dir, write_file

from scaling.data import (
    DATA_ENV,
    BatchTransform,
    DatasetNotFoundError,
    TensorLoader,
    TensorSplit,
    load_dataset,
    read_idx,
    split_indices,
)

FASHION_DIR = "/usr/share/datasets/fashion-mnist"



@pytest.mark.parametrize("gz", [True, False])
def test_idx_roundtrip(tmp_path, gz):
    make_idx_dir(tmp_path / "fm", gz=gz)
    data = load_dataset("fashion-mnist", tmp_path / "fm", val_size=20)
    assert (len(data.train), len(data.val), len(data.test)) == (100, 20, 40)
    assert data.train.x.shape == (100, 1, 28, 28) and data.train.x.dtype == torch.uint8
    assert data.in_channels == 1 and data.resolution == 28 and data.num_classes == 10
    for split in (data.train, data.val, data.test):  # images still match their labels
        assert torch.equal(split.x[:, 0, 0, 0].long(), split.y * 20)


def test_env_var_and_parent_dir(tmp_path, monkeypatch):
    make_idx_dir(tmp_path / "fashion-mnist")
    monkeypatch.setenv(DATA_ENV, str(tmp_path))  # a parent holding fashion-mnist/
    assert len(load_dataset("fashion-mnist", val_size=10).train) == 110
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "fashion-mnist"))  # the folder itself
    assert len(load_dataset("fashion-mnist", val_size=10).test) == 40


def test_missing_dataset_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path / "nothing")
    with pytest.raises(DatasetNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path)


def _corrupt(tmp_path, name: str, payload: bytes, gz: bool = True):
    d = make_idx_dir(tmp_path / "fm")
    write_file(d / name, payload, gz)
    return d


@pytest.mark.parametrize("name, payload, match", [
    ("train-images-idx3-ubyte", idx_images(np.zeros((120, 28, 28)), magic=2049),
     "magic number"),
    ("train-labels-idx1-ubyte", idx_labels(np.zeros(120), magic=2051), "magic number"),
    ("train-images-idx3-ubyte", idx_images(np.zeros((120, 28, 28)))[:-100], "truncated"),
    ("train-images-idx3-ubyte", idx_images(np.zeros((120, 28, 28))) + b"xx", "truncated"),
    ("train-labels-idx1-ubyte", b"\x00\x00", "header"),
    ("train-labels-idx1-ubyte", idx_labels(np.full(120, 10)), "out of range"),
    ("t10k-labels-idx1-ubyte", idx_labels(np.zeros(39)), "labels"),
])
def test_bad_idx_files_name_the_file(tmp_path, name, payload, match):
    d = _corrupt(tmp_path, name, payload)
    with pytest.raises(ValueError, match=match) as info:
        load_dataset("fashion-mnist", d, val_size=10)
    assert name in str(info.value) or "t10k" in str(info.value)


def test_corrupt_and_truncated_gzip(tmp_path):
    d = make_idx_dir(tmp_path / "fm")
    path = d / "train-images-idx3-ubyte.gz"
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated gzip stream
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*truncated or corrupt"):
        load_dataset("fashion-mnist", d)
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 50)  # gzip magic, corrupt body
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        read_idx(str(path), 2051)


def test_negative_idx_dimension_names_the_file(tmp_path):
    import struct

    payload = struct.pack(">iiii", 2051, -5, 28, 28) + bytes(100)
    d = _corrupt(tmp_path, "train-images-idx3-ubyte", payload)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: header says shape "
                                         r"\(-5, 28, 28\).*>= 0"):
        load_dataset("fashion-mnist", d)


def test_gzip_bomb_is_decompressed_only_to_the_header_size(tmp_path, monkeypatch):
    """A small header over 64 MiB of zeros: reading stops one byte past the promised size."""
    import gzip

    import scaling.data.datasets as datasets

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(idx_images(np.zeros((2, 4, 4))))
        fh.write(bytes(64 << 20))
    read = []
    real_open = gzip.open

    class Counting:
        def __init__(self, *args):
            self.fh = real_open(*args)

        def read(self, n=-1):
            data = self.fh.read(n)
            read.append(len(data))
            return data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(datasets.gzip, "open", Counting)
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz.*more than that"):
        read_idx(str(path), 2051)
    assert sum(read) == 16 + 2 * 4 * 4 + 1


def test_decompression_bomb_image_names_the_file(tmp_path, monkeypatch):
    from PIL import Image

    from scaling.data.folder import FolderSplit

    path = tmp_path / "bomb.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels > 2x: a "bomb"
    with pytest.raises(ValueError, match="bomb.png: cannot decode image "
                                         "\\(DecompressionBombError"):
        FolderSplit([(str(path), 0)], 16, 3)[0]


# -- CIFAR-10 pickles ---------------------------------------------------------------------------
def make_cifar_dir(root, per_batch: int = 12, labels_fn=None):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        labels = rng.integers(0, 10, per_batch).tolist() if labels_fn is None else labels_fn(i)
        data = np.repeat(np.array(labels, dtype=np.uint8)[:, None] * 25, 3072, axis=1)
        with open(root / name, "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, fh, protocol=2)
    return root


def test_cifar_roundtrip(tmp_path):
    make_cifar_dir(tmp_path / "cifar-10-batches-py")
    data = load_dataset("cifar10", tmp_path, val_size=10)  # parent folder works too
    assert (len(data.train), len(data.val), len(data.test)) == (50, 10, 12)
    assert data.train.x.shape[1:] == (3, 32, 32) and data.flip and len(data.mean) == 3
    assert torch.equal(data.train.x[:, 2, 31, 31].long(), data.train.y * 25)


def test_cifar_bad_files(tmp_path):
    d = make_cifar_dir(tmp_path / "c", labels_fn=lambda i: [0] * 11 + ([10] if i == 2 else [1]))
    with pytest.raises(ValueError, match="data_batch_3.*out of range"):
        load_dataset("cifar10", d)
    d = make_cifar_dir(tmp_path / "c2")
    raw = (d / "data_batch_4").read_bytes()
    (d / "data_batch_4").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match="data_batch_4.*truncated, corrupt"):
        load_dataset("cifar10", d)
    with open(d / "data_batch_4", "wb") as fh:  # a pickle that would run code is refused
        pickle.dump({b"data": os.system, b"labels": []}, fh)
    with pytest.raises(ValueError, match="data_batch_4.*refusing"):
        load_dataset("cifar10", d)
    with open(d / "data_batch_4", "wb") as fh:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, fh)
    with pytest.raises(ValueError, match="data_batch_4.*3072"):
        load_dataset("cifar10", d)


# -- ImageFolder --------------------------------------------------------------------------------
def test_image_folder(tmp_path):
    from PIL import Image

    for split, n in (("train", 6), ("val", 2)):
        for c, color in (("cat", (200, 10, 10)), ("dog", (10, 200, 10))):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (40 + i, 30), color).save(tmp_path / split / c / f"{i}.png")
    data = load_dataset("imagefolder", tmp_path, val_size=4, resolution=16)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 4, 4)
    assert data.classes == ("cat", "dog") and data.num_classes == 2
    x, y = data.test[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y == 0 and int(x[0, 8, 8]) == 200
    (tmp_path / "train" / "cat" / "bad.jpg").write_bytes(b"not an image")
    data = load_dataset("imagefolder", tmp_path, val_size=1, resolution=16)
    bad = [i for i, (p, _) in enumerate(data.train.samples) if p.endswith("bad.jpg")]
    with pytest.raises(ValueError, match="bad.jpg"):
        data.train[bad[0]] if bad else data.val[0]


# -- split, batching, augmentation --------------------------------------------------------------
def test_split_deterministic_and_disjoint():
    tr, va = split_indices(1000, 100, seed=3)
    tr2, va2 = split_indices(1000, 100, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(va, va2)
    assert len(set(tr.tolist()) | set(va.tolist())) == 1000 and not set(tr.tolist()) & set(
        va.tolist())
    assert not torch.equal(va, split_indices(1000, 100, seed=4)[1])
    with pytest.raises(ValueError, match="val_size"):
        split_indices(10, 10, 0)


def test_subset_and_options(tmp_path):
    d = make_idx_dir(tmp_path / "fm")
    a = load_dataset("fashion-mnist", d, val_size=20, subset=30, split_seed=1)
    b = load_dataset("fashion-mnist", d, val_size=20, split_seed=1)
    assert len(a.train) == 30 and torch.equal(a.train.y, b.train.y[:30])
    assert torch.equal(a.val.y, b.val.y)  # the subset never changes the validation split
    c = load_dataset("fashion-mnist", d, val_size=20, resolution=32, in_channels=3)
    assert c.train.x.shape[1:] == (3, 32, 32) and len(c.mean) == 3
    for kwargs, match in (({"subset": 0}, "subset"), ({"resolution": 0}, "resolution"),
                          ({"val_size": 500}, "val_size")):
        with pytest.raises(ValueError, match=match):
            load_dataset("fashion-mnist", d, **kwargs)
    with pytest.raises(ValueError, match="dataset='svhn'"):
        load_dataset("svhn", d)


def test_tensor_loader_covers_split_once():
    split = TensorSplit(torch.zeros(10, 1, 2, 2, dtype=torch.uint8), torch.arange(10))
    gen = torch.Generator().manual_seed(0)
    seen = torch.cat([y for _, y in TensorLoader(split, 3, shuffle=True, generator=gen)])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    assert len(TensorLoader(split, 3, drop_last=True)) == 3
    assert [len(y) for _, y in TensorLoader(split, 32, drop_last=True)] == [10]


def test_batch_transform():
    x = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    x[:, :, :, :4] = 255  # left half white
    tf = BatchTransform((0.5,), (0.5,), pad=2, flip=True)
    out = tf(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.float32
    assert out.min() == -1 and out.max() == 1  # (v/255 - 0.5)/0.5, zero padding maps to -1
    flipped = (out[:, 0, 4, 7] > 0) & (out[:, 0, 4, 0] <= 0)
    assert 0 < int(flipped.sum()) < 64  # some, not all, samples flipped
    shifted = [not torch.equal(out[i], out[0]) for i in range(64)]
    assert any(shifted)
    plain = BatchTransform((0.5,), (0.5,))(x)
    assert torch.equal(plain[:, 0, :, :4], torch.ones(64, 8, 4))
    with pytest.raises(ValueError, match="channels"):
        BatchTransform((0.5, 0.5, 0.5), (1, 1, 1))(x)


@pytest.mark.skipif(not os.path.isdir(FASHION_DIR), reason=f"{FASHION_DIR} absent (apt-get "
                    "install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    data = load_dataset("fashion-mnist", FASHION_DIR, val_size=5000)
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    counts = torch.bincount(data.test.y, minlength=10)
    assert counts.tolist() == [1000] * 10  # the published test set is balanced
    assert abs(data.train.x.float().mean().item() / 255 - data.mean[0]) < 0.01
