"""Training: one typed config, presets, a loop in named phases, numbers returned, not printed.

    config = TrainConfig(model="cnn", **preset_overrides("seed", "cnn"))
    result = fit(config, run_dir)                 # trains, checkpoints each epoch, writes the run
    evaluate(model, x, y)                         # {"test_loss": ..., "test_accuracy": ...}
    predict_proba(model, images)                  # np.ndarray (N, 10), rows sum to 1
    evaluate_run("runs/cnn-seed-s0")              # a saved run on its own test set

Modules: ``config`` (TrainConfig and its validation), ``presets`` (named recipes), ``data``
(a dataset's tensors), ``build`` (model, optimizer, schedule), ``precision`` (precision and
engine), ``phases`` (one epoch, evaluate, predict), ``fit`` (the run), ``resume`` (checkpoints),
``evaluation`` (a saved run, ready to evaluate), ``callbacks`` (what a run shows while it
runs), ``ensemble`` (several runs averaged).
"""

from mnistlab.train.build import build, make_optimizer, make_scheduler
from mnistlab.train.config import (
    ENGINES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
    augmenter,
    validate,
)
from mnistlab.train.data import load_split, load_tensors
from mnistlab.train.evaluation import EvalResult, LoadedRun, evaluate_run, load_run
from mnistlab.train.fit import Callback, FitResult, TrainInfo, TrainingInterrupted, fit
from mnistlab.train.phases import TrainingDiverged, evaluate, predict_proba, train_one_epoch
from mnistlab.train.precision import autocast, prepare_model, resolve_engine, resolve_precision

__all__ = [
    "ENGINES", "OPTIMIZERS", "PRECISIONS", "SCHEDULES", "Callback", "EvalResult", "FitResult",
    "LoadedRun", "TrainConfig", "TrainInfo", "TrainingDiverged", "TrainingInterrupted",
    "augmenter", "autocast", "build", "evaluate", "evaluate_run", "fit", "load_run",
    "load_split", "load_tensors", "make_optimizer", "make_scheduler", "predict_proba",
    "prepare_model", "resolve_engine", "resolve_precision", "train_one_epoch", "validate",
]
