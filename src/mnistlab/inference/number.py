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
   but only where that column holds less than ``SPLIT_VALLEY`` of the mean column's ink;
4. pieces that are marks between digits (a dot, a colon, a dash: ``inference.marks``) are set
   apart before step 2's last merge, which would fold them into a neighbour as stray ticks;
5. each digit goes through the single-digit recipe (crop, widen thin strokes, 20 px box,
   centre of mass), so a picture of one digit gives exactly what ``preprocess`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mnistlab.inference.marks import Box, Mark, place, split_marks
from mnistlab.inference.preprocess import Preprocessed, crop_to_mnist, ink_image

MERGE_OVERLAP = 0.5     # column overlap, as a share of the narrower piece, that means one digit
STAGGER_ROWS = 0.6      # columns overlapping and rows sharing less than this: one digit
SMALL_PIECE = 0.35      # a piece under this share of the tallest one's height is not a digit
SPLIT_WIDTH = 1.25      # width / height above which a piece may hold touching digits
DIGIT_ASPECT = 0.7      # a typical digit's width / height, to guess how many touch
SPLIT_VALLEY = 0.4      # a cut column holds at most this share of the mean column's ink


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
    mask: np.ndarray                   # bool, the whole picture's shape

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def merged(self, other: _Part) -> _Part:
        return _Part(min(self.top, other.top), min(self.left, other.left),
                     max(self.bottom, other.bottom), max(self.right, other.right),
                     self.mask | other.mask)


def _parts(mask: np.ndarray) -> list[_Part]:
    labels, _ = ndimage.label(mask, structure=np.ones((3, 3)))
    parts = []
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        if box is not None:
            rows, cols = box
            parts.append(_Part(rows.start, cols.start, rows.stop, cols.stop, labels == index))
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
    merged = True
    while merged and len(parts) > 1:
        merged = False
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                if _one_digit(parts[i], parts[j]):
                    parts[i] = parts[i].merged(parts.pop(j))
                    merged = True
                    break
            if merged:
                break
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


def _split_touching(part: _Part) -> list[_Part]:
    if part.width <= SPLIT_WIDTH * part.height:
        return [part]
    count = max(2, round(part.width / (DIGIT_ASPECT * part.height)))
    columns = part.mask[part.top:part.bottom, part.left:part.right].sum(axis=0)   # (W,)
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
        mask = np.zeros_like(part.mask)
        mask[:, left:right] = part.mask[:, left:right]
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size:
            pieces.append(_Part(int(rows[0]), left, int(rows[-1]) + 1, right, mask))
    return pieces


@dataclass(frozen=True)
class Layout:
    """A picture's digits, left to right, and the marks written between them."""

    digits: list[DigitPiece]
    marks: list[Mark]


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
    parts = [piece for part in _parts(mask) for piece in _split_touching(part)]
    parts, marks = split_marks(_merge_stacked(parts), SMALL_PIECE)
    parts = _merge_small(parts)
    parts.sort(key=lambda p: (p.left + p.right) / 2)
    pieces = []
    for part in parts:
        # The piece's own ink: its mask and the anti-aliased edge ink_image kept around it.
        near = ndimage.binary_dilation(part.mask, iterations=2)
        pre = crop_to_mnist(np.where(near, ink, 0.0).astype(np.float32), part.mask, inverted,
                            notes)
        pieces.append(DigitPiece((part.top, part.left, part.bottom, part.right), pre))
    return Layout(pieces, place(marks, [p.left for p in parts]))
