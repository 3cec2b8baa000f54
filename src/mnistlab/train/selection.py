"""Choosing an ensemble on held-out images: members, weights, test-time shifts, temperature.

Every choice is made on a validation split that no member trained on; the test set is not
an input to anything here. The method is greedy ensemble selection with replacement
(Caruana et al., "Ensemble selection from libraries of models", ICML 2004): start from the
best few candidates (sorted initialisation), add whichever candidate (again, if need be)
makes the best mix, for a fixed number of rounds, and keep the best mix met on the way; a
member chosen k times out of n gets weight k / n.

The score is the validation cross-entropy at its best temperature: a proper scoring rule,
far less noisy than the 10-20 errors a strong model makes on 5,000 images, and blind to
the confidence scale that label smoothing gives a model (T is refitted for each trial mix).

    score = calibrated_nll(probabilities, labels)
    picks = greedy_select([p_a, p_b, p_c], labels)          # e.g. [0, 2, 0]
    weights = pick_weights(picks, 3)                        # [2/3, 0, 1/3]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mnistlab.train.calibration import fit_temperature, nll

MAX_PICKS = 25                      # greedy rounds at most (weights in steps of 1/25 or finer)
# Test-time augmentation: the image itself and its shifts by one pixel (no flips: a flipped
# 2 is not a 2). Shifted copies are zero-padded, not wrapped round.
SHIFTS: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))
NO_SHIFTS: tuple[tuple[int, int], ...] = ((0, 0),)


def shift_images(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """x (N, C, H, W) moved dy rows down and dx columns right, zeros where it came from."""
    if dy == 0 and dx == 0:
        return x
    h, w = x.shape[-2:]
    padded = F.pad(x, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)))
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top:top + h, left:left + w]


def log_probabilities(probabilities: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None))


def calibrated_fit(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(mean cross-entropy in nats after the best temperature, that temperature)."""
    logits = log_probabilities(probabilities)
    temperature = fit_temperature(logits, labels)
    return nll(logits, labels, temperature), temperature


def calibrated_nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy (nats) of the probabilities after the best temperature."""
    return calibrated_fit(probabilities, labels)[0]


def greedy_select(probabilities: Sequence[np.ndarray], labels: np.ndarray, *,
                  max_picks: int = MAX_PICKS) -> list[int]:
    """Candidate indices chosen (with repeats); never empty.

    Sorted initialisation: the n best candidates alone, n the count whose plain average
    scores best. Then hill-climbing with replacement: each round adds the candidate that
    makes the best mix, even when it does not help, so that a dip can be climbed out of;
    the shortest prefix with the best score is what is returned."""
    if not probabilities:
        raise ValueError("ensemble selection needs at least one candidate")
    order = np.argsort([calibrated_nll(p, labels) for p in probabilities], kind="stable")
    total = np.zeros_like(np.asarray(probabilities[0], dtype=np.float64))
    starts = []
    for n, i in enumerate(order, start=1):
        total += probabilities[i]
        starts.append(calibrated_nll(total / n, labels))
    first = int(np.argmin(starts)) + 1
    picks = [int(i) for i in order[:first]]
    total = np.sum([probabilities[i] for i in picks], axis=0, dtype=np.float64)
    best, best_len = starts[first - 1], first
    while len(picks) < max(max_picks, first):
        n = len(picks) + 1
        scores = [calibrated_nll((total + p) / n, labels) for p in probabilities]
        i = int(np.argmin(scores))
        picks.append(i)
        total += probabilities[i]
        if scores[i] < best - 1e-9:
            best, best_len = scores[i], len(picks)
    return picks[:best_len]


def pick_weights(picks: Sequence[int], candidates: int) -> list[float]:
    """Weight of each candidate: the share of the picks that chose it."""
    counts = np.bincount(np.asarray(picks, dtype=np.int64), minlength=candidates)
    return [float(c) / len(picks) for c in counts]


def weighted_mean(probabilities: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """Sum of weight * probabilities over the candidates with a weight above 0; every array
    must have the same shape (N, C)."""
    if not probabilities:
        raise ValueError("an ensemble needs at least one member")
    shapes = {np.shape(p) for p in probabilities}
    if len(shapes) != 1:
        raise ValueError(f"members disagree on shape: {sorted(shapes)}")
    mix = np.zeros_like(np.asarray(probabilities[0], dtype=np.float64))
    for p, w in zip(probabilities, weights, strict=True):
        if w > 0:
            mix += w * p
    return mix
