"""The fused step's own timers: wall seconds per named part, for `mnistlab profile`.

    timer = PartTimer()
    engine.time_with(timer)          # every kernel and matmul of the step is now timed
    ... steps ...
    timer.seconds["block 2: forward matmul"], timer.calls[...]
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


class Timer(Protocol):
    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any: ...


class _Untimed:
    @staticmethod
    def run(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


UNTIMED: Timer = _Untimed()


class PartTimer:
    """Sums the wall seconds and calls of each named part."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()

    def run(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.calls[name] += 1

    def clear(self) -> None:
        self.seconds.clear()
        self.calls.clear()
