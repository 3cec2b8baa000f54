"""A dataset's splits as float tensors, cached in memory (the same arrays for every run).

    x_test, y_test = load_split("mnist", "test")          # no TrainConfig needed
    x_train, y_train, x_test, y_test = load_tensors(config)
"""

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


def load_split(dataset: str, split: str, limit: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) of one split: float (N, 1, 28, 28) in [0, 1] and int64 labels; ``limit`` > 0:
    the first ``limit`` images only (views of the cached tensors, no copy)."""
    x, y = _split_tensors(dataset, split)
    return (x[:limit], y[:limit]) if limit else (x, y)


def load_tensors(config: TrainConfig) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): float (N, 1, 28, 28) in [0, 1] and int64 labels."""
    return (*load_split(config.dataset, "train", config.limit),
            *load_split(config.dataset, "test", config.test_limit))
