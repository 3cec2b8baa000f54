"""The report's stage timer: announces each stage on the terminal and records how long it took."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mnistlab import console


@dataclass
class Stages:
    """``with stages("name"): ...`` prints ``[i/total] name ...`` and, when the block ends,
    its duration; ``seconds`` keeps each stage's (rounded to 0.01 s), in order."""

    total: int
    say: Callable[[str], None] = console.say
    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.say(f"[{len(self.seconds) + 1}/{self.total}] {name} ...")
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.seconds[name] = round(took, 2)
        self.say(f"[{len(self.seconds)}/{self.total}] {name}: done in {took:.1f} s")
