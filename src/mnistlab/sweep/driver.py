"""A sweep from start to end: expand the spec, run what is not finished, keep sweep.json, write
the summary.

    record = run_sweep(spec, Path("sweeps/lr"), executor)          # a new sweep
    record = resume_sweep(Path("sweeps/lr"), executor)             # continue an interrupted one
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from mnistlab import runs
from mnistlab.errors import UserError
from mnistlab.sweep import record as records
from mnistlab.sweep import summary
from mnistlab.sweep.executor import Executor
from mnistlab.sweep.progress import Progress
from mnistlab.sweep.record import SweepRecord
from mnistlab.sweep.spec import SweepSpec, TrialSpec
from mnistlab.sweep.trial import TrialOutcome


class SweepInterrupted(KeyboardInterrupt):
    """The sweep stopped before every trial ended; ``mnistlab sweep --resume DIR`` goes on."""

    def __init__(self, root: Path, left: int) -> None:
        super().__init__(f"{left} trial(s) unfinished in {root}")
        self.root, self.left = root, left


class _Keeper:
    """The executor's sink: updates the record, writes sweep.json, moves the progress view."""

    def __init__(self, record: SweepRecord, root: Path, progress: Progress) -> None:
        self.record, self.root, self.progress = record, root, progress

    def _save(self) -> None:
        self.record.write(self.root)
        self.progress.refresh()

    def started(self, trial_id: str) -> None:
        r = self.record.trial(trial_id)
        r.state, r.attempts = "running", r.attempts + 1
        self._save()

    def epoch(self, trial_id: str, node: str, row: runs.HistoryRow) -> None:
        r = self.record.trial(trial_id)
        if r.node != node:
            r.node = node
            self._save()

    def finished(self, outcome: TrialOutcome) -> None:
        self.record.apply(outcome)
        r = self.record.trial(outcome.id)
        if outcome.resumed_from:
            r.resumed_from.append(outcome.resumed_from)
        self.record.write(self.root)
        self.progress.finished(outcome.id)

    def retrying(self, trial_id: str, reason: str) -> None:
        r = self.record.trial(trial_id)
        r.state, r.error = "pending", reason
        self.progress.line(f"{trial_id}: worker lost ({reason}); retrying from its checkpoint")
        self._save()

    def lost(self, trial_id: str, reason: str) -> None:
        r = self.record.trial(trial_id)
        if r.state != "done":
            r.state, r.error = "lost", reason
            self.record.write(self.root)
            self.progress.finished(trial_id)

    def stopped(self, trial_id: str) -> None:
        r = self.record.trial(trial_id)
        if r.state == "running":
            r.state = "stopped"
            self.record.write(self.root)
            self.progress.finished(trial_id)


def check_folder(root: Path) -> None:
    """UserError unless ``root`` can be a new sweep's folder (new, or empty): said before Ray
    starts (some 15 s), not after."""
    root = root.expanduser()
    if root.exists() and not root.is_dir():
        raise UserError(f"--out {root} is a file; expected a folder for the sweep")
    if root.is_dir() and any(root.iterdir()):
        hint = (" (it holds a sweep: continue it with --resume "
                f"{root})" if (root / records.FILE).is_file() else "")
        raise UserError(f"--out {root} already holds files{hint}; choose a new folder")


def prepare_folder(root: Path) -> Path:
    """The sweep folder: new, or empty; UserError for anything else."""
    check_folder(root)
    root = root.expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the sweep folder {root} ({exc.strerror})") from None
    return root.resolve()


def new_record(spec: SweepSpec, executor: Executor) -> tuple[SweepRecord, list[TrialSpec]]:
    trials = spec.trials()
    return SweepRecord.new(spec, trials, executor.name), trials


def ended(root: Path) -> SweepRecord | None:
    """The sweep in ``root`` where every trial has ended (nothing to resume), else None."""
    record = records.read(root)
    record.reconcile(root)
    return None if any(r.state == "pending" for r in record.trials) else record


def load_record(root: Path, executor: Executor) -> tuple[SweepRecord, list[TrialSpec]]:
    """sweep.json of ``root`` reconciled with its run folders, and the spec's trials."""
    record = records.read(root)
    trials = record.spec.trials()
    if [t.id for t in trials] != [r.id for r in record.trials]:
        raise UserError(f"{root / records.FILE} does not match its own spec's trials "
                        "(written by another mnistlab version?); start a new sweep")
    record.reconcile(root)
    record.executor = executor.name
    return record, trials


def run(record: SweepRecord, trials: list[TrialSpec], root: Path, executor: Executor, *,
        quiet: bool = False) -> SweepRecord:
    """Run the record's pending trials; write sweep.json and the summary. Raises
    SweepInterrupted when trials are left unfinished (Ctrl-C, the cluster went away)."""
    pending = {r.id for r in record.trials if r.state == "pending"}
    todo = [t for t in trials if t.id in pending]
    record.sessions += 1
    record.write(root)
    progress = Progress(record, quiet=quiet)
    if len(todo) < len(trials):
        progress.line(f"{len(trials) - len(todo)} of {len(trials)} trials already ended; "
                      f"running the other {len(todo)}")
    t0 = time.perf_counter()
    try:
        if todo:
            executor.run(todo, root, _Keeper(record, root, progress))
    except KeyboardInterrupt:
        pass                           # what is unfinished is marked below
    finally:
        progress.close()
        record.total_seconds = round(record.total_seconds + time.perf_counter() - t0, 1)
        left = [r for r in record.trials if r.state in ("pending", "running")]
        for r in left:
            r.state = "interrupted"
        record.write(root)
        summary.write_all(record, root)
    if left:
        raise SweepInterrupted(root, len(left))
    return record


def result_json(record: SweepRecord, root: Path) -> dict[str, Any]:
    """The `--json` object: every trial and every group (best first)."""
    trials = [{"id": r.id, "model": r.model, "settings": {"model": r.model, **r.settings},
               "seed": r.seed, "state": r.state,
               "test_accuracy": r.metrics.test_accuracy if r.metrics else None,
               "test_loss": r.metrics.test_loss if r.metrics else None,
               "run_dir": str(root / r.run_dir), "node": r.node, "attempts": r.attempts,
               "seconds": r.seconds} for r in record.trials]
    return {"sweep_dir": str(root), "executor": record.executor, "counts": record.counts(),
            "total_seconds": record.total_seconds, "trials": trials,
            "groups": [g.to_dict() for g in summary.groups(record)],
            "summary_md": str(root / summary.MD)}
