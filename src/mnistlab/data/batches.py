"""In-memory tensors and a fast batch iterator (no DataLoader workers: MNIST fits in memory).

The whole split lives in one float tensor; a batch is an index_select, so an epoch costs no
Python per-sample work. Shuffling uses its own seeded ``torch.Generator``, so the order is
repeatable and independent of any other random state.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


def to_tensors(images: np.ndarray, labels: np.ndarray, *,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 28, 28] and [N] -> inputs (N, 1, 28, 28) scaled to [0, 1], labels int64 (N,)."""
    # Cached arrays are read-only; torch.as_tensor shares memory with a read-only array only
    # with a warning, so convert dtype on the NumPy side first (which copies into new memory).
    x = torch.from_numpy(np.array(images, dtype=np.float32)).to(dtype).div_(255.0).unsqueeze(1)
    y = torch.from_numpy(np.array(labels, dtype=np.int64))
    return x, y


class Batches:
    """Iterate ``(x, y)`` mini-batches over in-memory tensors.

    ``shuffle`` draws a fresh permutation each epoch from a generator seeded with ``seed``;
    ``drop_last`` drops the final short batch. ``len()`` is the number of batches per epoch.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 shuffle: bool = False, seed: int = 0, drop_last: bool = False) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.x)
        if self.shuffle:
            # drawn on the CPU generator (the same order on every device), used where x lives
            order = torch.randperm(n, generator=self.generator).to(self.x.device)
            for i in range(len(self)):
                idx = order[i * self.batch_size:(i + 1) * self.batch_size]
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)
        else:
            for i in range(len(self)):
                sl = slice(i * self.batch_size, (i + 1) * self.batch_size)
                yield self.x[sl], self.y[sl]

    def get_state(self) -> torch.Tensor:
        """The shuffling generator's state, for exact resume."""
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
