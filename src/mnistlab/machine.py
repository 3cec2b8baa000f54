"""This machine's share of the work: the load, and how idle OpenMP threads wait.

Timings on a shared machine mean little without the load beside them, and thread counts decide
both speed and (for fp32 reductions) the exact figures a run produces, so both are recorded.
This module must not import torch: ``choose_openmp_wait`` runs before torch is first loaded
(torch's thread count for a block is ``mnistlab.threads.torch_threads``).
"""

from __future__ import annotations

import os
import time


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, rounded; None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# libgomp's spin count between parallel regions when the machine is quiet: about 0.9 ms of
# spinning on the AMD EPYC (about 90 ns a spin), enough to bridge the gaps inside a training
# step, where the fused engine's Numba kernels and torch's matmuls take turns
QUIET_SPINCOUNT = "10000"


def others_cpu_load(seconds: float = 0.1) -> float | None:
    """Cores kept busy by other processes right now: /proc/stat's non-idle time over a short
    window during which this process sleeps. None where /proc/stat is missing.

    The load average is no guide here: it decays over a minute, so the run before this one
    (ours) still counts as load."""
    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)     # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])
    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    return cores * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def choose_openmp_wait(others: float | None = None, cores: int | None = None) -> str:
    """Decide how idle OpenMP threads wait; must run before torch (and libgomp) is loaded.

    Between two parallel regions a sleeping worker thread costs a wake-up (tens of
    microseconds on these virtual machines, and a training step has dozens of regions), while a
    spinning one steals a core from any other job. Measured here, seed CNN (fused) and FC, one
    epoch each: on a quiet machine a brief spin (GOMP_SPINCOUNT=1000) trains the CNN 1.2x and
    the FC 2x faster than sleeping at once (OMP_WAIT_POLICY=PASSIVE), and a longer one
    (QUIET_SPINCOUNT) the fused CNN's step 1.06-1.09x faster again (about 1.02x over a whole
    epoch, within the machine's noise); beside one busy process,
    spinning costs the CNN 10% and halves the FC. So: spin briefly when other processes keep
    less than a quarter of the cores busy (``others_cpu_load``, 0.1 s), else sleep. A user's own
    OMP_WAIT_POLICY or GOMP_SPINCOUNT is left alone. Returns "user", "spin" or "sleep".
    """
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return "user"
    cores = cores or os.cpu_count() or 1
    if others is None:
        others = others_cpu_load()
        if others is None:                          # no /proc/stat: fall back on the load
            averages = load_average()
            others = averages[0] if averages else float(cores)
    if others < cores / 4:
        os.environ["GOMP_SPINCOUNT"] = QUIET_SPINCOUNT
        return "spin"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "sleep"


def openmp_wait() -> dict[str, str | None]:
    """The OpenMP wait settings in force, for the record (config.json, bench)."""
    return {k.lower(): os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
