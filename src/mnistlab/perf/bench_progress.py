"""A progress bar for each row `mnistlab bench` trains: a row of the seed CNN takes minutes
(205 s for five epochs of autograd fp32 on a 2-core Zen 4), and the row's line is printed only
when it ends.

    fit(config, callbacks=[RowProgress("cnn bf16 fused")])

On standard error, and only on a terminal (``console.progress``), so ``--json`` and piped
output are unchanged.
"""

from __future__ import annotations

from typing import Any

from mnistlab import console
from mnistlab.train.fit import Callback, FitResult


class RowProgress(Callback):
    """One bar over all of a row's training steps, every epoch together."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bar: Any = None

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
        if self.bar is None:
            self.bar = console.progress(total=epochs * steps, desc=self.name, unit="step")
            self.bar.update((epoch - 1) * steps)
        self.bar.set_postfix_str(f"epoch {epoch}/{epochs}", refresh=False)

    def on_step(self, step: int, loss: float, accuracy: float) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_train_end(self, result: FitResult | None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
