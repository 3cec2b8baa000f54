"""A written number, not only a digit: find the digits in a picture, read them left to right.

    pieces = find_digits(gray)          # one DigitPiece per digit, left to right
    layout = read_layout(gray)          # the digits and the marks between them (12.06, 4-7),
                                        # and the other ways to read touching digits

``inference.predict.read_picture`` runs the model on each piece and spells the number.

The ink is found as for one digit (``preprocess.ink_image``); then:

1. connected strokes (8-neighbours) are the candidates;
2. pieces stacked in one column are one digit (a 5 whose top bar is lifted, a broken 4): two
   candidates whose column ranges overlap by half the narrower one are merged, so are two
   whose columns overlap at all while their rows do not (a stroke hanging below or above its
   neighbour: digits of one number share a line, their rows overlap by most of a digit), and
   so is a candidate far smaller than the tallest (a stray tick) into its nearest neighbour;
3. touching digits are split (before step 2's merges, on the connected strokes themselves):
   a stroke wider than ``SPLIT_WIDTH`` times its height may hold several digits (wider than
   ``JUDGED_SPLIT_WIDTH``, where the model can tell half a digit from a digit). The ink's
   own reading cuts it at the thinnest column (the least ink) near each border its width
   implies, where that column holds less than ``SPLIT_VALLEY`` of the mean column's ink.
   But touching digits overlap, so their border is rarely the thinnest column, and ink alone
   cannot tell a wide digit (a 4 written broadly) from two touching ones. So the stroke is
   also cut at every other place a border may be (each valley of its column profile, none
   through a loop: a wide 0 is never cut into two halves), into *units*; each run of up to
   ``JOIN_PIECES`` units is a candidate digit (``Layout.segments``), and
   ``inference.verify`` lets the model choose the reading;
4. pieces that are marks between digits (a dot, a colon, a dash: ``inference.marks``) are set
   apart before step 2's last merge, which would fold them into a neighbour as stray ticks;
5. each digit goes through the single-digit recipe (crop, widen thin strokes, 20 px box,
   centre of mass), so a picture of one digit gives exactly what ``preprocess`` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import reduce
from itertools import pairwise

import numpy as np
from scipy import ndimage

from mnistlab.inference.marks import Box, Mark, Piece, place, split_marks
from mnistlab.inference.preprocess import (
    ImageInputError,
    Preprocessed,
    crop_to_mnist,
    ink_image,
)

MERGE_OVERLAP = 0.5     # column overlap, as a share of the narrower piece, that means one digit
STAGGER_ROWS = 0.6      # columns overlapping and rows sharing less than this: one digit
SMALL_PIECE = 0.35      # a piece under this share of the tallest one's height is not a digit
SPLIT_WIDTH = 1.25      # width / height above which a stroke may hold touching digits
JUDGED_SPLIT_WIDTH = 1.0  # ... where a model that knows how near a piece is to a digit judges
DIGIT_ASPECT = 0.7      # a typical digit's width / height, to guess how many touch
SPLIT_VALLEY = 0.4      # the ink's cut column holds at most this share of the mean column's ink
UNIT_WIDTH = 0.15       # the units of a cut stroke are at least this share of its height wide
SMOOTH = 0.015          # its column profile is smoothed over +- this share of its height
LOOP = 0.05             # a loop at least this share of its height each way is never cut through
JOIN_PIECES = 4         # at most this many units of a cut stroke are offered as one digit
MAX_PIECES = 120        # separate pieces of ink a picture may hold (a number has a few dozen)
LINE_GAP = 0.25         # rows of digits this share of a row's height apart are two lines
BRIDGE_SHARE = 0.05     # pieces this large (of the largest one's ink) cut by a line rejoin
BRIDGE = 3              # px: ... across what was left out, where they are this near it


class TooManyPieces(ImageInputError):
    """Far more separate pieces of ink than any written number has."""


class SeveralLines(ImageInputError):
    """Digits written in two or more lines, one above the other: no one number."""


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
    # was not cut: neighbouring units of one stroke may be read as one digit
    cut_from: int | None = None
    ink_digit: int = 0                 # which of its stroke's digits the ink's own cuts
                                       # put it in (0 in a stroke not cut)

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
        return _Part(top, left, bottom, right, mask, taller.cut_from, taller.ink_digit)


def _parts(mask: np.ndarray, left_out: np.ndarray | None = None) -> list[_Part]:
    """The pieces of ink (8-connected), those of a stroke that a printed line cut apart joined
    (``_rejoined``)."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    if count > MAX_PIECES:
        # a page of text, a dotted pattern, noise: reading it piece by piece would take
        # minutes, and no written number has this many
        raise TooManyPieces(f"{count:,} separate pieces of ink: more than a written number "
                            f"has (at most {MAX_PIECES}); crop the picture to the digits")
    if left_out is not None and left_out.any() and count > 1:
        labels = _rejoined(labels, count, mask, left_out)
    parts = []
    for index, box in enumerate(ndimage.find_objects(labels), 1):
        if box is not None:
            rows, cols = box
            parts.append(_Part(rows.start, cols.start, rows.stop, cols.stop,
                               labels[box] == index))
    return parts


def _rejoined(labels: np.ndarray, count: int, mask: np.ndarray, left_out: np.ndarray
              ) -> np.ndarray:
    """``labels`` with the pieces of one stroke that a removed printed line cut apart under one
    label: the pieces whose gaps lie in what was left out (``Ink.left_out``), where one holds
    at least BRIDGE_SHARE of the largest piece's ink. A thin 0 on squared paper, its sides
    along the grid's columns, fell into three pieces read "111"; the stubs a grid leaves where
    it crosses nothing but itself are each far smaller, and joined to one another they passed
    for digits ("11111111" at 77%)."""
    # the ink with the pixels left out within BRIDGE px of it: its pieces span the gaps
    bridges = left_out & ndimage.binary_dilation(mask, iterations=BRIDGE)
    links, _ = ndimage.label(mask | bridges, structure=np.ones((3, 3)))
    index = np.arange(1, count + 1)
    sizes = ndimage.sum_labels(mask, labels, index)
    link = np.zeros(count + 1, dtype=links.dtype)
    link[labels[mask]] = links[mask]            # each piece lies in one linked piece
    link = link[1:]
    big = sizes >= BRIDGE_SHARE * sizes.max()
    lut = np.arange(count + 1)
    for group in np.unique(link[big]):
        members = index[link == group]
        lut[members] = index[big & (link == group)][0]
    _, dense = np.unique(lut, return_inverse=True)          # labels 1.. again, no gaps
    return dense.reshape(lut.shape)[labels]


def _cut(piece: Piece) -> bool:
    """Whether ``piece`` was cut from a stroke as touching digits: a digit's ink, no mark."""
    return isinstance(piece, _Part) and piece.cut_from is not None


def _column_overlap(a: _Part, b: _Part) -> float:
    shared = min(a.right, b.right) - max(a.left, b.left)
    return shared / max(min(a.width, b.width), 1)


def _row_overlap(a: _Part, b: _Part) -> float:
    shared = min(a.bottom, b.bottom) - max(a.top, b.top)
    return shared / max(min(a.height, b.height), 1)


def _one_digit(a: _Part, b: _Part) -> bool:
    columns = _column_overlap(a, b)
    return columns >= MERGE_OVERLAP or (columns > 0 and _row_overlap(a, b) < STAGGER_ROWS)


def _lines(pieces: list[_Part]) -> int:
    """How many lines of digits ``pieces`` (digit-sized strokes) are written in: bands of rows
    that no piece crosses, each at least half the tallest piece high, apart by LINE_GAP of the
    lower one's height, with two pieces side by side in one of them at least. One digit drawn
    in two strokes (a 3 as two arcs, a 5's lifted bar) is no two lines: its pieces nearly touch
    and no band of one digit holds two pieces side by side."""
    bands: list[list[_Part]] = []
    for piece in sorted(pieces, key=lambda p: p.top):
        if bands and piece.top < max(p.bottom for p in bands[-1]):
            bands[-1].append(piece)
        else:
            bands.append([piece])
    if len(bands) < 2 or max(len(band) for band in bands) < 2:
        return 1
    tallest = max(p.height for p in pieces)
    spans = [(min(p.top for p in b), max(p.bottom for p in b)) for b in bands]
    if any(bottom - top < tallest / 2 for top, bottom in spans):
        return 1
    apart = all(below[0] - above[1] >= LINE_GAP * (below[1] - below[0])
                for above, below in pairwise(spans))
    return len(bands) if apart else 1


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
    """Each piece far smaller than the tallest (a stray tick) merged into its nearest big
    neighbour; a unit of a stroke cut as touching digits, into a unit of the same digit of
    the ink's reading where there is one."""
    tallest = max(p.height for p in parts)
    big = [p for p in parts if p.height >= SMALL_PIECE * tallest]
    for small in (p for p in parts if p.height < SMALL_PIECE * tallest):
        kin = [i for i, b in enumerate(big) if small.cut_from is not None
               and (b.cut_from, b.ink_digit) == (small.cut_from, small.ink_digit)]
        centre = (small.left + small.right) / 2
        nearest = min(kin or range(len(big)),
                      key=lambda i: abs((big[i].left + big[i].right) / 2 - centre))
        big[nearest] = big[nearest].merged(small)
    return big


def _ink_cuts(part: _Part, columns: np.ndarray, mean: float) -> list[int]:
    """Where the ink alone cuts ``part`` (columns from its left; ``mean``: its mean inked
    column's ink): the thinnest column near each border its width implies, where it is thin
    enough."""
    count = max(2, round(part.width / (DIGIT_ASPECT * part.height)))
    step = part.width / count
    cuts = []
    for j in range(1, count):
        lo, hi = int(j * step - 0.3 * step), int(j * step + 0.3 * step) + 1
        window = columns[max(lo, 1):min(hi, part.width - 1)]
        if window.size == 0:
            continue
        at = max(lo, 1) + int(np.argmin(window))
        if columns[at] <= SPLIT_VALLEY * mean:
            cuts.append(at)
    return cuts


def _valleys(part: _Part, columns: np.ndarray, mean: float, taken: list[int]) -> list[int]:
    """Every other column where ``part`` might hold a border between touching digits: the
    valleys of its smoothed column profile holding at most the mean column's ink, none
    through a loop (a 0's two halves, a 6's or 9's round), each ``UNIT_WIDTH`` from the
    picture's edges, from ``taken`` and from each other (the emptiest first)."""
    height = part.height
    smooth = ndimage.uniform_filter1d(columns.astype(np.float64),
                                      2 * max(1, round(SMOOTH * height)) + 1, mode="nearest")
    holes, _ = ndimage.label(ndimage.binary_fill_holes(part.mask) & ~part.mask)
    loops = [cols for rows, cols in ndimage.find_objects(holes)
             if (rows.stop - rows.start) * (cols.stop - cols.start) >= (LOOP * height) ** 2]
    gap = max(2, int(UNIT_WIDTH * height))
    found = [x for x in range(gap, part.width - gap)
             if smooth[x] <= smooth[x - 1] and smooth[x] < smooth[x + 1] and columns[x] <= mean
             and not any(c.start < x < c.stop for c in loops)]
    chosen = list(taken)
    for x in sorted(found, key=lambda x: smooth[x]):
        if all(abs(x - c) >= gap for c in chosen):
            chosen.append(x)
    return [x for x in chosen if x not in taken]


def _split_touching(part: _Part, stroke: int, split_width: float) -> list[_Part]:
    """``part`` cut into units wherever touching digits may meet (``stroke``: its index, kept
    by the units, with the digit of the ink's own reading each lies in), or ``[part]`` when
    it is no wider than ``split_width`` times its height or its ink shows no such place."""
    if part.width <= split_width * part.height:
        return [part]
    columns = part.mask.sum(axis=0)                                               # (W,)
    mean = float(columns[columns > 0].mean())
    ink = _ink_cuts(part, columns, mean)
    cuts = sorted(ink + _valleys(part, columns, mean, ink))
    if not cuts:
        return [part]
    pieces = []
    for left, right in zip([0, *cuts], [*cuts, part.width], strict=True):
        mask = part.mask[:, left:right]
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size:
            top, bottom = int(rows[0]), int(rows[-1]) + 1
            pieces.append(_Part(part.top + top, part.left + left, part.top + bottom,
                                part.left + right, mask[top:bottom], stroke,
                                sum(cut <= left for cut in ink)))
    return pieces


Span = tuple[int, int]          # units start .. stop - 1 (left to right), read as one digit


def _spans(parts: list[_Part]) -> tuple[list[Span], list[Span]]:
    """(every span the model may read as one digit, the ink's own reading): each unit alone,
    every run of 2 to ``JOIN_PIECES`` neighbouring units cut from one stroke, each whole
    stroke, and the ink's digits (a stroke it does not cut is one digit)."""
    reading: list[Span] = []
    for i, part in enumerate(parts):
        joins = (i > 0 and part.cut_from is not None
                 and (parts[i - 1].cut_from, parts[i - 1].ink_digit)
                 == (part.cut_from, part.ink_digit))
        if joins:
            reading[-1] = (reading[-1][0], i + 1)
        else:
            reading.append((i, i + 1))
    spans = set(reading)
    for start, part in enumerate(parts):
        spans.add((start, start + 1))
        stop = start + 1
        while (part.cut_from is not None and stop < len(parts)
               and parts[stop].cut_from == part.cut_from):
            stop += 1
            if stop - start <= JOIN_PIECES:
                spans.add((start, stop))
        if part.cut_from is not None and (start == 0 or parts[start - 1].cut_from
                                          != part.cut_from):
            spans.add((start, stop))        # the whole stroke, however many units it holds
    return sorted(spans), reading


@dataclass(frozen=True)
class Segment:
    """Units ``start`` to ``stop - 1`` read as one digit: one way to read part of the ink."""

    start: int
    stop: int
    piece: DigitPiece


@dataclass(frozen=True)
class Layout:
    """A picture's candidate digits (``segments``: each unit of ink alone, and runs of the
    units of a stroke cut as touching digits), the reading chosen (``reading``: indices into
    ``segments``, left to right, covering every unit once; the ink's own until the model
    judges, ``inference.verify``), and the marks written between its digits."""

    segments: list[Segment]
    reading: list[int]
    marks: list[Mark]
    units: int

    @property
    def digits(self) -> list[DigitPiece]:
        return [self.segments[i].piece for i in self.reading]

    @property
    def undecided(self) -> bool:
        """Whether the ink may be read another way (some stroke was cut into units)."""
        return len(self.segments) > len(self.reading)


def find_digits(gray: np.ndarray) -> list[DigitPiece]:
    """The digits of a grayscale picture (H, W) in [0, 1], left to right, as the ink alone
    reads them (``inference.verify`` lets a model read touching digits).

    Raises ``NoInk`` (a UserError) for a blank picture, as ``preprocess`` does.
    """
    return read_layout(gray).digits


def read_layout(gray: np.ndarray, *, split_width: float = SPLIT_WIDTH) -> Layout:
    """The digits of a grayscale picture (H, W) in [0, 1], left to right, the marks between
    them, and the other ways to read touching digits: those of each stroke wider than
    ``split_width`` times its height (``JUDGED_SPLIT_WIDTH`` where the model that judges them
    knows how near each piece lies to a digit, ``inference.verify``). Raises ``NoInk`` (a
    UserError) for a blank picture."""
    ink, mask, inverted, notes, left_out = ink_image(gray)
    # Split first, merge after: a digit's detached tail merged into it first would make the
    # whole wide enough to be cut again, at the tail's thin join (MNIST test digit 1696).
    strokes = _parts(mask, left_out)
    tallest = max(p.height for p in strokes)
    lines = _lines([p for p in strokes if p.height >= SMALL_PIECE * tallest])
    if lines > 1:
        # merged column by column as stacked pieces, "12" over "34" read "65" at 29%
        raise SeveralLines(f"{lines} lines of digits, one above the other: mnistlab reads one "
                           "number, written on one line; crop the picture to one line")
    # a stroke far smaller than the tallest (a dot, a dash) is no digit, nor touching ones
    parts = [piece for stroke, part in enumerate(strokes)
             for piece in (_split_touching(part, stroke, split_width)
                           if part.height >= SMALL_PIECE * tallest else [part])]
    parts, marks = split_marks(_merge_stacked(parts), SMALL_PIECE, _cut)
    parts = _merge_small(parts)
    parts.sort(key=lambda p: (p.left + p.right) / 2)
    spans, reading = _spans(parts)
    segments = [Segment(start, stop, _digit(reduce(_Part.merged, parts[start:stop]), ink,
                                            inverted, notes))
                for start, stop in spans]
    chosen = [spans.index(span) for span in reading]
    lefts = [segments[i].piece.bbox[1] for i in chosen]
    return Layout(segments, chosen, place(marks, lefts), len(parts))


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
