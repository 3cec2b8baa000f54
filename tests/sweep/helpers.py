"""Shared by the sweep tests: the tiny grid, waiting on run folders, the reference metrics."""

from __future__ import annotations

import json
import time
from pathlib import Path

from mnistlab.sweep.spec import SweepSpec

LOOPBACK = Path(__file__).resolve().parent / "ray_loopback.py"   # `ray` bound to 127.0.0.1

# fc, 2 seeds x 2 learning rates on 3,000 images, batch 16 (188 steps per epoch), 6 epochs:
# a few seconds per trial on one thread, long enough to kill one mid-trial
TINY = ["fc", "--seeds", "2", "--grid", "lr=0.05,0.1", "--grid", "batch_size=16",
        "--limit", "3000", "--test-limit", "1000", "--epochs", "6", "--quiet"]


def wait_for(predicate, timeout: float, what: str, proc=None, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def checkpointed_epoch(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "history.json").read_text()))
    except (OSError, ValueError):
        return 0


def reference_metrics(spec_dict: dict, trial_id: str, out: Path) -> dict:
    """The metrics of an uninterrupted run of that trial, trained here (same thread count)."""
    from mnistlab.train.fit import fit

    trial = next(t for t in SweepSpec.from_dict(spec_dict).trials() if t.id == trial_id)
    return fit(trial.config, out).metrics.to_dict()


SAME = ("test_accuracy", "test_loss", "train_accuracy", "train_loss", "epochs")
