"""A written number, not only a digit: find the digits in a picture, read them left to right.

    pieces = find_digits(gray)          # one DigitPiece per digit, left to right
    layout = read_layout(gray)          # the digits and the marks between them (12.06, 4-7)

``inference.predict.read_picture`` runs the model on each piece and spells the number.

The ink is found as for one digit (``preprocess.ink_image``); then:

1. connected strokes (8-neighbours) are the candidates;
2. pieces stacked in one column are one digit (a 5 whose top bar is lifted, a broken 4): two
   candidates whose column ranges overlap by half the narrower one are merged, so are two
   whose columns overlap at all while their rows do not (a stroke hanging below or above its
   neighbour: digits of one number share a line, their rows overlap by most of a digit), and
   so is a candidate far smaller than the tallest (a stray tick) into its nearest neighbour;
3. touching digits are split where the ink says so (before step 2's merges, on the connected
   strokes themselves): a candidate wider than ``SPLIT_WIDTH``
   times its height is cut at the thinnest column (the least ink) near each expected border,
   but only where that column holds less than ``SPLIT_VALLEY`` of the mean column's ink.
   Ink alone cannot tell a wide digit (a 4 written broadly) from two touching ones, so the
   layout also offers each run of a cut stroke's pieces as one digit (``Layout.joins``), and
   ``inference.verify`` lets the model keep the cut or undo it;
4. pieces that are marks between digits (a dot, a colon, a dash: ``inference.marks``) are set
   apart before step 2's last merge, which would fold them into a neighbour as stray ticks;
5. each digit goes through the single-digit recipe (crop, widen thin strokes, 20 px box,
   centre of mass), so a picture of one digit gives exactly what ``preprocess`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import reduce

import numpy as np
from scipy import ndimage

from mnistlab.inference.marks import Box, Mark, place, split_marks
from mnistlab.inference.preprocess import (
    ImageInputError,
    Preprocessed,
    crop_to_mnist,
    ink_image,
)

MERGE_OVERLAP = 0.5     # column overlap, as a share of the narrower piece, that means one digit
STAGGER_ROWS = 0.6      # columns overlapping and rows sharing less than this: one digit
SMALL_PIECE = 0.35      # a piece under this share of the tallest one's height is not a digit
SPLIT_WIDTH = 1.25      # width / height above which a piece may hold touching digits
DIGIT_ASPECT = 0.7      # a typical digit's width / height, to guess how many touch
SPLIT_VALLEY = 0.4      # a cut column holds at most this share of the mean column's ink
JOIN_PIECES = 3         # at most this many pieces of a cut stroke are offered as one digit
MAX_PIECES = 120        # separate pieces of ink a picture may hold (a number has a few dozen)


class TooManyPieces(ImageInputError):
    """Far more separate pieces of ink than any written number has."""


@dataclass(frozen=True)
class DigitPiece:
    """One digit found in the picture: where it is, and its MNIST-style 28x28."""

    bbox: Box
    pre: Preprocessed


@dataclass
class _Part:
    top: int
    left: int
    bottom: int
    right: int
    mask: np.ndarray                   # bool (height, width): its ink within its box
    # the stroke it was cut from as touching digits (its index in the picture), None when it
    # was not cut: the pieces of one stroke may be read whole again (``Layout.joins``)
    cut_from: int | None = None

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def merged(self, other: _Part) -> _Part:
        top, left = min(self.top, other.top), min(self.left, other.left)
        bottom, right = max(self.bottom, other.bottom), max(self.right, other.right)
        mask = np.zeros((bottom - top, right - left), dtype=bool)
        for part in (self, other):
            mask[part.top - top:part.bottom - top, part.left - left:part.right - left] |= part.mask
        # the taller one's stroke: a stray tick or a cut-off hook joining a digit leaves it that
        # digit's (a hook cut off a flat 6 and folded into the 7 beside it makes the 7 no
        # piece of the 6's stroke, to be joined to it)
        taller = self if self.height >= other.height else other
        return _Part(top, left, bottom, right, mask, taller.cut_from)


def _parts(mask: np.ndarray) -> list[_Part]:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count > MAX_PIECES:
        # a page of text, a dotted pattern, noise: reading it piece by piece would take
        # minutes, and no written number has this many
        raise TooManyPieces(f"{count:,} separate pieces of ink: more than a written number "
                            f"has (at most {MAX_PIECES}); crop the picture to the digits")
    parts = []
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        if box is not None:
            rows, cols = box
            parts.append(_Part(rows.start, cols.start, rows.stop, cols.stop,
                               labels[box] == index))
    return parts


def _column_overlap(a: _Part, b: _Part) -> float:
    shared = min(a.right, b.right) - max(a.left, b.left)
    return shared / max(min(a.width, b.width), 1)


def _row_overlap(a: _Part, b: _Part) -> float:
    shared = min(a.bottom, b.bottom) - max(a.top, b.top)
    return shared / max(min(a.height, b.height), 1)


def _one_digit(a: _Part, b: _Part) -> bool:
    columns = _column_overlap(a, b)
    return columns >= MERGE_OVERLAP or (columns > 0 and _row_overlap(a, b) < STAGGER_ROWS)


def _merge_stacked(parts: list[_Part]) -> list[_Part]:
    """Merge the first pair (in order) that is one digit, then look again from the start,
    until no pair is. Looking again only where a merge changed something gives the same
    merges in O(n^2) pair tests: every earlier pair was apart and still is, except those
    with the grown piece."""
    i = 0
    while i < len(parts):
        j = i + 1
        while j < len(parts):
            if not _one_digit(parts[i], parts[j]):
                j += 1
                continue
            parts[i] = parts[i].merged(parts.pop(j))
            # the grown piece may now join an earlier one: the first such pair comes first
            k = next((k for k in range(i) if _one_digit(parts[k], parts[i])), None)
            while k is not None:
                parts[k] = parts[k].merged(parts.pop(i))
                i = k
                k = next((k for k in range(i) if _one_digit(parts[k], parts[i])), None)
            j = i + 1                       # the grown piece against every later one again
        i += 1
    return parts


def _merge_small(parts: list[_Part]) -> list[_Part]:
    tallest = max(p.height for p in parts)
    big = [p for p in parts if p.height >= SMALL_PIECE * tallest]
    for small in (p for p in parts if p.height < SMALL_PIECE * tallest):
        centre = (small.left + small.right) / 2
        nearest = min(range(len(big)), key=lambda i: abs((big[i].left + big[i].right) / 2
                                                         - centre))
        big[nearest] = big[nearest].merged(small)
    return big


def _split_touching(part: _Part, stroke: int) -> list[_Part]:
    """``part`` cut where touching digits meet (``stroke``: its index, kept by the pieces), or
    ``[part]`` when its ink shows no such place."""
    if part.width <= SPLIT_WIDTH * part.height:
        return [part]
    count = max(2, round(part.width / (DIGIT_ASPECT * part.height)))
    columns = part.mask.sum(axis=0)                                               # (W,)
    mean = float(columns[columns > 0].mean())
    step = part.width / count
    cuts = []
    for j in range(1, count):
        lo, hi = int(j * step - 0.3 * step), int(j * step + 0.3 * step) + 1
        window = columns[max(lo, 1):min(hi, part.width - 1)]
        if window.size == 0:
            continue
        at = max(lo, 1) + int(np.argmin(window))
        if columns[at] <= SPLIT_VALLEY * mean:
            cuts.append(part.left + at)
    if not cuts:
        return [part]
    pieces = []
    for left, right in zip([part.left, *cuts], [*cuts, part.right], strict=True):
        mask = part.mask[:, left - part.left:right - part.left]
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size:
            top, bottom = int(rows[0]), int(rows[-1]) + 1
            pieces.append(_Part(part.top + top, left, part.top + bottom, right,
                                mask[top:bottom], stroke))
    return pieces


def _cut_runs(parts: list[_Part]) -> list[tuple[int, int]]:
    """(start, stop) of every run of 2 to ``JOIN_PIECES`` neighbouring parts (left to right)
    cut from one stroke: each might be one wide digit rather than touching ones."""
    runs = []
    for start, part in enumerate(parts):
        stop = start + 1
        while (part.cut_from is not None and stop < len(parts) and stop - start < JOIN_PIECES
               and parts[stop].cut_from == part.cut_from):
            stop += 1
            runs.append((start, stop))
    return runs


@dataclass(frozen=True)
class Joined:
    """Digits ``start`` to ``stop - 1`` (pieces of one stroke cut as touching digits) read as
    one digit instead: what the picture gives if that cut was wrong."""

    start: int
    stop: int
    piece: DigitPiece


@dataclass(frozen=True)
class Layout:
    """A picture's digits, left to right, and the marks written between them; ``joins``: the
    ways to undo the cuts made on ink alone, for the model to judge (``inference.verify``)."""

    digits: list[DigitPiece]
    marks: list[Mark]
    joins: list[Joined] = field(default_factory=list)


def find_digits(gray: np.ndarray) -> list[DigitPiece]:
    """The digits of a grayscale picture (H, W) in [0, 1], left to right.

    Raises ``NoInk`` (a UserError) for a blank picture, as ``preprocess`` does.
    """
    return read_layout(gray).digits


def read_layout(gray: np.ndarray) -> Layout:
    """The digits of a grayscale picture (H, W) in [0, 1], left to right, and the marks
    between them. Raises ``NoInk`` (a UserError) for a blank picture."""
    ink, mask, inverted, notes = ink_image(gray)
    # Split first, merge after: a digit's detached tail merged into it first would make the
    # whole wide enough to be cut again, at the tail's thin join (MNIST test digit 1696).
    parts = [piece for stroke, part in enumerate(_parts(mask))
             for piece in _split_touching(part, stroke)]
    parts, marks = split_marks(_merge_stacked(parts), SMALL_PIECE)
    parts = _merge_small(parts)
    parts.sort(key=lambda p: (p.left + p.right) / 2)
    pieces = [_digit(part, ink, inverted, notes) for part in parts]
    joins = [Joined(start, stop, _digit(reduce(_Part.merged, parts[start:stop]), ink,
                                        inverted, notes))
             for start, stop in _cut_runs(parts)]
    return Layout(pieces, place(marks, [p.left for p in parts]), joins)


def _digit(part: _Part, ink: np.ndarray, inverted: bool, notes: list[str]) -> DigitPiece:
    return DigitPiece((part.top, part.left, part.bottom, part.right),
                      _preprocessed(part, ink, inverted, notes))


def _preprocessed(part: _Part, ink: np.ndarray, inverted: bool, notes: list[str]
                  ) -> Preprocessed:
    """The piece's own ink (its mask and the anti-aliased edge ink_image kept around it, 2 px)
    through the single-digit recipe, in a window round its box wide enough for the strokes
    it may widen (up to half the long side): what the whole picture would give, cheaply."""
    margin = max(part.height, part.width) // 2 + 4
    top, left = max(part.top - margin, 0), max(part.left - margin, 0)
    bottom = min(part.bottom + margin, ink.shape[0])
    right = min(part.right + margin, ink.shape[1])
    mask = np.zeros((bottom - top, right - left), dtype=bool)
    mask[part.top - top:part.bottom - top, part.left - left:part.right - left] = part.mask
    near = ndimage.binary_dilation(mask, iterations=2)
    window = np.where(near, ink[top:bottom, left:right], 0.0).astype(np.float32)
    pre = crop_to_mnist(window, mask, inverted, notes)
    t, lft, b, r = pre.bbox
    return replace(pre, bbox=(t + top, lft + left, b + top, r + left))
