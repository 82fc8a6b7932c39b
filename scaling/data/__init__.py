"""Datasets from disk (Fashion-MNIST/MNIST IDX, CIFAR-10 pickle, ImageFolder trees; never
downloaded), held in memory and batched with whole-batch augmentation."""

from scaling.data.base import DATA_ENV, DatasetNotFoundError, ImageData, split_indices
from scaling.data.batching import BatchTransform, TensorLoader, TensorSplit, make_loader
from scaling.data.datasets import NATIVE_SHAPE, dataset_name, load_dataset, read_idx

__all__ = ["DATA_ENV", "NATIVE_SHAPE", "BatchTransform", "DatasetNotFoundError", "ImageData",
           "TensorLoader", "TensorSplit", "dataset_name", "load_dataset", "make_loader",
           "read_idx", "split_indices"]
