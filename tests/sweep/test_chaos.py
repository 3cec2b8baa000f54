"""Chaos for training itself: kill -9 `mnistlab train` at random moments of a short fp32 run
(mid-epoch, and while a checkpoint is being written), resume each, and check that every resumed
run ends with the uninterrupted run's metrics and that no run folder is left unreadable.

Bounded here (MNISTLAB_CHAOS_KILLS, default 4 kills); the full figure is 20:

    MNISTLAB_CHAOS_KILLS=20 python -m pytest tests/sweep/test_chaos.py -q
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mnistlab import runs

SRC = Path(__file__).resolve().parents[2] / "src"
KILLS = int(os.environ.get("MNISTLAB_CHAOS_KILLS", "4"))
TRAIN = ["fc", "--limit", "3000", "--test-limit", "1000", "--epochs", "6", "--batch-size", "16",
         "--precision", "fp32", "--threads", "1", "--json"]
SAME = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "epochs")

pytestmark = pytest.mark.timeout(120 + 60 * KILLS)


def _train(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "mnistlab", "train", *TRAIN, "--out",
                             str(out), *extra], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _readable(run_dir: Path) -> None:
    """Every file of a killed run still reads (or is absent), and --resume accepts it."""
    runs.read_config(run_dir)
    if (run_dir / runs.CHECKPOINT).exists():
        ckpt = runs.load_checkpoint(run_dir)
        # fit() writes the checkpoint (the resume point) first, then weights and history: a
        # kill between them leaves the history one epoch behind (or absent after epoch 1)
        if (run_dir / runs.HISTORY_JSON).exists():
            assert runs.read_history(run_dir) in (ckpt.history, ckpt.history[:-1])
        else:
            assert ckpt.epoch == 1
    if (run_dir / runs.WEIGHTS).exists():
        runs.load_model(run_dir)


def _kill_writing_checkpoint(proc: subprocess.Popen, run_dir: Path, deadline: float) -> bool:
    """Kill the moment a checkpoint's temp file exists (mid-write); True if it was caught."""
    while time.monotonic() < deadline and proc.poll() is None:
        if any(run_dir.glob(".checkpoint.safetensors.*.tmp")):
            proc.send_signal(signal.SIGKILL)
            return True
    return False


def _begun(proc: subprocess.Popen, run_dir: Path) -> float:
    """Wait until the run has begun (config.json written: data loaded, model built)."""
    while not (run_dir / runs.CONFIG).exists():
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.01)
    return time.monotonic()


def test_killed_training_resumes_to_the_uninterrupted_metrics(tmp_path):
    proc = _train(tmp_path / "reference")
    begun = _begun(proc, tmp_path / "reference")
    reference = _finish(proc)
    length = time.monotonic() - begun                  # the run's epochs, seconds
    rng = random.Random(20)
    resumed, mid_write, late = 0, 0, 0
    for k in range(KILLS):
        run_dir = tmp_path / f"killed-{k}"
        proc = _train(run_dir)
        start = _begun(proc, run_dir)
        if k % 2:   # while a checkpoint is being written (falls back to the end of the run)
            mid_write += _kill_writing_checkpoint(proc, run_dir, start + length)
        else:       # a random moment of the run: mid-epoch, evaluation, a write
            time.sleep(rng.uniform(0.02, 0.95) * length)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        else:
            late += 1                                  # it had finished: resume is a no-op
        proc.wait(timeout=30)
        _readable(run_dir)
        metrics = _finish(_train(run_dir, "--resume"))
        assert {k2: metrics[k2] for k2 in SAME} == {k2: reference[k2] for k2 in SAME}, k
        assert not list(run_dir.glob(".*.tmp"))        # the resume swept the partial writes
        resumed += 1
    print(f"chaos: {resumed}/{KILLS} killed runs resumed to the reference metrics "
          f"({mid_write} killed mid checkpoint write, {late} finished before the kill)")
    assert resumed == KILLS and late <= KILLS // 4
