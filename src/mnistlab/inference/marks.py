"""The marks written between the digits of a number: a date's dots, a time's colon, a dash,
a decimal comma.

    digits, marks = split_marks(parts, small, digit_ink)   # parts: the pieces of ink found

A mark is told from a digit by its size and place against the digits around it (the *line*:
the digits' median top and bottom, H high), never by the model, which only knows digits:

    "."  one blob, at most ``MARK_SIZE`` H each way, roughly round (width / height under
         ``ROUND_ASPECT``), in the line's lower half
    ":"  two such blobs, one above the other
    "-"  one flat stroke, at most ``MARK_SIZE`` H high and at least ``DASH_ASPECT`` times as
         wide as high, no wider than a digit is high, around the line's middle
    ","  one blob at most ``COMMA_SIZE`` H high and ``MARK_SIZE`` H wide, its top in the line's
         lower half and its tail below the line's foot: a decimal comma ("12,5"), or a
         thousands separator ("1,234")

and only between two digits, except a dash before the first digit, a minus sign ("-5"), and a
dot after the last one, clear of it by ``TRAILING_GAP`` H: a full stop ("10."). Any other blob
after the last digit may be a stray tick, and is merged into its neighbour as before; a full stop
merged so turned "10." into "19" at 70%. A
slash is not read: it is one straight stroke, as a 1 is, and in MNIST's test set 11% of the 1s
lean 30 degrees or more, as far as a written slash does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import median
from typing import Protocol

import numpy as np
from scipy import ndimage

MARK_SIZE = 0.35        # a mark's height (a dot's width too) at most this share of the line
DASH_ASPECT = 1.5       # a dash is at least this many times as wide as it is high
ROUND_ASPECT = DASH_ASPECT  # a dot's width / height lies within 1/this .. this
COMMA_SIZE = 0.5        # a comma's height at most this share of the line ...
COMMA_BELOW = 1.08      # ... its top in the line's lower half, its tail below the line's foot
TRAILING_GAP = 0.1      # a full stop after the last digit lies at least this share of H clear

Box = tuple[int, int, int, int]        # (top, left, bottom, right), working pixels


class Piece(Protocol):
    """What the number's reader knows of a piece of ink (number._Part)."""

    top: int
    left: int
    bottom: int
    right: int
    mask: np.ndarray        # bool (height, width): its ink within its box

    @property
    def height(self) -> int: ...

    @property
    def width(self) -> int: ...


@dataclass(frozen=True)
class Mark:
    """A mark between digits: its character, its box and the digit it precedes (an index into
    the number's digits, left to right)."""

    char: str
    bbox: Box
    before: int


@dataclass(frozen=True)
class _Line:
    top: float
    height: float

    def share(self, row: float) -> float:
        """Where ``row`` lies on the line: 0 at its top, 1 at its bottom."""
        return (row - self.top) / max(self.height, 1.0)


def _blobs(piece: Piece) -> list[tuple[slice, slice]]:
    labels, _ = ndimage.label(piece.mask, structure=np.ones((3, 3)))
    return [b for b in ndimage.find_objects(labels) if b is not None]


def _is_dot(rows: slice, cols: slice, line: _Line) -> bool:
    h, w = rows.stop - rows.start, cols.stop - cols.start
    return (max(h, w) <= MARK_SIZE * line.height
            and 1 / ROUND_ASPECT <= w / max(h, 1) <= ROUND_ASPECT)


def _char(piece: Piece, line: _Line) -> str | None:
    """The mark ``piece`` is, or None when it is not one."""
    blobs = _blobs(piece)
    middle = line.share((piece.top + piece.bottom) / 2)
    if len(blobs) == 2:
        (r1, c1), (r2, c2) = sorted(blobs, key=lambda b: b[0].start)
        apart = r1.stop <= r2.start
        if apart and _is_dot(r1, c1, line) and _is_dot(r2, c2, line) and 0.2 <= middle <= 0.8:
            return ":"
        return None
    if len(blobs) != 1:
        return None
    flat = (piece.height <= MARK_SIZE * line.height
            and piece.width >= DASH_ASPECT * piece.height and piece.width <= line.height)
    if flat:
        return "-" if 0.25 <= middle <= 0.8 else None
    if _is_dot(slice(piece.top, piece.bottom), slice(piece.left, piece.right), line):
        return "." if middle >= 0.5 else None
    if (piece.height <= COMMA_SIZE * line.height and piece.width <= MARK_SIZE * line.height
            and line.share(piece.top) >= 0.5 and line.share(piece.bottom) >= COMMA_BELOW):
        return ","                         # a dot with a tail hanging below the line
    return None


def split_marks(parts: list[Piece], small: float, digit_ink: Callable[[Piece], bool]
                ) -> tuple[list[Piece], list[tuple[Piece, str]]]:
    """``parts`` as the digits' candidates and the marks between them, each with its
    character. ``small``: the share of the tallest piece under which a piece is no digit;
    ``digit_ink``: whether a piece is known to be part of a digit (a stroke cut as touching
    digits), never a mark."""
    if len(parts) < 2:
        return parts, []
    tallest = max(p.height for p in parts)
    big = [p for p in parts if p.height >= small * tallest]
    line = _Line(median(p.top for p in big), median(p.height for p in big))
    marks: list[tuple[Piece, str]] = []
    for piece in parts:
        others = [p for p in big if p is not piece]
        after = any(p.left >= piece.right for p in others)
        before = any(p.right <= piece.left for p in others)
        leading = after and all(p.left >= piece.right for p in others)
        trailing = before and not after and all(
            p.right + TRAILING_GAP * line.height <= piece.left for p in others)
        char = (_char(piece, line) if ((after and (before or leading)) or trailing)
                and not digit_ink(piece) else None)
        # a minus sign leads, a full stop ends, nothing else
        if char is not None and ((before and after) or char == ("-" if leading else ".")):
            marks.append((piece, char))
    kept = [p for p in parts if all(p is not m for m, _ in marks)]
    return kept, marks


def place(marks: list[tuple[Piece, str]], digit_lefts: list[int]) -> list[Mark]:
    """Each mark with the index of the first digit to its right (``digit_lefts``: the
    digits' left edges, left to right)."""
    out = []
    for piece, char in sorted(marks, key=lambda m: m[0].left):
        out.append(Mark(char, (piece.top, piece.left, piece.bottom, piece.right),
                        digits_before(piece.left, digit_lefts)))
    return out


def digits_before(left: int, digit_lefts: list[int]) -> int:
    """How many digits (their left edges) a mark whose left edge is ``left`` follows: the
    index of the digit it precedes."""
    return sum(d < left for d in digit_lefts)
