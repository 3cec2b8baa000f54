"""Numbers about trained models: spread over seeds, confusion, calibration, chosen samples.

Pure functions on numpy arrays, returning small frozen dataclasses (``Summary``, ``McNemar``,
``ConfusedPair``, ``Calibration``, ``SampleStats``); no torch, no files, no printing. The report
calls these, so each metric is computed in one place; ``to_dict()`` gives report.json's form.

Conventions: accuracies are fractions in [0, 1]; ``probs`` is (N, 10) softmax output;
``labels`` and predictions are integer class ids (N,).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from mnistlab.models.shapes import NUM_CLASSES
from mnistlab.report.record import Json, Record

# --- spread over seeds ---------------------------------------------------------------------

@dataclass(frozen=True)
class Summary(Record):
    """Mean, sample standard deviation and a two-sided t confidence interval of the mean.

    With a single value the spread is unknown: ``std``, ``ci_low``, ``ci_high`` are None.
    """

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None
    confidence: float

    @property
    def half_width(self) -> float | None:
        return None if self.ci_high is None else (self.ci_high - self.ci_low) / 2

    def to_dict(self) -> dict[str, Json]:
        return {**super().to_dict(), "half_width": self.half_width}


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean +- t-interval over independent repeats (seeds): ``mean +- t_{n-1} * std / sqrt(n)``."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"need a non-empty 1-D sequence of values, got shape {x.shape}")
    mean = float(x.mean())
    if len(x) < 2:
        return Summary(1, mean, None, None, None, confidence)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, df=len(x) - 1) * std / math.sqrt(len(x)))
    return Summary(len(x), mean, std, mean - half, mean + half, confidence)


def paired_difference(a: Sequence[float], b: Sequence[float],
                      confidence: float = 0.95) -> Summary:
    """Summary of ``b - a`` paired by position (seed i of model b against seed i of model a).

    Pairing removes what the two runs of one seed share (same data order, same machine), so its
    interval is the honest one for "how much better is b than a".
    """
    a_arr, b_arr = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"paired values need equal shapes, got {a_arr.shape} and {b_arr.shape}")
    return summarize(b_arr - a_arr, confidence)


def proportion_interval(correct: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval of an accuracy measured on ``total`` test images (test-set sampling)."""
    ci = stats.binomtest(int(correct), int(total)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class McNemar(Record):
    """Exact McNemar test of two models on the same images: how many only each got right."""

    only_a_correct: int
    only_b_correct: int
    p_value: float

    @property
    def disagreements(self) -> int:
        return self.only_a_correct + self.only_b_correct


def mcnemar_p(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """Exact McNemar test on paired per-image correctness of two models on the same test set.

    Only the images where the models disagree carry information: ``only_a`` right vs ``only_b``
    right; under "equally accurate" each is Binomial(n, 1/2).
    """
    ca, cb = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((ca & ~cb).sum()), int((~ca & cb).sum())
    n = only_a + only_b
    p = 1.0 if n == 0 else float(stats.binomtest(only_b, n, 0.5).pvalue)
    return McNemar(only_a, only_b, p)


def train_test_gap(metrics: Mapping[str, float]) -> float:
    """Train accuracy minus test accuracy (positive: better on the images it trained on)."""
    return float(metrics["train_accuracy"]) - float(metrics["test_accuracy"])


# --- errors by class -----------------------------------------------------------------------

def confusion_matrix(labels: np.ndarray, preds: np.ndarray,
                     num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and predictions {preds.shape} differ in shape")
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each true class (diagonal / row total); NaN for a class absent from the data."""
    totals = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)


@dataclass(frozen=True)
class ConfusedPair(Record):
    """One off-diagonal cell of a confusion matrix: ``count`` images of digit ``true`` read
    as ``pred``."""

    true: int
    pred: int
    count: int


def most_confused_pairs(cm: np.ndarray, k: int = 5) -> list[ConfusedPair]:
    """The ``k`` largest off-diagonal cells, largest first.

    Ties break by (true, pred) so the list is deterministic.
    """
    off = cm.copy()
    np.fill_diagonal(off, 0)
    cells = [(-int(off[t, p]), t, p) for t in range(off.shape[0]) for p in range(off.shape[1])
             if off[t, p] > 0]
    cells.sort()
    return [ConfusedPair(t, p, -c) for c, t, p in cells[:k]]


# --- calibration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CalibrationBin(Record):
    """Predictions whose confidence lies in (low, high]; accuracy and mean confidence are None
    for an empty bin."""

    low: float
    high: float
    count: int
    accuracy: float | None
    confidence: float | None


@dataclass(frozen=True)
class Calibration(Record):
    """Expected calibration error (a fraction) over ``n_bins`` equal-width confidence bins."""

    ece: float
    n_bins: int
    mean_confidence: float
    accuracy: float
    share_confident_99: float              # share of predictions at >= 99% confidence
    accuracy_confident_99: float | None    # their accuracy; None when there are none
    bins: list[CalibrationBin]


def calibration(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> Calibration:
    """Expected calibration error over equal-width confidence bins, and the bins themselves.

    confidence = max probability; ECE = sum over bins of (bin share) * |accuracy - confidence|.
    Also the share of predictions at >= 99% confidence and how often those are right: the
    direct test of "extremely confident, and rightly so".
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; confidence is >= 1/10, so bin 0's open left edge is moot.
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins: list[CalibrationBin] = []
    ece = 0.0
    for i in range(n_bins):
        mask = which == i
        count = int(mask.sum())
        acc = float(correct[mask].mean()) if count else None
        mean_conf = float(conf[mask].mean()) if count else None
        if count:
            ece += count / len(conf) * abs(acc - mean_conf)
        bins.append(CalibrationBin(float(edges[i]), float(edges[i + 1]), count, acc,
                                   mean_conf))
    high = conf >= 0.99
    return Calibration(
        ece=float(ece),
        n_bins=n_bins,
        mean_confidence=float(conf.mean()),
        accuracy=float(correct.mean()),
        share_confident_99=float(high.mean()),
        accuracy_confident_99=float(correct[high].mean()) if high.any() else None,
        bins=bins,
    )


# --- chosen samples ------------------------------------------------------------------------

def grid_indices(n_total: int, n: int = 20, seed: int = 0) -> np.ndarray:
    """``n`` test-image indices drawn without replacement by a fixed seed, in ascending order.

    A random draw (not the first ``n`` images) so the grid is a fair sample; a fixed seed so the
    same images appear in every report and every model is shown the same ones.
    """
    if n > n_total:
        raise ValueError(f"cannot pick {n} images out of {n_total}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_total, size=n, replace=False))


def most_confident_mistakes(probs: np.ndarray, labels: np.ndarray, k: int = 20) -> np.ndarray:
    """Indices of the (up to) ``k`` wrong predictions with the highest confidence, highest first."""
    probs = np.asarray(probs)
    wrong = np.flatnonzero(probs.argmax(axis=1) != np.asarray(labels))
    conf = probs[wrong].max(axis=1)
    order = np.lexsort((wrong, -conf))  # by confidence descending, then index: deterministic
    return wrong[order[:k]]


@dataclass(frozen=True)
class SampleStats(Record):
    """Accuracy and confidence on a handful of images (the prediction grid)."""

    n: int
    correct: int
    accuracy: float
    mean_confidence: float
    shown_as_100: int     # predictions that print as "100%" at whole percents


def sample_stats(probs: np.ndarray, labels: np.ndarray) -> SampleStats:
    """Accuracy and confidence on a handful of images (the prediction grid)."""
    probs = np.asarray(probs)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(labels)
    return SampleStats(
        n=len(labels),
        correct=int(correct.sum()),
        accuracy=float(correct.mean()),
        mean_confidence=float(conf.mean()),
        # "100% confidence" as the seed's grid prints it: rounds to 100 at whole percents.
        shown_as_100=int((np.round(conf * 100) >= 100).sum()),
    )
