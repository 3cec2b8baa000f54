"""The machine and versions a run ran on: what decides whether it can be repeated bit for bit."""

from __future__ import annotations

import os
import platform

import numpy
import safetensors
import torch

from mnistlab import __version__
from mnistlab.machine import openmp_wait
from mnistlab.runs.schema import Environment


def environment(threads: int | None = None) -> Environment:
    """Versions and machine facts that decide whether a run can be repeated bit for bit."""
    wait = openmp_wait()
    return Environment(
        mnistlab=__version__,
        torch=torch.__version__,
        numpy=numpy.__version__,
        safetensors=safetensors.__version__,
        python=platform.python_version(),
        platform=platform.platform(),
        cpu=cpu_name(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        cpu_count=os.cpu_count(),
        threads=threads if threads is not None else torch.get_num_threads(),
        omp_wait_policy=wait["omp_wait_policy"],
        gomp_spincount=wait["gomp_spincount"],
    )


def cpu_name() -> str:
    """The CPU's model name (``lscpu``'s "Model name"), else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
