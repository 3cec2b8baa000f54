"""What the training stages hand to the analysis: the images the study uses, and each trained
model with its test-set probabilities.

    data = StudyData.load(limit=0, test_limit=0)   # all 60,000 / 10,000 images
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mnistlab.data import load_dataset
from mnistlab.runs import HistoryRow, RunMetrics
from mnistlab.train.config import TrainConfig
from mnistlab.train.data import load_tensors


@dataclass(frozen=True)
class StudyData:
    """The training and test images every model of the report sees."""

    x_train: torch.Tensor       # float (N_train, 1, 28, 28) in [0, 1]
    y_train: torch.Tensor       # int64 (N_train,)
    x_test: torch.Tensor        # float (N_test, 1, 28, 28) in [0, 1]
    y_test: torch.Tensor        # int64 (N_test,)
    test_images: np.ndarray     # uint8 (N_test, 28, 28): the same test images, for drawing
    test_labels: np.ndarray     # uint8 (N_test,)

    @classmethod
    def load(cls, *, limit: int = 0, test_limit: int = 0) -> StudyData:
        """MNIST cut to the first ``limit`` training and ``test_limit`` test images (0: all)."""
        x_train, y_train, x_test, y_test = load_tensors(TrainConfig(limit=limit,
                                                                    test_limit=test_limit))
        test_images, test_labels = load_dataset("mnist", "test")
        n_test = len(x_test)
        return cls(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
                   test_images=np.asarray(test_images[:n_test]),
                   test_labels=np.asarray(test_labels[:n_test]))

    def labels(self) -> np.ndarray:
        """The test labels as int64 (N_test,), what the analysis compares predictions with."""
        return np.asarray(self.y_test.numpy(), dtype=np.int64)


@dataclass
class Trained:
    """One finished training run and what the report measures on it."""

    model: str
    seed: int
    run_dir: Path
    metrics: RunMetrics                # the run's metrics.json
    history: list[HistoryRow]          # the run's history.json
    probs: np.ndarray                  # (N_test, 10) softmax on the test images
    train_eval: dict[str, float]       # the finished model re-measured on its training images
