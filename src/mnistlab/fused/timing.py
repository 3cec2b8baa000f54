"""The fused step's own timers: wall seconds per named part, for `mnistlab profile`.

    timer = PartTimer()
    engine.time_with(timer)          # every kernel and matmul of the step is now timed
    ... steps ...
    timer.seconds["block 2: forward matmul"], timer.calls[...], timer.flops[...]
    engine.time_with(None)           # back to untimed

A part is one call site in the step (a Numba kernel, a oneDNN matmul); what lies between them
(loss, the dense layers' small ops, Python) is the step's time less the parts'. Untimed, a call
goes straight through: ``UNTIMED.run(name, f, *args)`` is ``f(*args)``.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import torch


class Timer(Protocol):
    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


class _Untimed:
    @staticmethod
    def run(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


UNTIMED: Timer = _Untimed()


def matmul_flops(fn: Callable[..., Any], args: tuple[Any, ...]) -> int:
    """The FLOPs of torch.mm / addmm / bmm on these arguments (2 M K N a product), else 0."""
    if fn is torch.addmm:
        a, b = args[1], args[2]
    elif fn is torch.mm or fn is torch.bmm:
        a, b = args[0], args[1]
    else:
        return 0
    batch = a.shape[0] if fn is torch.bmm else 1
    return 2 * batch * a.shape[-2] * a.shape[-1] * b.shape[-1]


class PartTimer:
    """Sums the wall seconds, calls and (for matmuls) FLOPs of each named part."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self.flops: Counter[str] = Counter()

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1
            self.flops[name] += matmul_flops(fn, args)

    def clear(self) -> None:
        self.seconds.clear()
        self.calls.clear()
        self.flops.clear()
