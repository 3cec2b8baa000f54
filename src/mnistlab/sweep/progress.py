"""The sweep's terminal view: one bar of finished trials with running / failed counts, the
best test accuracy so far, elapsed and estimated time left (tqdm, through mnistlab.console),
and one plain line per finished trial (for logs and pipes, where the bar is silent)."""

from __future__ import annotations

import time

from mnistlab import console
from mnistlab.sweep.record import SweepRecord


class Progress:
    def __init__(self, record: SweepRecord, *, quiet: bool = False) -> None:
        self.record, self.quiet = record, quiet
        self.start = time.perf_counter()
        counts = record.counts()
        self.already = counts["done"] + counts["failed"] + counts["stopped"]
        self.bar = console.progress(total=len(record.trials), desc="sweep", unit="trial",
                                    leave=True, initial=self.already)
        self.refresh()

    def line(self, text: str) -> None:
        if not self.quiet:
            console.say(text)

    def refresh(self) -> None:
        c = self.record.counts()
        finished = c["done"] + c["failed"] + c["stopped"]
        self.bar.n = finished
        best = max((r.metrics.test_accuracy for r in self.record.trials if r.metrics),
                   default=None)
        self.bar.set_postfix_str(
            f"running {c['running']}, failed {c['failed'] + c['lost']}"
            + (f", best {100 * best:.2f}%" if best is not None else ""), refresh=False)
        self.bar.refresh()

    def eta(self) -> float | None:
        """Seconds left, from this session's pace (trials finished per second)."""
        c = self.record.counts()
        done_now = c["done"] + c["failed"] + c["stopped"] - self.already
        left = len(self.record.trials) - (c["done"] + c["failed"] + c["stopped"])
        if done_now <= 0:
            return None
        return (time.perf_counter() - self.start) / done_now * left

    def finished(self, trial_id: str) -> None:
        r = self.record.trial(trial_id)
        c = self.record.counts()
        eta = self.eta()
        what = (f"test accuracy {100 * r.metrics.test_accuracy:.2f}%" if r.metrics
                else f"{r.state}" + (f": {r.error}" if r.error else ""))
        self.line(f"[{c['done'] + c['failed'] + c['stopped']}/{len(self.record.trials)}] "
                  f"{trial_id}: {what} ({r.seconds:.0f} s on {r.node}"
                  + (f", {r.attempts} attempts" if r.attempts > 1 else "") + ")"
                  + (f"; about {eta:.0f} s left" if eta is not None else ""))
        self.refresh()

    def close(self) -> None:
        self.bar.close()
