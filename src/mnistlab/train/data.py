"""A dataset's splits as float tensors, cached in memory (the same arrays for every run)."""

from __future__ import annotations

import functools

import torch

from mnistlab.data import load_dataset
from mnistlab.data.batches import to_tensors
from mnistlab.train.config import TrainConfig


@functools.lru_cache(maxsize=4)
def _split_tensors(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_dataset(dataset, split)
    return to_tensors(images, labels)                       # new float32 memory, (N, 1, 28, 28)


def load_tensors(config: TrainConfig) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): float (N, 1, 28, 28) in [0, 1] and int64 labels."""
    x_train, y_train = _split_tensors(config.dataset, "train")
    x_test, y_test = _split_tensors(config.dataset, "test")
    if config.limit:
        x_train, y_train = x_train[:config.limit], y_train[:config.limit]
    if config.test_limit:
        x_test, y_test = x_test[:config.test_limit], y_test[:config.test_limit]
    return x_train, y_train, x_test, y_test
