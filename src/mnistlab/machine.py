"""This machine's share of the work: torch's thread count for a block, and the load average.

Timings on a shared machine mean little without the load beside them, and thread counts decide
both speed and (for fp32 reductions) the exact figures a run produces, so both are recorded.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[int]:
    """Use ``n`` torch intra-op threads inside the block (0: keep the current number), then
    restore the previous number. Yields the number in force."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, rounded; None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
