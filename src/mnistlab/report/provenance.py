"""How a report was made: its settings, when it started, how long each stage took, the machine
and the library versions (report.json's ``meta``, the report's last section)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Iterable, Mapping

import numpy as np
import torch

from mnistlab import __version__
from mnistlab.machine import load_average
from mnistlab.report.schema import ConfigValue, Provenance, Versions


def collect(*, config: Mapping[str, ConfigValue], command: str, threads: int, started: float,
            t0: float, stage_seconds: Mapping[str, float], device: str = "cpu",
            train_threads: Iterable[int] = ()) -> Provenance:
    """``started``: the wall clock (time.time()) at the start; ``t0``: time.perf_counter() then,
    so the total is measured on the monotonic clock; ``threads`` 0: PyTorch's default;
    ``device``: where the models trained (mnistlab.train.device.describe);
    ``train_threads``: the thread count each trained run recorded (0: not recorded)."""
    threads = threads or torch.get_num_threads()
    recorded = sorted({t for t in train_threads if t})
    return Provenance(
        config=dict(config),
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        total_seconds=round(time.perf_counter() - t0, 1),
        stage_seconds=dict(stage_seconds),
        load_average=load_average(),
        cpu_count=os.cpu_count(),
        threads=threads,
        device=device,
        train_threads=recorded if recorded and recorded != [threads] else [],
        versions=Versions(mnistlab=__version__, torch=torch.__version__,
                          numpy=np.__version__, python=platform.python_version()),
        command=command,
    )
