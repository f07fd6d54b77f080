"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` (gzipped IDX under /usr/share/datasets/fashion-mnist/)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from guidegap.data.idx import read_idx
from guidegap.errors import InputError

__all__ = ["FASHION_MNIST_ROOT", "CLASSES", "load_fashion_mnist"]

FASHION_MNIST_ROOT = Path(os.environ.get("GUIDEGAP_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000)}


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, 28, 28)`` float32 scaled to [-1, 1] and labels ``(N,)`` int64."""
    if split not in _FILES:
        raise InputError(f"expected split 'train' or 'test', received {split!r}.")
    root = Path(root) if root is not None else FASHION_MNIST_ROOT
    images_name, labels_name, count = _FILES[split]
    if not (root / images_name).is_file() or not (root / labels_name).is_file():
        raise InputError(
            f"Fashion-MNIST is not installed at {root}; install it with: apt-get install -y dataset-fashion-mnist "
            "(or set GUIDEGAP_FASHION_MNIST to a folder holding the gzipped IDX files)."
        )
    images = read_idx(root / images_name, expected_ndim=3)
    labels = read_idx(root / labels_name, expected_ndim=1)
    if images.shape != (count, 28, 28) or labels.shape != (count,) or images.dtype != np.uint8:
        raise InputError(f"{root}: expected {count} 28x28 uint8 images and labels, received {images.shape} / {labels.shape}.")
    if labels.max() > 9:
        raise InputError(f"{root / labels_name}: labels outside 0..9; reinstall the dataset.")
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))
