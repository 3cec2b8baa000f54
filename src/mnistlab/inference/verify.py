"""Touching digits read by the model: segmentation verified by recognition.

    layout = verified(read_layout(gray), lambda x: judgement(predictor, x))

``number`` cuts a stroke as wide as touching digits into units wherever two digits might meet
(``Layout.segments``: each unit alone and runs of neighbouring units), and proposes the ink's
own reading. Ink alone is a poor judge: touching digits overlap, so the thinnest column is
rarely their border, and a digit written broadly (a wide 4, 0, 6 or 7) has thin columns too.
The model knows which reading makes sense: every candidate digit is read in one batch, and the
reading kept is the one whose digits the model reads most surely *on average*, the geometric
mean of their top probabilities (the likeliest reading of each length by dynamic programming
over where its digits end, then the best mean over the lengths).

The mean, not the product: a product of probabilities falls with every digit added, so it
favours reading touching digits as one, and an overconfident model reads a touching "47"
squeezed into one 28x28 as a 4 at 0.998. A mean compares readings of different lengths
fairly: "4" at 0.998 against a 4 and a 7 at 0.996 each. Chosen on numbers composed of the
first 2,000 MNIST test digits (300 of each kind, a 5-epoch seed CNN): touching numbers read
whole 13 times with the product and the ink's cuts, 61 with the units and the mean; numbers
with gaps 276 and 275, single digits 292 both, digits stretched 1.3-1.8 times 285 and 281.
Cutting narrower strokes too (over 0.9 of their height) read 86 touching numbers, but a small
FC model then cut single wide digits in two ("5" as "62"); the units stop at the ink's width.

How surely is not the whole verdict: a softmax says which digit a piece is nearest, not how
near, and half a 0 or two digits squeezed into one 28x28 can still read at 0.99. Where the run
is calibrated, its typicality fit (``train.typicality``) says how far each candidate lies from
the digits the model learnt: the squared Mahalanobis distance to the nearest class, over the run's
"far" threshold (the distance only 1% of validation digits exceed). A candidate's score is its
log top probability less ``DISTANCE_WEIGHT`` times that ratio: a reading of pieces that look like
digits beats one of pieces that merely get a confident answer. Chosen on numbers composed of
MNIST validation digits (the 5,000 a 3-epoch seed CNN held out; 300 numbers of each kind, and
300 single digits alone and stretched 1.3-1.8 times): touching numbers read whole 56 -> 65 at a
weight of 2 (67 at 4, 65 with a log penalty, 57 with one only beyond the threshold), numbers
with gaps 279, single digits 292 and stretched ones 272 unchanged; a second draw of numbers and
digits, 81 -> 86 touching, gaps 286 -> 287, singles 294 -> 293, stretched 269 both. A saved
ensemble weighs its members' distances, each over its own threshold, by their weights; an
uncalibrated run or an export without features is judged by its probabilities alone, as before.

A tie keeps the ink's reading, and so does a model that answers NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mnistlab.inference.marks import digits_before
from mnistlab.inference.number import Layout

DISTANCE_WEIGHT = 2.0   # log-probability given up per unit of distance over the far threshold


@dataclass(frozen=True)
class Judgement:
    """What the model says of each candidate digit."""

    proba: np.ndarray                  # (N, 10) probabilities, as predict gives them
    distance: np.ndarray | None        # (N,) squared Mahalanobis distance to the nearest class
                                       # over the run's far threshold; None: not calibrated


# (N, 28, 28) images -> their Judgement, or their (N, 10) probabilities alone
Judge = Callable[[np.ndarray], Judgement | np.ndarray]


def verified(layout: Layout, judge: Judge) -> Layout:
    """``layout`` read as the model reads its touching digits most surely; one call of
    ``judge`` on every candidate digit (none when no stroke was cut into units)."""
    if not layout.undecided:
        return layout
    said = judge(np.stack([s.piece.pre.image for s in layout.segments]))
    if not isinstance(said, Judgement):
        said = Judgement(np.asarray(said), None)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.log(np.max(said.proba, axis=1))
        if said.distance is not None:
            log_p = log_p - DISTANCE_WEIGHT * np.asarray(said.distance, dtype=np.float64)
    if not np.isfinite(log_p).all():              # a broken model, or a zero: the ink decides
        return layout
    reading = _likeliest(layout, log_p.tolist())
    if _mean(log_p, reading) <= _mean(log_p, layout.reading):
        return layout                               # a tie keeps the ink's reading
    lefts = [layout.segments[i].piece.bbox[1] for i in reading]
    marks = [replace(m, before=digits_before(m.bbox[1], lefts)) for m in layout.marks]
    return replace(layout, reading=reading, marks=marks)


def _mean(log_p: np.ndarray, reading: list[int]) -> float:
    return float(np.mean(log_p[reading]))


def _likeliest(layout: Layout, log_p: list[float]) -> list[int]:
    """The reading (segment indices, left to right) with the best mean log probability: for
    each length n, the best sum of n segments covering the units (dynamic programming over
    where the digits end), then the best sum / n."""
    units = layout.units
    ending: list[list[int]] = [[] for _ in range(units + 1)]
    for k, seg in enumerate(layout.segments):
        ending[seg.stop].append(k)
    # best[n][stop]: the best sum of n segments covering units 0 .. stop - 1; back: the last
    best = np.full((units + 1, units + 1), -np.inf)
    back = np.full((units + 1, units + 1), -1)
    best[0][0] = 0.0
    for stop in range(1, units + 1):
        for k in ending[stop]:
            start = layout.segments[k].start
            score = best[:-1, start] + log_p[k]         # n - 1 digits before it, for each n
            better = score > best[1:, stop]
            best[1:, stop][better] = score[better]
            back[1:, stop][better] = k
    counts = np.arange(1, units + 1)
    n = int(counts[np.argmax(best[1:, units] / counts)])
    reading, stop = [], units
    while stop > 0:
        k = int(back[n][stop])
        reading.append(k)
        stop, n = layout.segments[k].start, n - 1
    return reading[::-1]
