"""The facts of each dataset that need no data on disk (torch-free): its registered name and
aliases, its stored (channels, resolution) and its number of classes. The loaders, statistics
and class names are in :mod:`scaling.data.datasets`."""

from __future__ import annotations

#: (channels, resolution) of each dataset as stored (ImageFolder: the default crop)
NATIVE_SHAPE = {"fashion-mnist": (1, 28), "mnist": (1, 28), "cifar10": (3, 32),
                "imagefolder": (3, 224)}
#: classes of each fixed dataset (an ImageFolder has as many as it has folders)
NUM_CLASSES = {"fashion-mnist": 10, "mnist": 10, "cifar10": 10}
ALIASES = {"fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist", "cifar-10": "cifar10",
           "image-folder": "imagefolder"}
DATASET_NAMES = tuple(NATIVE_SHAPE)


def dataset_name(name: str) -> str:
    """The registered name of ``name`` (aliases resolved), or a ValueError listing the choices."""
    key = ALIASES.get(name, name)
    if key not in NATIVE_SHAPE:
        raise ValueError(f"dataset={name!r} is not allowed; expected one of {sorted(NATIVE_SHAPE)}")
    return key
