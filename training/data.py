"""MNIST as normalized torch tensors, held whole in memory (60k images are 188 MB as float32)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.data import mnist
from pipeline.data.preprocessing import normalize


def mnist_tensors(data_dir: Path, subset: int | None = None, eval_subset: int | None = None):
    """((train_x, train_y), (test_x, test_y)); subsets take the first N images (MNIST is pre-shuffled)."""
    data = mnist.load(Path(data_dir))
    train = _tensors(data.train_images[:subset], data.train_labels[:subset])
    test = _tensors(data.test_images[:eval_subset], data.test_labels[:eval_subset])
    return train, test


def _tensors(images, labels):
    return torch.from_numpy(normalize(images)), torch.from_numpy(labels.astype("int64"))
