"""What a photo of a sheet shows besides the writing: the ground round the sheet, and lines and
boxes printed on it. None of it is ink.

    ink, mask, notes = paper_only(ink, mask, threshold)   # ink_image's first cut, cleaned

* **The ground round the sheet** (a desk, wood grain, the wall round a board) is as far from
  the paper's shade as the ink is, so Otsu's cut puts it with the strokes and the sheet's
  outline became the "digit". A piece of ink that runs along at least SURROUNDINGS_EDGE_SHARE
  of the picture's edge, at least SURROUNDINGS_THICKER times as thick as the thickest piece
  off the edge and SURROUNDINGS_MIN_RADIUS of the picture's shorter side thick, is brought down
  to the paper's level: what stands out of it (a digit written in a shadow) stays ink.
* **Printed lines** (a notebook's rules, a margin): ``mnistlab.inference.rules``.
* **Printed boxes** (a form's fields) round the writing: a piece whose four sides are covered
  (FRAME_COVER), mostly paper inside (FRAME_MAX_FILL) with writing in it, and drawn at most
  RULE_THINNER as thick as that writing, loses its sides and the lines that divide a row of
  fields (``_frames``).

All of them need ink of another kind beside them: a digit cropped to its own ink touches the edges
and may run across the whole picture, and nothing of it is taken. Two exceptions, for a sheet
with nothing written on it: the ground alone is taken when it runs along LONE_EDGE_SHARE of the
edge, is LONE_MIN_RADIUS thick and leaves one broad sheet of paper (``_one_sheet``), and two
or more slender printed lines alone are rules; the picture is then refused as blank.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mnistlab.inference.annotations import EIGHT, annotations
from mnistlab.inference.rules import RULE_THINNER, bands, printed_lines, thickness

SURROUNDINGS_EDGE_SHARE = 0.15
SURROUNDINGS_THICKER = 2.0
SURROUNDINGS_MIN_RADIUS = 0.03     # of the picture's shorter side
FRAME_COVER = 0.9                  # a printed box: ink along this share of each side
FRAME_MIN_SIDE = 12                # px: smaller pieces are no box round a digit
FRAME_MAX_FILL = 0.5               # a box's inside is mostly paper
# With no ink off the edge (a blank sheet on a desk, or a digit cropped to its own ink), the
# ground must run along a whole side's share of the edge, be this thick, and leave one sheet of
# paper this large and broad: a cropped 7 leaves two pieces of paper, a cropped 1 slivers.
LONE_EDGE_SHARE = 0.25
LONE_MIN_RADIUS = 0.08             # of the picture's shorter side (the ground 10-19% here)
LONE_SHEET = 0.4
LONE_SHEET_RADIUS = 0.15           # of the longer side: the sheet's half-width at least
NOISE_PIECES = 1000                # more pieces of "ink" than this: noise, nothing printed

# what paper_only tells the user it left out
NOTES = {"ground": "the ground round the sheet was left out",
         "lines": "lines printed on the sheet were left out",
         "box": "a printed box round the writing was left out",
         "added": "a circle or a line drawn round the writing was left out"}


def paper_only(ink: np.ndarray, mask: np.ndarray, threshold: float
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(ink, mask, notes): the ground round the sheet brought to the paper's level, printed
    lines and boxes and a writer's rings and underlines dropped; ``ink`` float (H, W), paper
    near 0; ``mask`` = ink > ``threshold``; ``notes``: what was left out, for the user."""
    labels, count = ndimage.label(mask, structure=EIGHT)
    found: dict[str, np.ndarray] = {}
    before = mask
    ink, mask = _level_surroundings(ink, mask, threshold, labels, count)
    found[NOTES["ground"]] = before & ~mask
    same = mask is before                         # nothing levelled: the pieces are counted
    if count < 2 and same:    # one piece (most drawings): a box or rules the writing touches
        rules = found[NOTES["lines"]] = printed_lines(mask, labels)
        found[NOTES["box"]] = _frames(mask & ~rules, None if rules.any() else labels)
    elif count <= NOISE_PIECES:                   # more: a spray of noise, no lines or boxes
        # boxes first: a frame's top and bottom alone pass for rules, and taken as such they
        # left its sides to be read as 1s ("305" in a plate's frame read "13051")
        boxes = found[NOTES["box"]] = _frames(mask, labels if same else None)
        rules = found[NOTES["lines"]] = printed_lines(mask & ~boxes)
        found[NOTES["added"]] = annotations(mask & ~rules & ~boxes)
    drop = np.zeros_like(mask)
    for taken in found.values():
        drop |= taken
    if drop.any():
        ink = np.where(drop, np.float32(np.median(ink[~mask])), ink)
        mask = mask & ~drop
    return ink, mask, [note for note, taken in found.items() if taken.any()]


def _surroundings(mask: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """The pieces of ``mask`` (8-connected: ``labels``, ``count``) that lie around the sheet
    (see the module), or none."""
    none = np.zeros_like(mask)
    if not count:
        return none
    rim = np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])
    contact = np.bincount(rim, minlength=count + 1)[1:]      # each piece's pixels on the edge
    index = np.arange(1, count + 1)
    inside = contact == 0
    along = contact >= SURROUNDINGS_EDGE_SHARE * rim.size
    if not along.any():
        return none
    radius = thickness(mask, labels, count)
    if inside.any():
        taken = along & (radius >= SURROUNDINGS_THICKER * radius[inside].max()) & (
            radius >= SURROUNDINGS_MIN_RADIUS * min(mask.shape))
    else:          # nothing off the edge to compare with: a blank sheet, or a cropped digit
        taken = ((contact >= LONE_EDGE_SHARE * rim.size)
                 & (radius >= LONE_MIN_RADIUS * min(mask.shape)))
        if not taken.any() or not _one_sheet(mask):
            return none
    return np.isin(labels, index[taken]) if taken.any() else none


def _one_sheet(mask: np.ndarray) -> bool:
    """Whether the paper (what is not ``mask``) is one piece holding at least LONE_SHEET of
    the picture: a sheet, not the gaps round a digit cropped to its ink (a 7's two sides)."""
    paper = ~mask
    labels, count = ndimage.label(paper)
    if not count:
        return False
    sizes = np.asarray(ndimage.sum_labels(paper, labels, np.arange(1, count + 1)))
    if sizes.max() < LONE_SHEET * paper.size or sizes.max() < 0.9 * sizes.sum():
        return False
    # and broad: a digit's stroke, cropped with the shades taken the wrong way round, is not
    depth = ndimage.distance_transform_cdt(paper, metric="chessboard")
    return bool(depth.max() >= LONE_SHEET_RADIUS * max(mask.shape))


def _level_surroundings(ink: np.ndarray, mask: np.ndarray, threshold: float,
                        labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Each piece of the surroundings brought down to the paper's level, with its rim; the
    same ``mask`` object back where there are none."""
    labels, count = ndimage.label(_surroundings(mask, labels, count), structure=EIGHT)
    if not count:
        return ink, mask
    paper = float(np.median(ink[~mask]))
    ink = ink.copy()
    for piece in range(1, count + 1):
        region = ndimage.binary_dilation(labels == piece, iterations=2)   # and its blurred rim
        ink[region] -= float(np.median(ink[labels == piece])) - paper
    return ink, ink > threshold


def _frames(mask: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """The pixels of ``mask`` that are printed boxes round the writing (a form's fields): a
    piece whose four outermost lines are each covered along FRAME_COVER of their length, with
    writing inside, mostly paper (FRAME_MAX_FILL), and sides at most RULE_THINNER as thick as
    the writing's strokes. Its sides go, and so do the straight lines across it from side to
    side that divide a row (or a column) of fields; what is written inside stays. ``labels``:
    the mask's 8-connected pieces, where already counted."""
    if labels is None:
        labels, _ = ndimage.label(mask, structure=EIGHT)
    out = np.zeros_like(mask)
    for i, box in enumerate(ndimage.find_objects(labels), 1):
        h, w = box[0].stop - box[0].start, box[1].stop - box[1].start
        if min(h, w) < FRAME_MIN_SIDE:
            continue
        piece = labels[box] == i
        reach = max(3, round(0.1 * min(h, w)))            # how deep a side may be
        sides = [_side(piece, reach), _side(piece[::-1], reach),
                 _side(piece.T, reach), _side(piece.T[::-1], reach)]
        if min(sides) == 0:
            continue
        top, bottom, left, right = sides
        inner = np.zeros_like(piece)
        inner[top:h - bottom, left:w - right] = True
        across = piece & inner
        written = mask[box] & inner
        if not written.any() or across.sum() > FRAME_MAX_FILL * inner.sum():
            continue                    # nothing written inside (a 0, say), or a solid blob
        stroke = 2 * int(ndimage.distance_transform_cdt(written, metric="chessboard").max()) + 1
        if min(sides) - 2 > RULE_THINNER * stroke:
            continue                    # drawn as thick as the writing: a boxy 8, a slashed 0
        columns = across.mean(axis=0) >= FRAME_COVER * inner.any(axis=1).mean()
        rows = across.mean(axis=1) >= FRAME_COVER * inner.any(axis=0).mean()
        if columns.any() and rows.any():
            continue                    # lines both ways: squared paper, not a form's fields
        fields = 1 + len(bands(columns)) + len(bands(rows))
        if fields > 1 and max(h, w) / fields < 0.5 * min(h, w):
            continue                    # fields narrower than half their height: a ruling
        band = ~inner
        band[:, columns] = True
        band[rows, :] = True
        out[box] |= piece & band
    return out


def _side(piece: np.ndarray, reach: int) -> int:
    """How many of the first rows of ``piece`` (down to the last one covered along
    FRAME_COVER of the width, within ``reach``) are a printed side; 0: none."""
    covered = np.flatnonzero(piece[:reach].mean(axis=1) >= FRAME_COVER)
    return int(covered[-1]) + 2 if covered.size else 0          # and the blurred rim below
