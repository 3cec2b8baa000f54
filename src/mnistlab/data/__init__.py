"""Datasets as uint8 arrays: fetched once, verified by hash, cached on disk and in memory.

    images, labels = load_dataset("mnist", "train")   # uint8 [60000, 28, 28], uint8 [60000]
"""

from __future__ import annotations

import functools

import numpy as np

from mnistlab.data import cache
from mnistlab.data.checksums import SPLITS
from mnistlab.errors import UserError


def fetch(name: str = "mnist", *, force: bool = False) -> None:
    """Make sure the dataset is in the cache (from the default source)."""
    from mnistlab.data import carrier

    cache.spec(name)
    if cache.is_complete(name) and not force:
        return
    if name != "mnist":
        raise UserError(f"no default source for {name} yet")
    cache.publish(name, carrier.fetch_arrays(), source="registry")


@functools.cache
def _load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = cache.read_split(name, split)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_dataset(name: str = "mnist", split: str = "train", *,
                 download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, 28, 28], labels uint8 [N])``, read-only and cached in memory.

    With ``download`` (the default) a missing dataset is fetched first.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    cache.spec(name)
    if download and not cache.is_complete(name):
        fetch(name)
    return _load(name, split)
