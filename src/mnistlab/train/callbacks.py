"""What a training run shows while it runs: a progress bar, the seed's Keras-style lines.

    Epoch 1/5  938/938  5s  3ms/step  accuracy: 0.8467  loss: 0.5667  val_accuracy: ...
    313/313  1s  4ms/step  accuracy: 0.9689  loss: 0.1065

These are fit() callbacks (mnistlab.train.fit.Callback); the training code itself never prints.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from mnistlab import console, runs
from mnistlab.train.fit import Callback, FitResult, TrainInfo


def _timing(seconds: float, steps: int) -> str:
    # Keras rounds the epoch to whole seconds and the step to whole milliseconds.
    return f"{seconds:.0f}s  {1000 * seconds / max(steps, 1):.0f}ms/step"


def epoch_line(row: runs.HistoryRow, epochs: int, evaluated_on: str = "val") -> str:
    """One Keras-style epoch line, as the seed's logs show it. The seed evaluated each epoch
    on the test set as Keras's validation_data, hence "val_"; ``evaluated_on="test"`` names it
    so where a run holds out a validation split of its own, which is not these figures."""
    steps = row.steps or 0
    line = (f"Epoch {row.epoch}/{epochs}  {steps}/{steps}  "
            f"{_timing(row.seconds or 0.0, steps)}  "
            f"accuracy: {row.train_accuracy:.4f}  loss: {row.train_loss:.4f}")
    if row.test_accuracy is not None:  # evaluated this epoch
        line += (f"  {evaluated_on}_accuracy: {row.test_accuracy:.4f}  "
                 f"{evaluated_on}_loss: {row.test_loss:.4f}")
    return line


def eval_line(result: dict[str, Any]) -> str:
    """The seed's ``model.evaluate`` line: ``313/313  1s  4ms/step  accuracy: ...  loss: ...``."""
    steps = result["steps"]
    return (f"{steps}/{steps}  {_timing(result['seconds'], steps)}  "
            f"accuracy: {result['test_accuracy']:.4f}  loss: {result['test_loss']:.4f}")


class KerasLogger(Callback):
    """A tqdm bar during each epoch (terminals only), then one Keras-style line per epoch."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.epochs = 0
        self.evaluated_on = "val"

    def on_train_begin(self, info: TrainInfo) -> None:
        resumed = info.resumed_from
        self.evaluated_on = "test" if info.validation_images else "val"
        console.say(f"{info.model}: {info.parameters:,} parameters, "
                    f"{info.train_images:,} training images, precision {info.precision}, "
                    f"{info.threads} thread(s)"
                    + (f"; resuming after epoch {resumed}" if resumed else ""))

    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs
        self.bar = console.progress(total=steps, desc=f"Epoch {epoch}/{epochs}", unit="step")

    def on_step(self, step: int, loss: float, accuracy: float) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.update(1)
            if step % 50 == 0:
                self.bar.set_postfix(accuracy=f"{accuracy:.4f}", loss=f"{loss:.4f}",
                                     refresh=False)

    def on_epoch_end(self, row: runs.HistoryRow) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        console.say(epoch_line(row, self.epochs, self.evaluated_on))

    def on_train_end(self, result: FitResult | None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TensorBoardLogger(Callback):
    """Event files under ``run_dir/tensorboard`` (needs the optional ``tensorboard`` package)."""

    def __init__(self, run_dir: Path) -> None:
        self.log_dir = Path(run_dir) / "tensorboard"
        self.writer: Any = None

    def on_train_begin(self, info: TrainInfo) -> None:
        # Opened only once fit() has accepted the run folder: a refused run writes nothing.
        from torch.utils.tensorboard import SummaryWriter  # raises ImportError without it

        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def on_epoch_end(self, row: runs.HistoryRow) -> None:
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                    "images_per_second", "lr"):
            value = getattr(row, key)
            if value is not None:
                self.writer.add_scalar(key, value, row.epoch)
        self.writer.flush()

    def on_train_end(self, result: FitResult | None) -> None:
        if self.writer is not None:
            self.writer.close()


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None
