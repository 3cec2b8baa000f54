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


def _ticks_by_process(group: int) -> dict[int, int]:
    """CPU ticks (user + system, all threads) used so far by each process outside process
    group ``group``, from /proc/<pid>/stat (a process gone meanwhile is skipped)."""
    ticks: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                data = f.read()
            fields = data[data.rindex(b")") + 2:].split()      # after "pid (comm) "
            if int(fields[2]) != group:                         # pgrp
                ticks[int(entry.name)] = int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, ValueError, IndexError):
            continue
    return ticks


def _steal_ticks() -> int:
    """Ticks the hypervisor gave to other guests: /proc/stat's steal."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = f.readline().split()[1:]
    return int(fields[7]) if len(fields) > 7 else 0


def others_cpu_load(seconds: float = 0.1) -> float | None:
    """Cores kept busy by other jobs right now, over a short window during which this process
    sleeps: the CPU time of processes outside this one's process group, plus the time the
    hypervisor gave to other guests (steal). None where /proc is missing.

    Outside the process group, because a pipeline is one group: in `mnistlab ... --json | jq`
    the consumer starts with us, and its start-up (tens of ms of CPU) fell in the window and
    made threads sleep (measured: `mnistlab train ... --json | python3 -c ...` chose sleeping
    threads in 2 of 3 tries, and its speedrun trained 1.2-1.4x slower). The load average is no
    guide either: it decays over a minute, so the run before this one (ours) still counts."""
    try:
        group = os.getpgrp()
        start, ticks0, steal0 = time.monotonic(), _ticks_by_process(group), _steal_ticks()
        time.sleep(seconds)
        ticks1, steal1 = _ticks_by_process(group), _steal_ticks()
        elapsed = time.monotonic() - start
    except (OSError, ValueError, IndexError, AttributeError):     # no /proc; no getpgrp
        return None
    used = sum(max(0, t - ticks0.get(pid, 0)) for pid, t in ticks1.items())
    used += max(0, steal1 - steal0)
    return used / (os.sysconf("SC_CLK_TCK") * elapsed) if elapsed > 0 else 0.0


def choose_openmp_wait(others: float | None = None, cores: int | None = None) -> str:
    """Decide how idle OpenMP threads wait; must run before torch (and libgomp) is loaded.

    Between two parallel regions a sleeping worker thread costs a wake-up (tens of
    microseconds on these virtual machines, and a training step has dozens of regions), while a
    spinning one steals a core from any other job. Measured here, seed CNN (fused) and FC, one
    epoch each: on a quiet machine a brief spin (GOMP_SPINCOUNT=1000) trains the CNN 1.2x and
    the FC 2x faster than sleeping at once (OMP_WAIT_POLICY=PASSIVE), and a longer one
    (QUIET_SPINCOUNT) the fused CNN's step 1.06-1.09x faster again (about 1.02x over a whole
    epoch, within the machine's noise); beside one busy process,
    spinning costs the CNN 10% and halves the FC. So: spin briefly when other jobs keep
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
