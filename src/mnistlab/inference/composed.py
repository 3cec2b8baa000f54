"""Numbers composed from single-digit pictures, to measure how written numbers are read.

    for picture, want in compose_numbers(samples, 200, marks=True):   # want: "06.12"
        ...

Each number takes 2-4 samples of one part, scaled to one height and set side by side with a
gap of a tenth of it. With ``marks``, one gap of each number is widened and holds a dot, a
colon or a dash, drawn in the pictures' own ink at the place a writer puts it (against the
digits' line: the rows their ink spans), and ``want`` spells it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from mnistlab.data.realworld import Sample

HEIGHT = 160            # px, every digit
MARKS = ".:-"


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


def compose_numbers(samples: Sequence[Sample], count: int, *, seed: int = 0,
                    marks: bool = False) -> list[tuple[np.ndarray, str]]:
    """``count`` pictures of 2-4 digit numbers, each digit a sample of the same part:
    (uint8 picture HEIGHT px high, what it spells)."""
    rng = np.random.default_rng(seed)
    by_part: dict[str, list[Sample]] = {}
    for s in samples:
        by_part.setdefault(s.part, []).append(s)
    parts = sorted(by_part)
    out = []
    for _ in range(count):
        pool = by_part[parts[int(rng.integers(len(parts)))]]
        chosen = [pool[int(i)] for i in rng.integers(0, len(pool), int(rng.integers(2, 5)))]
        tiles = [_scaled(s) for s in chosen]
        pixels = np.concatenate([t.ravel() for t in tiles])
        paper = int(np.median(pixels))
        ink = int(np.percentile(pixels, 1 if paper > 127 else 99))
        gap = np.full((HEIGHT, HEIGHT // 10), paper, np.uint8)
        where = int(rng.integers(1, len(tiles))) if marks else 0    # the gap before this digit
        mark = MARKS[int(rng.integers(len(MARKS)))] if marks else ""
        row, spelled = [tiles[0]], str(chosen[0].label)
        for i, (t, s) in enumerate(zip(tiles[1:], chosen[1:], strict=True), 1):
            if i == where:
                row += [_mark_gap(mark, paper, ink, _line(tiles, paper, ink)), t]
                spelled += mark
            else:
                row += [gap, t]
            spelled += str(s.label)
        out.append((np.concatenate(row, axis=1), spelled))
    return out
