"""ImageFolder trees (ImageNet-style) for GPU-scale runs: images are decoded lazily with PIL.

Layouts: ``root/train/<class>/*`` with an optional held-out ``root/val/<class>/*`` (or ``test``),
which becomes the test split; or ``root/<class>/*`` alone (no test split). Either way the
validation split is carved out of the training images with a seeded permutation. Each image is
resized so its shorter side is ``round(resolution / 0.875)`` and center-cropped to
``resolution`` (the usual ImageNet evaluation crop); training augmentation (random crop with
padding, flip) then runs on whole batches like for the in-memory datasets.
"""

from __future__ import annotations

import os

import torch

from scaling.data.base import DATA_ENV, DatasetNotFoundError, ImageData, split_indices

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_RATIO = 0.875


def _classes(directory: str) -> list[str]:
    return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not
                  e.name.startswith("."))


def _scan(directory: str, classes: list[str]) -> list[tuple[str, int]]:
    samples = []
    for label, cls in enumerate(classes):
        folder = os.path.join(directory, cls)
        if not os.path.isdir(folder):
            continue
        for dirpath, _, files in sorted(os.walk(folder)):
            samples += [(os.path.join(dirpath, f), label) for f in sorted(files)
                        if f.lower().endswith(EXTENSIONS)]
    return samples


class FolderSplit(torch.utils.data.Dataset):
    """A list of (path, label); items are ``(uint8 (C, R, R) tensor, label)``."""

    def __init__(self, samples: list[tuple[str, int]], resolution: int, in_channels: int) -> None:
        self.samples, self.resolution, self.in_channels = samples, resolution, in_channels

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: torch.Tensor) -> FolderSplit:
        return FolderSplit([self.samples[i] for i in indices.tolist()], self.resolution,
                           self.in_channels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        path, label = self.samples[i]
        r = self.resolution
        try:
            with Image.open(path) as img:
                img = img.convert("L" if self.in_channels == 1 else "RGB")
                w, h = img.size
                scale = round(r / CROP_RATIO) / min(w, h)
                nw, nh = max(r, round(w * scale)), max(r, round(h * scale))
                img = img.resize((nw, nh), Image.BILINEAR)
                left, top = (nw - r) // 2, (nh - r) // 2
                img = img.crop((left, top, left + r, top + r))
                data = img.tobytes()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            # DecompressionBombError: more pixels than PIL's MAX_IMAGE_PIXELS (a bomb)
            raise ValueError(f"{path}: cannot decode image ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())})") from None
        x = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        x = x.view(r, r, -1).permute(2, 0, 1).contiguous()
        return x, label


def load_image_folder(root, *, val_size: int, split_seed: int, subset: int | None,
                      resolution: int, in_channels: int) -> ImageData:
    """An :class:`ImageData` over an ImageFolder tree (see the module docstring)."""
    root = root if root is not None else os.environ.get(DATA_ENV)
    if root is None or not os.path.isdir(root):
        raise DatasetNotFoundError(f"imagefolder: root={root!r} is not a directory; pass the "
                                   f"tree's folder as root or ${DATA_ENV}")
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels={in_channels!r} is not allowed; expected 1 or 3")
    train_dir = os.path.join(root, "train")
    test_dir = next((os.path.join(root, d) for d in ("val", "test")
                     if os.path.isdir(os.path.join(root, d))), None)
    if not os.path.isdir(train_dir):
        train_dir, test_dir = root, None
    classes = _classes(train_dir)
    if not classes:
        raise DatasetNotFoundError(f"imagefolder: {train_dir} has no class subfolders")
    full = FolderSplit(_scan(train_dir, classes), resolution, in_channels)
    if len(full) < 2:
        raise DatasetNotFoundError(f"imagefolder: {train_dir} holds {len(full)} images with "
                                   f"extensions {EXTENSIONS}")
    test = None
    if test_dir is not None:
        unknown = sorted(set(_classes(test_dir)) - set(classes))
        if unknown:
            raise ValueError(f"imagefolder: {test_dir} has classes {unknown} not in {train_dir}")
        test = FolderSplit(_scan(test_dir, classes), resolution, in_channels)
    tr_idx, va_idx = split_indices(len(full), val_size, split_seed)
    if subset is not None:
        tr_idx = tr_idx[:subset]
    mean = IMAGENET_MEAN if in_channels == 3 else (0.449,)
    std = IMAGENET_STD if in_channels == 3 else (0.226,)
    return ImageData("imagefolder", full.subset(tr_idx), full.subset(va_idx), test, len(classes),
                     in_channels, resolution, mean, std, flip=True, pad=max(1, resolution // 8),
                     classes=tuple(classes))
