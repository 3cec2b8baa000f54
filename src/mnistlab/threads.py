"""torch's intra-op thread count for a block of work.

Apart from ``mnistlab.machine`` because it imports torch: ``machine.choose_openmp_wait`` must
run before torch (and libgomp) is first loaded, so that module must not import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Use ``n`` torch intra-op threads inside the block (0: keep the current number), then
    restore the previous number. Yields the number in force."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
