"""Touching digits read by the model: segmentation verified by recognition.

    layout = verified(read_layout(gray, split_width=split_width(predictor)),
                      lambda x: judgement(predictor, x))

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
the digits the model learnt: the squared Mahalanobis distance to the nearest class, over the
run's "far" threshold (the distance only 1% of validation digits exceed). A saved ensemble
weighs its members' distances, each over its own threshold, by their weights. Such a model can
tell half a digit from a digit, so it is also offered narrower strokes to cut
(``number.JUDGED_SPLIT_WIDTH``), and each candidate's score is then the log of a logistic
model's probability that it is one digit of the right reading (``JUDGE``): from its log top
probability, its distance, and its height over the tallest candidate's (a piece of a digit is
often shorter than the line; a whole digit rarely is). The model was fitted on the candidates
of numbers composed of the first 2,500 of the 5,000 MNIST validation digits a 3-epoch seed CNN
held out (300 touching numbers, 300 with gaps, 300 single digits alone and stretched 1.3-1.8
times; a candidate is right where it lies on a reading that spells the number), and measured on
the other 2,500 (a new draw of each kind), against the distance penalty it replaces (the log
top probability less 2 x the distance, strokes cut from 1.25 times their height):

    touching numbers read whole    84 -> 99 of 300 (111 and 131: those the candidates allow)
    numbers with gaps             287 -> 286
    single digits                 297 -> 297
    stretched single digits       278 -> 286

(on the first half 80 -> 95, 281 -> 280, 292 -> 290, 258 -> 268). Adding the second
probability, how many units a candidate joins or its width reads no better on the second half.
An uncalibrated run or an export without features is judged by its log top probability alone,
on the strokes ``number.SPLIT_WIDTH`` offers, as before.

A tie keeps the ink's reading, and so does a model that answers NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mnistlab.inference.marks import digits_before
from mnistlab.inference.number import Layout


@dataclass(frozen=True)
class JudgeWeights:
    """A logistic model of whether a candidate is one digit of the right reading."""

    confidence: float       # per unit of log top probability
    distance: float         # per unit of squared distance over the far threshold
    height: float           # per unit of its height over the tallest candidate's
    bias: float

    def log_probability(self, log_p: np.ndarray, distance: np.ndarray, height: np.ndarray
                 ) -> np.ndarray:
        """The log of each candidate's probability of being one right digit: log sigmoid of
        the weighted sum."""
        z = self.confidence * log_p + self.distance * distance + self.height * height + self.bias
        return -np.logaddexp(0.0, -z)


JUDGE = JudgeWeights(confidence=3.4, distance=-2.9, height=3.3, bias=-1.5)


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
            boxes = np.array([s.piece.bbox for s in layout.segments], dtype=np.float64)
            heights = boxes[:, 2] - boxes[:, 0]
            log_p = JUDGE.log_probability(log_p, np.asarray(said.distance, dtype=np.float64),
                                          heights / heights.max())
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
