"""Ensembles: average the class probabilities of several trained runs.

    result = evaluate_ensemble(["runs/best-s0", "runs/best-s1", "runs/best-s2"])
    result.test_accuracy                   # accuracy of the averaged probabilities

Averaging probabilities (not logits, not votes) is the usual choice for models trained alike:
it needs no calibration and breaks ties by confidence.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mnistlab.errors import UserError
from mnistlab.train.data import load_split
from mnistlab.train.evaluation import load_run
from mnistlab.train.phases import predict_proba


def average_probabilities(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of K arrays of shape (N, C) -> (N, C); every array must have the same shape."""
    if not probabilities:
        raise ValueError("an ensemble needs at least one member")
    shapes = {p.shape for p in probabilities}
    if len(shapes) != 1:
        raise ValueError(f"members disagree on shape: {sorted(shapes)}")
    return np.mean(np.stack(probabilities), axis=0)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float((probabilities.argmax(1) == labels).mean())


@dataclass
class Member:
    run_dir: str
    test_accuracy: float


@dataclass
class EnsembleResult:
    test_accuracy: float                   # of the averaged probabilities
    test_loss: float                       # their mean cross-entropy, nats
    members: list[Member]
    dataset: str
    test_images: int
    mean_member_accuracy: float

    def to_dict(self) -> dict[str, object]:
        """What ``mnistlab evaluate --ensemble --json`` prints."""
        return asdict(self)


def evaluate_ensemble(run_dirs: Sequence[str | os.PathLike[str]], *, test_limit: int = 0
                      ) -> EnsembleResult:
    """Test accuracy and loss of the averaged model, and of each member alone."""
    if len(run_dirs) < 2:
        raise UserError("an ensemble needs at least two runs; give --ensemble RUN RUN ...")
    loaded = [load_run(r) for r in run_dirs]
    datasets = {run.dataset for run in loaded}
    if len(datasets) != 1:
        raise UserError(f"the runs were trained on different datasets ({', '.join(datasets)}); "
                        "an ensemble needs runs of one dataset")
    dataset = datasets.pop()
    x_test, y_test = load_split(dataset, "test", test_limit)
    labels = y_test.numpy()
    members, probs = [], []
    for run in loaded:
        p = predict_proba(run.model, x_test, batch_size=1000, precision=run.precision)  # (N, 10)
        probs.append(p)
        members.append(Member(run_dir=str(run.run_dir), test_accuracy=accuracy(p, labels)))
    mean = average_probabilities(probs)
    picked = np.clip(mean[np.arange(len(labels)), labels], 1e-12, None)
    return EnsembleResult(
        test_accuracy=accuracy(mean, labels), test_loss=float(-np.log(picked).mean()),
        members=members, dataset=dataset, test_images=len(labels),
        mean_member_accuracy=float(np.mean([m.test_accuracy for m in members])))
