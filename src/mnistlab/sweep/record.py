"""sweep.json: the spec, and each trial's settings, state, metrics, node and seconds.

Written atomically by the driver after every change, so a killed driver leaves the last state
whole. On ``--resume`` the run folders, not this file, decide what is finished: a trial whose
folder holds metrics.json is kept; every other one continues from its checkpoint.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mnistlab import atomic
from mnistlab.errors import UserError
from mnistlab.sweep.spec import SweepSpec, TrialSpec
from mnistlab.sweep.trial import TrialMetrics, TrialOutcome, is_finished, run_metrics

FILE = "sweep.json"
FORMAT = "mnistlab-sweep-1"
# pending: not started | running | done | failed: cannot succeed, or out of retries |
# lost: its worker died more times than the retry limit (resumed by --resume) |
# stopped: ended early by the scheduler (asha) | interrupted: the sweep stopped before it ended
STATES = ("pending", "running", "done", "failed", "lost", "stopped", "interrupted")


@dataclass
class TrialRecord:
    id: str
    model: str
    seed: int
    settings: dict[str, Any]
    run_dir: str                        # relative to the sweep folder
    state: str = "pending"
    attempts: int = 0                   # starts of the trial (1 when nothing went wrong)
    node: str | None = None             # where it last ran
    seconds: float = 0.0                # wall clock over all attempts
    resumed_from: list[int] = field(default_factory=list)  # epochs kept at each restart
    metrics: TrialMetrics | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": self.metrics.to_dict() if self.metrics else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialRecord:
        m = data.get("metrics")
        return cls(**{**data, "metrics": TrialMetrics(**m) if m else None})


@dataclass
class SweepRecord:
    """The whole of sweep.json."""

    spec: SweepSpec
    trials: list[TrialRecord]
    executor: str = "ray"
    created: str = field(default_factory=lambda: _now())
    updated: str = ""
    total_seconds: float = 0.0          # wall clock of the sweep, over all its sessions
    sessions: int = 0                   # 1 + times it was resumed

    @classmethod
    def new(cls, spec: SweepSpec, trials: list[TrialSpec], executor: str) -> SweepRecord:
        return cls(spec=spec, executor=executor, trials=[
            TrialRecord(id=t.id, model=t.model, seed=t.seed, settings=dict(t.settings),
                        run_dir=t.id) for t in trials])

    def trial(self, trial_id: str) -> TrialRecord:
        for r in self.trials:
            if r.id == trial_id:
                return r
        raise KeyError(trial_id)

    def counts(self) -> dict[str, int]:
        return {s: sum(r.state == s for r in self.trials) for s in STATES}

    def apply(self, outcome: TrialOutcome) -> None:
        """One finished attempt: the trial is done, or failed with a reason."""
        r = self.trial(outcome.id)
        r.node, r.seconds = outcome.node, round(r.seconds + outcome.seconds, 2)
        if outcome.metrics is not None:
            r.state, r.metrics, r.error = "done", outcome.metrics, None
        else:
            r.state, r.error = "failed", outcome.error

    def reconcile(self, root: Path) -> None:
        """Trust the run folders: finished ones are done; anything unfinished (running when the
        driver died, interrupted, lost with its worker) goes back to pending; failed (cannot
        succeed) and stopped (by the scheduler) trials stay as they are."""
        for r in self.trials:
            run_dir = root / r.run_dir
            if is_finished(run_dir):
                if r.state != "done" or r.metrics is None:
                    r.state, r.metrics = "done", run_metrics(run_dir)
            elif r.state in ("running", "interrupted", "lost", "done"):
                r.state = "pending"

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "spec": self.spec.to_dict(), "executor": self.executor,
                "created": self.created, "updated": self.updated,
                "total_seconds": self.total_seconds, "sessions": self.sessions,
                "counts": self.counts(), "trials": [r.to_dict() for r in self.trials]}

    def write(self, root: Path) -> None:
        self.updated = _now()
        atomic.write_json(root / FILE, self.to_dict())


def read(root: Path) -> SweepRecord:
    path = root / FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"cannot resume {root}: no {FILE} there (not a sweep folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not an mnistlab sweep file")
    try:
        return SweepRecord(spec=SweepSpec.from_dict(data["spec"]), executor=data["executor"],
                           created=data["created"], updated=data.get("updated", ""),
                           total_seconds=float(data.get("total_seconds", 0.0)),
                           sessions=int(data.get("sessions", 0)),
                           trials=[TrialRecord.from_dict(t) for t in data["trials"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path} is incomplete ({exc})") from None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
