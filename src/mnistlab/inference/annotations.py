"""Marks a writer adds round the writing: a circle or a box drawn round an answer, a line drawn
under a number. They are not digits.

    drop = annotations(mask)     # the pixels of the ink mask that are such marks

* **A ring** (a circle, a hand-drawn box) is a piece that closes round another piece of at
  least RING_INNER of its own height, which it does not touch: the digit inside is kept, the
  ring goes. A 0 or a loop of 6, 8, 9 closes round nothing that big: specks inside are
  dropped as specks anyway.
* **An underline** is a flat piece (at least UNDERLINE_FLAT times as wide as high) below all
  the other ink (its top under their lowest middle), as wide as UNDERLINE_SPAN of their whole
  width, and apart from the ink above it by at least its own height: under two pieces or more,
  or under one with a gap of UNDERLINE_GAP of the whole height and reaching past that piece by
  UNDERLINE_PAST of its width. A 2's detached base, close under the 2, stays, even when long.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

RING_INNER = 0.3
SPECK = 0.02                       # of the largest piece's area: smaller pieces are specks
MAX_PIECES = 64
UNDERLINE_FLAT = 4.0
UNDERLINE_SPAN = 0.6
UNDERLINE_PAST = 0.2
UNDERLINE_GAP = 0.1

EIGHT = np.ones((3, 3), dtype=bool)


def annotations(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` (the ink) that are rings round a digit or lines under the
    writing; none where the ink is a single piece, or a spray of MAX_PIECES pieces and more
    (noise, not writing). Specks (under SPECK of the largest piece) play no part."""
    labels, count = ndimage.label(mask, structure=EIGHT)
    out = np.zeros_like(mask)
    if count < 2:
        return out
    sizes = np.bincount(labels.ravel())[1:]
    kept = np.flatnonzero(sizes >= SPECK * sizes.max())
    if not 2 <= kept.size <= MAX_PIECES:
        return out
    labels = np.where(np.isin(labels, kept + 1), labels, 0)
    every = ndimage.find_objects(labels)
    boxes = [every[i] for i in kept]
    for k in _rings(labels, boxes, kept) | _underlines(boxes):
        out |= labels == kept[k] + 1
    return out


def _rings(labels: np.ndarray, boxes: list[tuple[slice, slice]], ids: np.ndarray) -> set[int]:
    """Which of the pieces (``boxes``, labelled ``ids`` + 1) close round another one."""
    rings = set()
    for i, box in enumerate(boxes):
        height = box[0].stop - box[0].start
        inside = [j for j, other in enumerate(boxes) if j != i and _within(other, box)
                  and other[0].stop - other[0].start >= RING_INNER * height]
        if not inside:
            continue
        filled = ndimage.binary_fill_holes(labels[box] == ids[i] + 1)
        if any(filled[_relative(boxes[j], box)][labels[boxes[j]] == ids[j] + 1].all()
               for j in inside):
            rings.add(i)
    return rings


def _underlines(boxes: list[tuple[slice, slice]]) -> set[int]:
    lines = set()
    for i, (rows, cols) in enumerate(boxes):
        height, width = rows.stop - rows.start, cols.stop - cols.start
        others = [b for j, b in enumerate(boxes) if j != i]
        if width < UNDERLINE_FLAT * height or not others:
            continue
        lowest_middle = max((b[0].start + b[0].stop) / 2 for b in others)
        left = min(b[1].start for b in others)
        right = max(b[1].stop for b in others)
        if rows.start <= lowest_middle or width < UNDERLINE_SPAN * (right - left):
            continue
        above = [b for b in others if b[1].start < cols.stop and b[1].stop > cols.start]
        if not above:
            continue
        top = min(b[0].start for b in above)
        gap = rows.start - max(b[0].stop for b in above)
        if gap < height:                # touching what is above: part of a digit
            continue
        if len(above) >= 2 or (gap >= UNDERLINE_GAP * (rows.start - top) and any(
                cols.start <= b[1].start - UNDERLINE_PAST * (b[1].stop - b[1].start)
                or cols.stop >= b[1].stop + UNDERLINE_PAST * (b[1].stop - b[1].start)
                for b in above)):
            lines.add(i)
    return lines


def _within(inner: tuple[slice, slice], outer: tuple[slice, slice]) -> bool:
    return all(o.start < s.start and s.stop < o.stop for s, o in zip(inner, outer, strict=True))


def _relative(inner: tuple[slice, slice], outer: tuple[slice, slice]) -> tuple[slice, ...]:
    return tuple(slice(s.start - o.start, s.stop - o.start)
                 for s, o in zip(inner, outer, strict=True))
