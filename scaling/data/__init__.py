"""Datasets from disk (Fashion-MNIST/MNIST IDX, CIFAR-10 pickle, ImageFolder trees; never
downloaded), held in memory and batched with whole-batch augmentation.

The dataset facts (:mod:`scaling.data.catalog`) are torch-free; the rest loads on first use, so
that a command's ``--help`` does not import torch.
"""

from scaling.data.catalog import DATASET_NAMES, NATIVE_SHAPE, NUM_CLASSES, dataset_name

__all__ = ["DATASET_NAMES", "DATA_ENV", "NATIVE_SHAPE", "NUM_CLASSES", "BatchTransform",
           "DatasetNotFoundError", "ImageData", "TensorLoader", "TensorSplit", "dataset_name",
           "load_dataset", "make_loader", "read_idx", "split_indices"]

_LAZY = {"DATA_ENV": "base", "DatasetNotFoundError": "base", "ImageData": "base",
         "split_indices": "base", "BatchTransform": "batching", "TensorLoader": "batching",
         "TensorSplit": "batching", "make_loader": "batching", "load_dataset": "datasets",
         "read_idx": "datasets"}


def __getattr__(name: str):
    """Load the torch-dependent parts on first access."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"scaling.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'scaling.data' has no attribute {name!r}")
