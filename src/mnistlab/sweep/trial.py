"""One trial: ``fit()`` into its run folder, resuming from the folder's checkpoint when an
earlier attempt died, and the few numbers a sweep keeps of it.

    outcome = run_trial(trial, sweep_dir / trial.id, node="host:1a2b3c4d")

The run folder is the one ``mnistlab train`` writes (config.json, model.safetensors,
checkpoint, history, metrics.json), so ``evaluate``, ``predict`` and ``serve`` take it. Every
finished epoch is checkpointed by fit(); a retried attempt continues after the last of them, and
in fp32 ends with exactly the figures of an uninterrupted run (same seed, same thread count).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnistlab import atomic, runs
from mnistlab.errors import UserError
from mnistlab.sweep.spec import TrialSpec
from mnistlab.train.fit import Callback, TrainInfo, fit
from mnistlab.train.phases import TrainingDiverged

WORKER = ".sweep-worker.json"          # the process training a trial now (pid, node, start)


@dataclass(frozen=True)
class TrialMetrics:
    """What a sweep keeps of a finished run (fractions; seconds of training only)."""

    test_accuracy: float
    test_loss: float
    train_accuracy: float
    train_loss: float
    epochs: int
    train_seconds: float
    precision: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_metrics(source: str | os.PathLike[str] | runs.RunMetrics) -> TrialMetrics:
    """The sweep's view of a run's metrics: from a run folder (its metrics.json) or from fit()'s
    ``RunMetrics``."""
    m = runs.read_metrics(source) if isinstance(source, str | os.PathLike) else source
    return TrialMetrics(test_accuracy=float(m.test_accuracy), test_loss=float(m.test_loss),
                        train_accuracy=float(m.train_accuracy), train_loss=float(m.train_loss),
                        epochs=int(m.epochs), train_seconds=float(m.train_seconds),
                        precision=str(m.precision))


def is_finished(run_dir: Path) -> bool:
    """Whether the trial's run folder holds a finished run (metrics.json and weights)."""
    return (run_dir / runs.METRICS).is_file() and (run_dir / runs.WEIGHTS).is_file()


@dataclass(frozen=True)
class TrialOutcome:
    """How an attempt at a trial ended: ``metrics`` when it finished, else ``error``."""

    id: str
    node: str
    seconds: float                     # this attempt, wall clock
    resumed_from: int                  # epochs that an earlier attempt had finished
    metrics: TrialMetrics | None = None
    error: str | None = None           # a trial that cannot succeed (diverged, bad setting)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "node": self.node, "seconds": self.seconds,
                "resumed_from": self.resumed_from,
                "metrics": self.metrics.to_dict() if self.metrics else None,
                "error": self.error}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialOutcome:
        m = data.get("metrics")
        return cls(id=data["id"], node=data["node"], seconds=float(data["seconds"]),
                   resumed_from=int(data["resumed_from"]),
                   metrics=TrialMetrics(**m) if m else None, error=data.get("error"))


class _EpochHook(Callback):
    def __init__(self, on_epoch: Callable[[runs.HistoryRow], None] | None) -> None:
        self.on_epoch, self.resumed_from = on_epoch, 0

    def on_train_begin(self, info: TrainInfo) -> None:
        self.resumed_from = info.resumed_from

    def on_epoch_end(self, row: runs.HistoryRow) -> None:
        if self.on_epoch is not None:
            self.on_epoch(row)


def run_trial(trial: TrialSpec, run_dir: Path, *, node: str = "local",
              on_epoch: Callable[[runs.HistoryRow], None] | None = None) -> TrialOutcome:
    """Train ``trial`` into ``run_dir`` (resuming what an earlier attempt left there).

    A finished folder is not trained again. A trial that cannot succeed (its training diverged,
    or the folder belongs to other settings) returns an outcome with ``error``; anything else
    (the process killed, out of memory) is the executor's to retry.
    """
    start = time.perf_counter()
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        return TrialOutcome(trial.id, node, 0.0, trial.config.epochs, run_metrics(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(run_dir / WORKER, {"pid": os.getpid(), "node": node,
                                         "started": time.time()})
    hook = _EpochHook(on_epoch)
    try:
        result = fit(trial.config, run_dir, resume=(run_dir / runs.CONFIG).is_file(),
                     callbacks=[hook], command=f"mnistlab sweep (trial {trial.id})")
    except (TrainingDiverged, UserError) as exc:
        return TrialOutcome(trial.id, node, round(time.perf_counter() - start, 2),
                            hook.resumed_from, error=str(exc))
    finally:
        (run_dir / WORKER).unlink(missing_ok=True)
    return TrialOutcome(trial.id, node, round(time.perf_counter() - start, 2),
                        hook.resumed_from, run_metrics(result.metrics))
