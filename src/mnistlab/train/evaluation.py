"""A finished run's model, ready to evaluate on its own dataset: what ``mnistlab evaluate``, the
ensembles and the report's reused runs all start from.

    run = load_run("runs/cnn-seed-s0")            # LoadedRun: model, config, precision, dataset
    result = evaluate_run("runs/cnn-seed-s0")     # EvalResult: test loss and accuracy
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

# Through the package (see train.fit): mnistlab.runs may be mid-import when this module loads.
# (Not named evaluate.py: that would shadow mnistlab.train.evaluate, the function.)
from mnistlab import runs
from mnistlab.train.data import load_split
from mnistlab.train.device import to_device
from mnistlab.train.phases import evaluate
from mnistlab.train.precision import prepare_model


@dataclass
class LoadedRun:
    run_dir: Path
    model: nn.Module          # eval mode, in the memory layout it trained in (same kernels)
    config: runs.RunConfig
    precision: str            # as trained: fp32 | bf16
    dataset: str              # mnist | fashion-mnist
    progress: runs.RunProgress | None = None   # how far training got (None: not a train run)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # the model's


def load_run(run: str | os.PathLike[str], device: torch.device | None = None) -> LoadedRun:
    """The run folder ``run`` (a path or a name under the runs folder), its model prepared for
    the precision it trained in; UserError for anything that is not a readable run. The
    weights load on the CPU, then move to ``device`` (default: the CPU)."""
    device = device if device is not None else torch.device("cpu")
    run_dir = runs.resolve_run(run)
    model = runs.load_model(run_dir).to(device)
    config = runs.read_config(run_dir)
    return LoadedRun(run_dir=run_dir, model=prepare_model(model, config.precision, config.engine),
                     config=config, precision=config.precision, dataset=config.dataset,
                     progress=runs.run_progress(run_dir), device=device)


@dataclass
class EvalResult:
    run: LoadedRun
    test_accuracy: float
    test_loss: float          # mean cross-entropy, nats
    test_images: int
    steps: int                # evaluation batches
    seconds: float

    def to_dict(self) -> dict[str, str | int | float | bool | None]:
        """What ``mnistlab evaluate --json`` prints."""
        progress = self.run.progress
        return {"test_accuracy": self.test_accuracy, "test_loss": self.test_loss,
                "model": self.run.config.model, "dataset": self.run.dataset,
                "precision": self.run.precision, "device": self.run.device.type,
                "test_images": self.test_images,
                "seconds": round(self.seconds, 3), "run_dir": str(self.run.run_dir),
                # an unfinished run's model is that of its last saved epoch, not the final one
                "finished": progress.finished if progress is not None else True,
                "epochs_done": progress.epochs_done if progress is not None else None,
                "epochs_planned": progress.epochs_planned if progress is not None else None}


def evaluate_run(run: str | os.PathLike[str] | LoadedRun, *, test_limit: int = 0,
                 batch_size: int = 32) -> EvalResult:
    """Test loss and accuracy of a run's model on its dataset's test set (the first
    ``test_limit`` images; 0: all), in batches of ``batch_size`` (Keras's default: 32)."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    x_test, y_test = to_device(loaded.device, *load_split(loaded.dataset, "test", test_limit))
    result = evaluate(loaded.model, x_test, y_test, batch_size=batch_size,
                      precision=loaded.precision, device=loaded.device.type)
    return EvalResult(run=loaded, test_accuracy=result["test_accuracy"],
                      test_loss=result["test_loss"], test_images=int(result["images"]),
                      steps=int(result["steps"]), seconds=result["seconds"])
