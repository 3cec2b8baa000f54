"""Lines printed on a sheet (a notebook's rules, a margin): straight, running across the
picture, thinner than the writing; against a pencil digit as dark as its strokes. None of it
is ink.

    rules = printed_lines(mask)          # the pixels of ``mask`` that are printed lines

* **A rule that stands alone**: a piece reaching from one edge to the opposite one (within
  RULE_EDGE), straight (RULE_STRAIGHT), at most RULE_THINNER as thick as the thickest other
  piece and RULE_SLENDER times as long as thick (a 1 cropped to its ink is some 10-30 times).
* **Rules that cross the digit**: where at least two stand alone (ruled paper), rows along
  their slant whose ink runs across RULE_SPAN of the picture (of the columns a row can reach,
  at least RULE_REACH of the width, where a rule leaves through the top or the bottom), dropped
  except where a stroke crosses them.
* **Rules that all touch the writing** (a number written across the lines, the photo cropped
  to it): the slant is searched for (``_rule_slope``), and at least two such rows, each at
  most RULE_THINNER as thick as the writing's strokes and RULE_SLENDER times thinner than the
  picture is wide, are rules. A digit cropped to its own ink has at most one row across, or
  bars as thick as its strokes (a 2's foot, a 7's top), and a patch of shadow is thick: none.

Both directions are searched: the columns are the transposed picture's rows.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mnistlab.inference.annotations import EIGHT

RULE_EDGE = 0.02                   # a printed line reaches this near both edges (of the length)
RULE_SPAN = 0.9                    # a rule through the digit: its row holds ink this far across
RULE_REACH = 0.3                   # of the width: a rule cut off by the top or bottom, at least
RULE_STRAIGHT = 0.15               # the box's depth over its length: a slant up to ~8 degrees
RULE_THINNER = 0.5                 # at most this thick, against the writing's strokes
RULE_SLENDER = 40                  # and at least this many times as long as it is thick


def thickness(mask: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Each piece's thickness: the half-side of the largest square inside it (a chessboard
    distance, 10x cheaper than Euclid's)."""
    depth = ndimage.distance_transform_cdt(mask, metric="chessboard")
    return np.asarray(ndimage.maximum(depth, labels, np.arange(1, count + 1)))


def printed_lines(mask: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The pixels of ``mask`` that are printed lines (see the module): across the rows, then
    across the columns (the same pieces, transposed). ``labels``: the mask's 8-connected
    pieces, where already counted."""
    if labels is None:
        labels, _ = ndimage.label(mask, structure=EIGHT)
    rows = _rules_across(mask, labels)
    columns = _rules_across(mask.T, labels.T, ruled=rows.any()).T
    if columns.any() and not rows.any():       # a margin across the columns' rules, as below
        rows = _rules_across(mask, labels, ruled=True)
    return rows | columns


def _rules_across(mask: np.ndarray, labels: np.ndarray, ruled: bool = False) -> np.ndarray:
    """Printed lines running along the rows of ``mask`` (slanted by up to ~8 degrees).
    ``ruled``: the other direction holds rules, so one line touching the writing is printed
    too: a notebook's margin, joined to its rules, which alone is no proof of paper."""
    none = np.zeros_like(mask)
    count = int(labels.max())
    if not count:
        return none
    w = mask.shape[1]
    reach = max(2, round(RULE_EDGE * w))
    lines = []
    for i, box in enumerate(ndimage.find_objects(labels)):
        depth, length = box[0].stop - box[0].start, box[1].stop - box[1].start
        if box[1].start <= reach and box[1].stop >= w - reach and depth <= RULE_STRAIGHT * length:
            lines.append(i)
    others = np.setdiff1d(np.arange(count), lines)
    if not lines:
        return _rules_through(mask, ruled)        # every rule may touch the writing
    radius = thickness(mask, labels, count)
    if not others.size:       # nothing else: a blank ruled sheet, if two or more are slender
        lines = [i for i in lines if w >= RULE_SLENDER * (2 * radius[i] + 1)]
        return np.isin(labels, np.array(lines) + 1) if len(lines) >= 2 else none
    lines = [i for i in lines if radius[i] <= RULE_THINNER * radius[others].max()
             and w >= RULE_SLENDER * (2 * radius[i] + 1)]
    rules = np.isin(labels, np.array(lines) + 1) if lines else none
    if len(lines) >= 2:                                   # ruled paper: rules cross the digit
        slope = float(np.median([_slope(labels == i + 1) for i in lines]))
        thick = int(max(radius[i] for i in lines))
        return rules | _crossing_rules(mask & ~rules, slope, thick)
    return rules | _rules_through(mask & ~rules, ruled)   # the others may all touch the writing


def _rules_through(mask: np.ndarray, ruled: bool = False) -> np.ndarray:
    """Ruled paper whose every rule touches the writing (a number written across the lines,
    the photo cropped to it): at least two parallel rows, along one slant, whose ink runs
    across RULE_SPAN of the picture, each at most RULE_THINNER as thick as the writing's
    strokes; dropped except where a stroke crosses them. A digit cropped to its own ink has
    at most one such row, or bars as thick as its strokes (a 2's foot, a 7's top): none.
    ``ruled`` (rules found the other way): one such row is enough."""
    none = np.zeros_like(mask)
    w = mask.shape[1]
    if w < RULE_SLENDER or mask.any(axis=0).mean() < RULE_SPAN:
        return none                                # nothing runs across: no rule (the cheap test)
    slope = _rule_slope(mask)
    if slope is None:
        return none
    across = _rule_rows(mask, slope)
    runs = bands(across)
    if len(runs) < (1 if ruled else 2):
        return none
    thick = max(b - a for a, b in runs) - 2           # each band: the line and a row either side
    grid = _slant_grid(*mask.shape, slope)
    rest = mask & ~_in_picture(across, grid, mask.shape)    # the writing alone, to measure
    stroke = 2 * int(ndimage.distance_transform_cdt(rest, metric="chessboard").max()) + 1
    if thick > RULE_THINNER * stroke:
        return none                                # bars as thick as the writing: its own
    return _crossing_rules(mask, slope, (thick + 1) // 2, grid, across)


def _rule_slope(mask: np.ndarray) -> float | None:
    """The slant (rows per column, within RULE_STRAIGHT) along which the most rows of
    ``mask`` hold ink across RULE_SPAN of it, searched on a copy shrunk to at most 96 columns
    and then refined to a row's drift over the whole width; None: no such row."""
    h, w = mask.shape
    k = max(1, int(np.ceil(w / 96)))
    if h < k:
        return None
    small = mask[: h - h % k, : w - w % k]
    if k > 1:
        small = small.reshape(small.shape[0] // k, k, small.shape[1] // k, k).any(axis=(1, 3))
    sw = small.shape[1]
    steps = int(np.ceil(RULE_STRAIGHT * sw))
    coarse = [i / sw for i in range(-steps, steps + 1)]
    counts = [int(c.sum()) for c in _rows_across(small, coarse)]
    if max(counts) == 0:
        return None
    found = _refined(mask, _likeliest(coarse, counts), k)
    if found is None and k > 1:
        # The shrunk copy saturated: on squared paper every shrunk row lies near a line, so
        # each slope "ran across" there and the likeliest was a wrong one, along which no row
        # of the full picture does (the grid's columns stayed in as ink, read as 1s). At full
        # size, then: some 80 ms on a 1,000 px photo, paid only here.
        counts = [int(c.sum()) for c in _rows_across(mask, coarse)]
        if max(counts) == 0:
            return None
        found = _refined(mask, _likeliest(coarse, counts), k)
    return found


def _likeliest(slopes: list[float], counts: list[int]) -> float:
    """The slope with the most rows across; of equals, the nearest to level."""
    return min((s for s, c in zip(slopes, counts, strict=True) if c == max(counts)), key=abs)


def _refined(mask: np.ndarray, best: float, k: int) -> float | None:
    """``best`` refined to a row's drift over ``mask``'s width (within the ``k`` columns one
    shrunk column held): the slope with the most rows across; None where none runs across."""
    w = mask.shape[1]
    fine = [best + i / w for i in range(-k, k + 1, 2)]     # a row either side is counted
    counts = [int(c.sum()) for c in _rows_across(mask, fine)]
    if max(counts) == 0:
        return None
    return max(zip(counts, [-abs(s - best) for s in fine], fine, strict=True))[2]


def _rows_across(mask: np.ndarray, slopes: list[float]) -> list[np.ndarray]:
    """For each slope, which rows along it (``_straightened``'s) hold ink across RULE_SPAN of
    ``mask``'s columns, within a row either side (a thin line straightened along a rounded
    slant steps between neighbouring rows): placed from the ink's own pixels."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask)
    out = []
    for slope in slopes:
        shift, pad = _shifts(w, slope)
        straight = np.zeros((h + 2 * pad + 2, w), dtype=bool)
        straight[rows - shift[cols] + pad + 1, cols] = True
        near = straight[1:-1] | straight[:-2] | straight[2:]
        # a rule that leaves through the top or the bottom spans the columns it can reach
        reach = np.zeros(h + 2 * pad + 1, dtype=int)
        np.add.at(reach, pad - shift, 1)
        np.add.at(reach, pad - shift + h, -1)
        reach = np.cumsum(reach[:-1])
        out.append((near.sum(axis=1) >= RULE_SPAN * reach) & (reach >= RULE_REACH * w))
    return out


def _rule_rows(mask: np.ndarray, slope: float) -> np.ndarray:
    """The straightened rows (``_rows_across``) that can be a printed line's: in runs at
    least RULE_SLENDER times thinner than the picture is wide (a solid patch of shadow runs
    across too, but thick)."""
    across = _rows_across(mask, [slope])[0]
    for a, b in bands(across):
        if RULE_SLENDER * (b - a - 2) > mask.shape[1]:    # the line and a row either side
            across[a:b] = False
    return across


Grid = tuple[np.ndarray, np.ndarray, np.ndarray]


def _shifts(w: int, slope: float) -> tuple[np.ndarray, int]:
    """How far each of ``w`` columns moves so that lines at ``slope`` run along the rows, and
    the largest move (the padding above and below)."""
    shift = np.round(slope * (np.arange(w) - w / 2)).astype(int)
    return shift, int(np.abs(shift).max())


def _slant_grid(h: int, w: int, slope: float) -> Grid:
    """For each (straightened row, column): the picture's row, its column, and whether the
    row lies inside the picture."""
    shift, pad = _shifts(w, slope)
    rows = np.arange(h + 2 * pad)[:, None] + shift[None, :] - pad      # straight row -> row
    inside = (rows >= 0) & (rows < h)
    return rows, np.broadcast_to(np.arange(w), rows.shape), inside


def _straightened(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """``mask`` with each column moved along ``grid`` (``_slant_grid``): lines at its slope
    run along the rows; padded above and below by the largest move."""
    rows, cols, inside = grid
    out = np.zeros(rows.shape, dtype=bool)
    out[inside] = mask[rows[inside], cols[inside]]
    return out


def _in_picture(flags: np.ndarray, grid: Grid, shape: tuple[int, ...]) -> np.ndarray:
    """The pixels of a picture of ``shape`` that the straightened ``flags`` (the grid's shape,
    or one flag per straightened row) mark: ``_straightened`` undone."""
    rows, cols, inside = grid
    take = inside & (flags if flags.ndim == 2 else flags[:, None])
    out = np.zeros(shape, dtype=bool)
    out[rows[take], cols[take]] = True
    return out


def bands(flags: np.ndarray) -> list[tuple[int, int]]:
    """The runs of True ``flags``, as (start, stop)."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _slope(piece: np.ndarray) -> float:
    """Rows per column of a line-shaped piece (least squares)."""
    rows, cols = np.nonzero(piece)
    cols = cols - cols.mean()
    return float((cols * (rows - rows.mean())).sum() / max(float((cols * cols).sum()), 1.0))


def _crossing_rules(mask: np.ndarray, slope: float, thick: int, grid: Grid | None = None,
                    across: np.ndarray | None = None) -> np.ndarray:
    """The rules running through the rest of ``mask`` at ``slope``: rows (along the slant)
    whose ink runs across RULE_SPAN of the picture (``_rule_rows``, unless ``across`` has
    them), less where a stroke crosses them (ink just above and just below the rule's band).
    ``grid``: ``_slant_grid`` at that slope, where already made."""
    grid = _slant_grid(*mask.shape, slope) if grid is None else grid
    straight = _straightened(mask, grid)
    across = _rule_rows(mask, slope) if across is None else across
    if not across.any():
        return np.zeros_like(mask)
    band = ndimage.binary_dilation(across, iterations=1)
    reach = 2 * thick + 3                                # past the rule's band, both ways
    above = np.zeros_like(straight)
    below = np.zeros_like(straight)
    above[reach:] = straight[:-reach]
    below[:-reach] = straight[reach:]
    return _in_picture(straight & band[:, None] & ~(above & below), grid, mask.shape)
