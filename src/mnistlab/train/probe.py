"""Timing a few training steps of each candidate engine, and a cache of what was measured.

    key = probe_key("cnn", model, batch_size=64, precision="bf16", engines=("fused", "autograd"))
    timings = measure({"fused": fused_step, "autograd": autograd_step}, model, 64, "bf16")
    cache = ProbeCache()                  # <cache folder>/engine-probe.json
    cache.store(key, ProbeResult(timings, probed=now()))
    cache.load(key)                       # ProbeResult | None (None: absent, stale or unreadable)

Which engine is fastest depends on the CPU (AMX, AVX-512 BF16 or neither), the thread count and
the PyTorch build, not on a vendor's name: ``--engine auto`` (mnistlab.train.precision) measures
instead of guessing. The probe trains a deep copy of the real model on synthetic inputs of the
right shape, under a forked RNG, so the caller's model and random streams are untouched and a
run is bit-identical to one that never probed. This module knows nothing of the engines
themselves: each is a factory that, given a model and a precision, returns one training step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mnistlab import __version__, atomic
from mnistlab.machine import load_average
from mnistlab.paths import cache_dir
from mnistlab.runs.environment import cpu_name, isa_flags
from mnistlab.threads import torch_threads

# One training step on (x, y): forward, loss, backward and optimizer update.
Step = Callable[[torch.Tensor, torch.Tensor], None]
# (a copy of the model, precision) -> its training step
StepFactory = Callable[[nn.Module, str], Step]

CACHE_FILE = "engine-probe.json"
FORMAT = "mnistlab-engine-probe/1"
MAX_ENTRIES = 64              # one per (machine, threads, model, batch...): a bound, not a need
MAX_BYTES = 1 << 20           # 64 entries take about 40 KB
LOCK_SECONDS = 5.0            # waited for the cache's lock, then the cache is skipped

# Two warm-up steps (first-touch allocations, oneDNN primitive creation), then rounds of one
# timed step of each engine in turn, up to TIMED_STEPS rounds, fewer once the rounds have used
# BUDGET_SECONDS per engine; each engine's median. Taken in turn, a spell of load from another
# job falls on every engine alike: timed one engine after the other, such a spell fell on one
# of them, and on a shared 2-core machine the pick between two engines 10-30% apart flipped
# between sittings. The seed CNN at batch 64 takes 5-100 ms a step, so the probe takes about a
# second.
WARMUP_STEPS = 2
TIMED_STEPS = 7
MIN_TIMED_STEPS = 3
BUDGET_SECONDS = 0.3


@dataclass(frozen=True)
class ProbeKey:
    """What decides which engine is fastest; a change in any of them means a new probe."""

    cpu: str
    isa: str                      # torch's kernel level and the ISA flags that matter: a
    #                               virtual machine may name two generations alike ("AMD EPYC")
    threads: int
    torch: str
    mnistlab: str                 # a new release may bring a faster (or another) engine
    model: str
    architecture: str             # a digest of the layers and parameter shapes
    batch_size: int
    precision: str
    engines: tuple[str, ...]      # the candidates measured (a new one: probe again)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"engines": list(self.engines)}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def probe_key(model_name: str, model: nn.Module, *, batch_size: int, precision: str,
              engines: tuple[str, ...]) -> ProbeKey:
    """The key for ``model`` on this machine with the torch threads now in force."""
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    architecture = hashlib.sha256(f"{model!r}{shapes}".encode()).hexdigest()[:16]
    isa = " ".join([torch.backends.cpu.get_cpu_capability(), *isa_flags()])
    return ProbeKey(cpu=cpu_name(), isa=isa, threads=torch.get_num_threads(),
                    torch=torch.__version__,
                    mnistlab=__version__, model=model_name, architecture=architecture,
                    batch_size=batch_size, precision=precision, engines=tuple(engines))


@dataclass(frozen=True)
class ProbeResult:
    timings: dict[str, float]     # engine -> median ms per training step
    probed: str                   # UTC, 2026-01-31T12:00:00Z
    cached: bool = False          # read from the cache, not measured now
    busy: bool = False            # measured while other work held every core (see busy())


def busy() -> bool:
    """Whether other work holds every core now (1-minute load average >= cores). Timings taken
    so are mostly the other work's: with 2 threads on a 2-core machine running one more job,
    a step took 10-40x longer here, and the faster engine changed from run to run."""
    load = load_average()
    return load is not None and load[0] >= (os.cpu_count() or 1)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def time_in_turn(steps: Mapping[str, Step], x: torch.Tensor, y: torch.Tensor, *,
                 clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Each step's median milliseconds on ``(x, y)``, timed in rounds of one step of each (the
    order rotating from round to round, so that none always follows the same other), after
    WARMUP_STEPS untimed steps of each."""
    for step in steps.values():
        for _ in range(WARMUP_STEPS):
            step(x, y)
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    spent = 0.0
    for rounds in range(TIMED_STEPS):
        if rounds >= MIN_TIMED_STEPS and spent >= BUDGET_SECONDS * len(names):
            break
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            steps[name](x, y)
            times[name].append(clock() - start)
            spent += times[name][-1]
    return {name: round(1000 * statistics.median(t), 3) for name, t in times.items()}


def measure(factories: Mapping[str, StepFactory], model: nn.Module, batch_size: int,
            precision: str, input_shape: tuple[int, ...] = (1, 28, 28)) -> dict[str, float]:
    """Median ms per training step of each engine, each on its own deep copy of ``model``,
    timed in turn (time_in_turn).

    The inputs are synthetic (uniform images, label 0: a step's cost does not depend on the
    values) and drawn from a private generator; the RNG is forked anyway, since a model's own
    layers (dropout) draw from the global one during the steps."""
    # the thread count too: an engine's set-up may move it (Numba's OpenMP pool), and the
    # timings are for the count in the key
    with torch.random.fork_rng(devices=[]), torch_threads(torch.get_num_threads()) as threads:
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(batch_size, *input_shape, generator=generator)
        y = torch.zeros(batch_size, dtype=torch.int64)
        steps = {name: factory(copy.deepcopy(model).train(), precision)
                 for name, factory in factories.items()}
        torch.set_num_threads(threads)
        return time_in_turn(steps, x, y)


class ProbeCache:
    """One JSON file of past probes, one entry per key digest. Anything unreadable in it is
    treated as absent (the engine is measured again and the file rewritten): a damaged cache
    costs half a second, never a run. The file is replaced atomically; where it cannot be
    written (a read-only home), the measurement is simply not kept."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else cache_dir() / CACHE_FILE

    def _entries(self) -> dict[str, dict[str, object]]:
        try:
            # a plain file of sane size only: a FIFO in its place would block the read, and a
            # huge file is no cache of ours
            if not self.path.is_file() or self.path.stat().st_size > MAX_BYTES:
                return {}
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):      # deeply nested: RecursionError
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return {}
        entries = data.get("entries")
        if not isinstance(entries, dict):
            return {}
        return {k: v for k, v in entries.items() if isinstance(v, dict)}

    def load(self, key: ProbeKey) -> ProbeResult | None:
        entry = self._entries().get(key.digest())
        if entry is None or entry.get("key") != key.to_dict():
            return None
        timings, probed = entry.get("timings"), entry.get("probed")
        if (not isinstance(timings, dict) or set(timings) != set(key.engines)
                or not all(isinstance(v, int | float) and not isinstance(v, bool)
                           and 0 < v < math.inf for v in timings.values())
                or not isinstance(probed, str)):
            return None
        was_busy = entry.get("busy") is True
        if was_busy and not busy():     # measured under load, now quiet: measure properly
            return None
        return ProbeResult({k: float(v) for k, v in timings.items()}, probed, cached=True,
                           busy=was_busy)

    def store(self, key: ProbeKey, result: ProbeResult) -> None:
        # read, add, write under a lock beside the file: processes probing at once (a sweep's
        # trials) each keep their entry instead of the last writer's file winning
        with contextlib.suppress(OSError), _locked(self.path.with_name(self.path.name + ".lock")):
            entries = self._entries()
            entries[key.digest()] = {"key": key.to_dict(), "timings": result.timings,
                                     "probed": result.probed, "busy": result.busy}
            # the newest MAX_ENTRIES (ISO times sort as strings)
            kept = sorted(entries.items(), key=lambda kv: str(kv[1].get("probed", "")))
            # not kept (OSError): measured again next time
            atomic.write_json(self.path, {"format": FORMAT,
                                          "entries": dict(kept[-MAX_ENTRIES:])})


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created) for the block; waits for it up to
    LOCK_SECONDS, then raises OSError (the caller skips the cache: a stopped process or a
    stale NFS lock kept a training waiting without end). Where the OS has no advisory locks
    (Windows: no fcntl), the block runs unlocked, as ``mnistlab.folders.claim`` does there."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        deadline = time.monotonic() + LOCK_SECONDS
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OSError(f"{path} held by another process") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def probe(factories: Mapping[str, StepFactory], key: ProbeKey, model: nn.Module, *,
          input_shape: tuple[int, ...] = (1, 28, 28), cache: ProbeCache | None = None
          ) -> ProbeResult:
    """The cached timings for ``key``, else measured now (and cached). A measurement taken on a
    busy machine is kept, but measured again at the first use on a quiet one."""
    cache = cache or ProbeCache()
    found = cache.load(key)
    if found is not None:
        return found
    loaded = busy()
    result = ProbeResult(measure(factories, model, key.batch_size, key.precision, input_shape),
                         probed=now(), busy=loaded)
    cache.store(key, result)
    return result
