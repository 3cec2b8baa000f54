"""The report's seed trainings through the sweep's machinery (``mnistlab report --executor``).

    train_report_runs([(config, run_dir), ...], executor="ray", address=None)

Each (TrainConfig, run folder) pair becomes one trial whose folder is exactly the report's
(``<out>/runs/<model>-seed<N>``); the report then reads the finished folders as it reads the
ones it trains itself. ``local`` (the default) needs none of this: the report trains in-process.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from mnistlab import console, runs
from mnistlab.errors import UserError
from mnistlab.sweep.executor import RayExecutor, RaySettings, require_ray
from mnistlab.sweep.spec import TrialSpec
from mnistlab.sweep.trial import TrialOutcome
from mnistlab.train.config import TrainConfig

EXECUTORS = ("local", "ray")


class _Errors:
    """A sink that only collects what went wrong (the report prints its own stages)."""

    def __init__(self) -> None:
        self.failed: dict[str, str] = {}
        self.finished_ids: set[str] = set()

    def started(self, trial_id: str) -> None: ...
    def epoch(self, trial_id: str, node: str, row: runs.HistoryRow) -> None: ...
    def retrying(self, trial_id: str, reason: str) -> None:
        console.say(f"{trial_id}: worker lost ({reason}); retrying from its checkpoint")

    def finished(self, outcome: TrialOutcome) -> None:
        if outcome.metrics is None:
            self.failed[outcome.id] = outcome.error or "failed"
        else:
            self.finished_ids.add(outcome.id)
            console.say(f"{outcome.id}: test accuracy {100 * outcome.metrics.test_accuracy:.2f}%"
                        f" ({outcome.seconds:.0f} s on {outcome.node})")

    def lost(self, trial_id: str, reason: str) -> None:
        self.failed[trial_id] = reason

    def stopped(self, trial_id: str) -> None:
        self.failed[trial_id] = "stopped"


def check_executor(executor: str, address: str | None = None) -> None:
    if executor not in EXECUTORS:
        raise UserError(f"unknown --executor {executor!r}; choose local or ray")
    if executor == "ray":
        require_ray(local=address is None)


def train_report_runs(jobs: list[tuple[TrainConfig, Path]], *, executor: str,
                      address: str | None = None, reuse: bool = False) -> None:
    """Train every (config, run folder) on ``executor`` (only "ray" gets here), one Ray CPU per
    config thread; folders that ``reuse`` allows keeping are left alone by run_trial."""
    check_executor(executor, address)
    root = jobs[0][1].parent
    if any(run_dir.parent != root for _, run_dir in jobs):
        raise UserError("the report's runs must share one folder")
    threads = max(1, max(c.threads for c, _ in jobs))
    trials = []
    for config, run_dir in jobs:
        if run_dir.exists() and not reuse:     # a previous report's run: trained afresh
            shutil.rmtree(run_dir)
        trials.append(TrialSpec(id=run_dir.name, model=config.model, seed=config.seed,
                                settings={}, config=replace(config, threads=threads)))
    # a report on cuda: each trial asks Ray for one GPU (Ray hides the GPUs from the others)
    gpus = 1.0 if any(c.device == "cuda" for c, _ in jobs) else 0.0
    ray = RayExecutor(RaySettings(address=address, threads_per_trial=threads,
                                  gpus_per_trial=gpus))
    try:
        root.mkdir(parents=True, exist_ok=True)
        ray.check_storage(root)
        errors = _Errors()
        ray.run(trials, root, errors)
    finally:
        ray.close()
    left = [t.id for t in trials if t.id not in errors.finished_ids and t.id not in errors.failed]
    if left or "stopped" in errors.failed.values():
        # Ray Tune takes Ctrl-C itself, stops the trials and returns: the report went on,
        # trained them again here and wrote over the earlier report, exit 0
        raise KeyboardInterrupt(f"{len(left) or len(errors.failed)} report training(s) "
                                "stopped on Ray")
    if errors.failed:
        raise UserError("report trainings failed on Ray: " + "; ".join(
            f"{k}: {v}" for k, v in sorted(errors.failed.items())))




