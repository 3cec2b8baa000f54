"""A dataset's splits as float tensors, cached in memory (the same arrays for every run).

    x_test, y_test = load_split("mnist", "test")          # no TrainConfig needed
    x_train, y_train, x_test, y_test = load_tensors(config)
"""

from __future__ import annotations

import functools

import torch

from mnistlab.data import load_dataset
from mnistlab.data.batches import to_tensors
from mnistlab.errors import UserError
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
    """(x_train, y_train, x_test, y_test): float (N, 1, 28, 28) in [0, 1] and int64 labels.

    With ``config.validation`` = N, the last N training images are held out (see
    ``load_validation``) and never part of x_train."""
    x_train, y_train = load_split(config.dataset, "train")
    if config.validation:
        check_validation(config, len(x_train))
        x_train, y_train = x_train[:-config.validation], y_train[:-config.validation]
    if config.limit:
        x_train, y_train = x_train[:config.limit], y_train[:config.limit]
    return (x_train, y_train, *load_split(config.dataset, "test", config.test_limit))


def load_validation(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out validation split: the last ``config.validation`` training images.

    MNIST's last 10,000 training images are the classic validation set (the 50,000 / 10,000
    split of the original pickle), so this is the usual holdout, not a random one."""
    if not config.validation:
        raise UserError("this run holds out no validation images (validation = 0)")
    x_train, y_train = load_split(config.dataset, "train")
    check_validation(config, len(x_train))
    return x_train[-config.validation:], y_train[-config.validation:]


def check_validation(config: TrainConfig, train_images: int) -> None:
    """UserError when ``config.validation`` leaves none of ``train_images`` to train on."""
    if config.validation >= train_images:
        raise UserError(f"--validation {config.validation:,} holds out every one of the "
                        f"{train_images:,} {config.dataset} training images; it must be "
                        "smaller, to leave images to train on")
