"""Touching digits cut on ink, checked by the model: segmentation verified by recognition.

    layout = verified(read_layout(gray), lambda x: predict_proba(predictor, x))

``number`` cuts a stroke wider than touching digits' width where its ink is thin, but a digit
written broadly (a wide 4, 0, 6 or 7) is as wide and has thin columns too: of MNIST's test
4s stretched 1.3-1.8 times, 1 in 6 came back as two digits ("41", "64"). The model knows
which reading makes sense. Each way to read a cut stroke (each piece on its own, or runs of
them as one digit: ``Layout.joins``) is scored by the product of its digits' top
probabilities, the chance that all of them are right if their errors are independent, as
``NumberPrediction.probability`` is; the best is kept, and a tie keeps the cut.

But pieces the model reads surely (``SURE_PIECES`` together) are digits it knows, and their
cut stands: two touching digits squeezed into one 28x28 can look like a digit too, and an
overconfident model reads a touching "47" as a 4 at 0.998 while the 4 and the 7 get 0.996
together. The pieces of a wide digit read far less surely. In a throwaway check (a seed CNN;
MNIST test digits stretched 1.3-1.8 times, and pairs of them overlapping by 4 or 8 px), the
whole read better than its pieces for 30 of 32 wide digits cut on ink, whose pieces read 0.55
together (median, 0.99 at most), and for 5 of 26 touching pairs cut on ink, 3 of them with
pieces read 0.99 or more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from mnistlab.inference.marks import digits_before
from mnistlab.inference.number import Layout

# (N, 28, 28) images -> (N, 10) probabilities: the model, as predict runs it
Judge = Callable[[np.ndarray], np.ndarray]

SURE_PIECES = 0.99      # pieces read this surely together (their top probabilities' product)
                        # keep their cut, however surely the whole reads as one digit


@dataclass(frozen=True)
class _Join:
    """Digits ``start`` to ``stop - 1`` read as one (``layout.joins[index]``), how surely."""

    start: int
    stop: int
    log_p: float
    index: int


def verified(layout: Layout, judge: Judge) -> Layout:
    """``layout`` with each cut kept or undone, whichever the model reads better; one call of
    ``judge`` on the cut pieces and their joins (nothing when no stroke was cut)."""
    if not layout.joins:
        return layout
    involved = sorted({i for j in layout.joins for i in range(j.start, j.stop)})
    images = [layout.digits[i].pre.image for i in involved] + [j.piece.pre.image
                                                              for j in layout.joins]
    with np.errstate(divide="ignore"):
        log_p = np.log(np.max(judge(np.stack(images)), axis=1))
    single = dict(zip(involved, log_p[:len(involved)].tolist(), strict=True))
    joins = []
    for k, (join, p) in enumerate(zip(layout.joins, log_p[len(involved):], strict=True)):
        pieces = sum(single[i] for i in range(join.start, join.stop))
        if pieces < np.log(SURE_PIECES):             # (NaN, a broken model: the cut stands)
            joins.append(_Join(join.start, join.stop, float(p), k))
    return _apply(layout, _best(len(layout.digits), single, joins))


def _best(count: int, single: dict[int, float], joins: list[_Join]) -> list[_Join]:
    """The joins of the likeliest reading of ``count`` digits (dynamic programming over where
    its digits end): ``single`` holds the log probability of each digit scored alone, a digit
    not scored counts 0 whichever way. Ties and NaN keep the cut, as ink alone made it."""
    score = [0.0] * (count + 1)                 # the best reading of the first n digits
    back: list[_Join | None] = [None] * (count + 1)
    for stop in range(1, count + 1):
        score[stop] = score[stop - 1] + single.get(stop - 1, 0.0)
        for join in (j for j in joins if j.stop == stop):
            if score[join.start] + join.log_p > score[stop]:
                score[stop], back[stop] = score[join.start] + join.log_p, join
    made, stop = [], count
    while stop > 0:
        join = back[stop]
        if join is not None:
            made.append(join)
        stop = join.start if join is not None else stop - 1
    return made


def _apply(layout: Layout, joins: list[_Join]) -> Layout:
    """The layout with ``joins`` made: their pieces replaced by the whole, the marks' places
    counted again; no joins left to judge."""
    digits = list(layout.digits)
    for join in joins:                  # right to left (as _best finds them): indices hold
        digits[join.start:join.stop] = [layout.joins[join.index].piece]
    lefts = [d.bbox[1] for d in digits]
    marks = [replace(m, before=digits_before(m.bbox[1], lefts)) for m in layout.marks]
    return Layout(digits, marks)
