"""mnistlab.machine: thread counts and how idle OpenMP threads wait."""

from __future__ import annotations

import os
import time

import pytest
import torch

from mnistlab.machine import QUIET_SPINCOUNT, choose_openmp_wait, openmp_wait
from mnistlab.threads import torch_threads


def test_openmp_wait_spins_on_a_quiet_machine_and_sleeps_on_a_busy_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        monkeypatch.delenv(key, raising=False)
    assert choose_openmp_wait(others=0.3, cores=2) == "spin"
    assert os.environ["GOMP_SPINCOUNT"] == QUIET_SPINCOUNT and "OMP_WAIT_POLICY" not in os.environ
    monkeypatch.delenv("GOMP_SPINCOUNT")
    assert choose_openmp_wait(others=1.0, cores=2) == "sleep"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and "GOMP_SPINCOUNT" not in os.environ
    assert choose_openmp_wait(others=0.0, cores=2) == "user"     # a choice already made stays
    assert openmp_wait() == {"omp_wait_policy": "PASSIVE", "gomp_spincount": None}


def test_torch_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with torch_threads(1) as n:
        assert n == 1 == torch.get_num_threads()
    assert torch.get_num_threads() == before


def _beside_a_spinner(new_session: bool) -> tuple[float | None, bool]:
    """others_cpu_load while a spinning process runs, and whether that process was counted
    among the other jobs' (its CPU ticks read)."""
    import subprocess
    import sys

    from mnistlab.machine import _ticks_by_process, others_cpu_load

    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"],
                               start_new_session=new_session)
    try:
        time.sleep(0.2)
        return others_cpu_load(0.3), spinner.pid in _ticks_by_process(os.getpgrp())
    finally:
        spinner.kill()
        spinner.wait()


def test_others_cpu_load_counts_other_jobs_not_its_own_process_group() -> None:
    from mnistlab.machine import others_cpu_load

    quiet = others_cpu_load(0.2)
    if quiet is None:
        pytest.skip("no /proc here")
    assert 0 <= quiet <= (os.cpu_count() or 1)
    other, counted = _beside_a_spinner(new_session=True)   # another job: its own process group
    assert other is not None and other > 0.6            # one process spinning: about one core
    assert counted
    # a pipeline's other end (`mnistlab ... --json | jq`) is in our group: not another job.
    # Asked by process, not by comparing two loads: on a shared machine other jobs' load
    # moves by a core between two readings (a reading of 1.6 beside 2.0 failed that way)
    _, counted = _beside_a_spinner(new_session=False)
    assert not counted


def test_others_cpu_load_is_none_without_process_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows has no os.getpgrp (nor /proc): the caller falls back on the load average
    from mnistlab.machine import others_cpu_load

    monkeypatch.delattr(os, "getpgrp")
    assert others_cpu_load(0.01) is None
