"""Numbers composed from single-digit pictures, to measure how written numbers are read.

    for number in compose_numbers(samples, 200, marks=True):
        number.picture, number.spelled, number.part            # spelled: "06.12"

Each number takes 2-4 samples of one part, scaled to one height and set side by side with a
gap of a tenth of it. With ``marks``, one gap of each number is widened and holds a dot, a
colon or a dash, drawn in the pictures' own ink at the place a writer puts it (against the
digits' line: the rows their ink spans), and ``want`` spells it.

With ``touching``, the same numbers (the same seed draws the same digits) are set with no gap:
each digit slides left until its ink meets its neighbour's and overlaps it by ``TOUCH`` px
where they come closest, as digits written in a hurry run into each other. Their paper is
cropped to the ink between them, and where two pictures overlap the darker pixel wins (ink
over paper). A mark keeps its gap. Nothing else measures how touching digits are cut apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from mnistlab.data.realworld import Sample

HEIGHT = 160            # px, every digit
MARKS = ".:-"
TOUCH = 4               # px (of HEIGHT) by which touching neighbours' ink overlaps


class Composed(NamedTuple):
    """A composed number: its picture (uint8, HEIGHT px high, dark ink on light paper), what
    it spells, and the part of the set its digits come from."""

    picture: np.ndarray
    spelled: str
    part: str


def _scaled(sample: Sample) -> np.ndarray:
    img = Image.fromarray(sample.picture)
    width = max(1, round(img.width * HEIGHT / img.height))
    return np.asarray(img.resize((width, HEIGHT), Image.Resampling.BILINEAR))


def _mark_gap(mark: str, paper: int, ink: int, line: tuple[int, int]) -> np.ndarray:
    """A gap HEIGHT // 4 wide holding ``mark``, on the digits' line (top, bottom row)."""
    width = HEIGHT // 4
    gap = Image.new("L", (width, HEIGHT), paper)
    draw = ImageDraw.Draw(gap)
    top, height = line[0], max(line[1] - line[0], 1)
    x, r = width / 2, max(1.5, 0.06 * height)
    if mark == "-":
        y, half = top + 0.5 * height, max(1.0, 0.04 * height)
        draw.rectangle([x - 0.35 * width, y - half, x + 0.35 * width, y + half], fill=ink)
    else:
        for share in ([0.85] if mark == "." else [0.3, 0.75]):
            y = top + share * height
            draw.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    return np.asarray(gap)


def _line(tiles: list[np.ndarray], paper: int, ink: int) -> tuple[int, int]:
    """The rows the digits' ink spans: darker (or lighter) than half-way to the ink."""
    half = (paper + ink) / 2
    rows = np.flatnonzero(np.concatenate(
        [(t < half) if ink < paper else (t > half) for t in tiles], axis=1).any(axis=1))
    return (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, HEIGHT)


def _ink_mask(tile: np.ndarray) -> np.ndarray:
    """A tile's ink: darker than half-way from its own paper to its own ink (each tile is
    lit its own way, so one number's shades would miss a pale pencil's strokes)."""
    paper, ink = float(np.median(tile)), float(np.percentile(tile, 1))
    return tile < (paper + ink) / 2


def _touching(tiles: list[np.ndarray], paper: int) -> np.ndarray:
    """``tiles`` (HEIGHT px high, dark ink on light paper) side by side, each one's ink
    overlapping the ink before it by ``TOUCH`` px in the rows where they come closest."""
    masks = [_ink_mask(t) for t in tiles]
    spans = [np.flatnonzero(m.any(axis=0)) for m in masks]
    # the paper between two digits goes: the first keeps its left margin, the last its right
    crops = []
    for i, (t, cols) in enumerate(zip(tiles, spans, strict=True)):
        lo = 0 if i == 0 or not cols.size else int(cols[0])
        hi = t.shape[1] if i == len(tiles) - 1 or not cols.size else int(cols[-1]) + 1
        crops.append((t[:, lo:hi], masks[i][:, lo:hi]))
    width = sum(t.shape[1] for t, _ in crops)
    row = np.full((HEIGHT, width), paper, np.uint8)
    right = np.full(HEIGHT, -1)                  # per row: the rightmost ink placed so far
    end = 0                                      # the columns placed so far
    for tile, mask in crops:
        left = np.where(mask.any(axis=1), mask.argmax(axis=1), -1)        # per row, or -1
        both = (right >= 0) & (left >= 0)
        # where the rows they share come closest, the new ink starts TOUCH px inside the old
        x = int(np.max(right[both] - left[both])) + 1 - TOUCH if both.any() else end
        x = max(x, 0)
        stop = x + tile.shape[1]
        if stop > row.shape[1]:
            row = np.concatenate([row, np.full((HEIGHT, stop - row.shape[1]), paper,
                                               np.uint8)], axis=1)
        shared = max(min(end, stop) - x, 0)      # columns already placed: darker wins
        row[:, x:x + shared] = np.minimum(row[:, x:x + shared], tile[:, :shared])
        row[:, x + shared:stop] = tile[:, shared:]
        inked = mask.any(axis=1)
        right[inked] = np.maximum(right[inked], x + tile.shape[1] - 1
                                  - np.argmax(mask[inked, ::-1], axis=1))
        end = max(end, stop)
    return row[:, :end]


def compose_numbers(samples: Sequence[Sample], count: int, *, seed: int = 0,
                    marks: bool = False, touching: bool = False) -> list[Composed]:
    """``count`` pictures of 2-4 digit numbers, each digit a sample of the same part.
    ``touching``: the same numbers with neighbouring digits running into each other (a mark
    keeps its gap)."""
    rng = np.random.default_rng(seed)
    by_part: dict[str, list[Sample]] = {}
    for s in samples:
        by_part.setdefault(s.part, []).append(s)
    parts = sorted(by_part)
    out = []
    for _ in range(count):
        part = parts[int(rng.integers(len(parts)))]
        pool = by_part[part]
        chosen = [pool[int(i)] for i in rng.integers(0, len(pool), int(rng.integers(2, 5)))]
        tiles = [_scaled(s) for s in chosen]
        pixels = np.concatenate([t.ravel() for t in tiles])
        paper = int(np.median(pixels))
        ink = int(np.percentile(pixels, 1 if paper > 127 else 99))
        gap = np.full((HEIGHT, HEIGHT // 10), paper, np.uint8)
        where = int(rng.integers(1, len(tiles))) if marks else 0    # the gap before this digit
        mark = MARKS[int(rng.integers(len(MARKS)))] if marks else ""
        spelled = str(chosen[0].label)
        for i, s in enumerate(chosen[1:], 1):
            spelled += (mark if i == where else "") + str(s.label)
        if touching:
            # the runs of digits between marks touch; a mark keeps its gap
            runs = [tiles[:where], tiles[where:]] if where else [tiles]
            row = [_touching(runs[0], paper)]
            if where:
                row += [_mark_gap(mark, paper, ink, _line(tiles, paper, ink)),
                        _touching(runs[1], paper)]
        else:
            row = [tiles[0]]
            for i, t in enumerate(tiles[1:], 1):
                row += [_mark_gap(mark, paper, ink, _line(tiles, paper, ink)) if i == where
                        else gap, t]
        out.append(Composed(np.concatenate(row, axis=1), spelled, part))
    return out
