"""A soft shadow over a sheet: the light falling on the paper, where a quadratic surface cannot
follow it.

    light = soft_shading(gray)   # None, or float (H, W): the paper's brightness under the light

``preprocess`` fits the paper's light by a quadratic surface, which follows a gradient or a
vignette but not a broad, soft shadow over most of the sheet with one lit corner: the shadow
then stood out of the surface as "ink" (taken for the ground round the sheet, or read as a
digit), and a pencil digit in it was lost. Such light is followed here by the paper's upper
envelope instead: the picture is shrunk to a grid of at most SHADE_GRID cells a side (strokes
become faint there, noise vanishes) and closed by a square of SHADE_CLOSE of its longer side
(a grey closing: every dark thing narrower than that, the writing, is filled in with the
paper round it); the cells near that closing are the paper, and the others are filled in from
the paper on all their sides (``_fill``). Light falling on paper is smooth, and so is that
envelope; the ground round a sheet (a desk, a note's edge) and a hard shadow's edge are steps
in it. The envelope is taken for the light only when:

* the quadratic surface misses it by SHADE_MISFIT of the paper's brightness somewhere (an
  evenly lit picture, a gradient or a vignette keep the quadratic fit, as before), and
* it is soft: its whole range is spread over at least SHADE_SOFT of the picture's longer side
  at its steepest (a desk's edge rises within a cell or two, a soft shadow's over a fifth of
  the picture).

Dark ink only: the closing keeps light strokes (chalk on a board), which are steps.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image
from scipy import ndimage

SHADE_GRID = 128          # cells on the grid's longer side
SHADE_CLOSE = 0.15        # the closing's square, of the grid's longer side: wider than strokes
SHADE_MISFIT = 0.15       # the quadratic misses the envelope by this share of its top, somewhere
SHADE_SOFT = 0.08         # the envelope's range over its steepest slope, of the longer side
SHADE_PAPER = 0.04        # a cell this far below the closing is ink (or its rim), not paper
SHADE_FILL_SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)   # cells: the fill's Gaussians, narrowest first
SHADE_FILL_WEIGHT = 0.25  # ... the first that holds this much paper fills a cell
SHADE_SMOOTH = 1.0        # cells: the filled envelope's final smoothing
SHADE_MIN_SIDE = 64       # px: smaller pictures are a digit alone, not a photo of a sheet
SHADE_STRIP = 0.5         # the closing's square spans at most this share of the shorter side


def soft_shading(gray: np.ndarray) -> np.ndarray | None:
    """The paper's brightness (float32, gray's shape) where the picture lies under a soft
    shadow a quadratic surface cannot follow (see the module); None elsewhere."""
    if min(gray.shape) < SHADE_MIN_SIDE or max(gray.shape) * SHADE_CLOSE > SHADE_STRIP * min(
            gray.shape):
        return None          # a strip (a number cropped to its line): the square spans it
    small, closed = _closed(gray)
    # Most pictures end here, on the closing alone (a few ms): evenly lit paper, a gradient,
    # a vignette. The closing lies under the paper's light only below the strokes, by less
    # than the shadow's own depth, so half the misfit is a safe first cut.
    if _misfit(closed) < SHADE_MISFIT / 2:
        return None
    envelope = _fill(small, _paper(small, closed), closed)
    if float(np.percentile(envelope, 99)) <= 0.05 or _misfit(envelope) < SHADE_MISFIT:
        return None
    if _softness(envelope) < SHADE_SOFT:
        return None                                   # a step: the ground, a hard shadow
    h, w = gray.shape
    light = Image.fromarray(envelope).resize((w, h), Image.Resampling.BILINEAR)
    return np.asarray(light, dtype=np.float32)


def _closed(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the picture shrunk to the grid, area averaged; its grey closing), float32."""
    h, w = gray.shape
    scale = min(1.0, SHADE_GRID / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = np.asarray(Image.fromarray(gray.astype(np.float32)).resize(
        size, Image.Resampling.BOX), dtype=np.float32)
    side = max(3, round(SHADE_CLOSE * max(small.shape)) | 1)
    # Padded with the edge's own shades first: closed as it is, the edge took the shade of
    # the dilation's padding, the paper half a square inwards (too light where the shadow
    # deepens towards the edge: paper read as a band of ink there).
    padded = np.pad(small, side, mode="edge")
    return small, ndimage.grey_closing(padded, size=(side, side))[side:-side, side:-side]


def _paper(small: np.ndarray, closed: np.ndarray) -> np.ndarray:
    """The grid's cells of paper. The closing itself is no good under the strokes: in a
    shadow's slope it takes the paper's shade from their darker side (a dark blob where the
    digit is). It finds the paper, though: what lies near it, less the rims of the strokes
    (partly inked cells)."""
    return ndimage.binary_erosion(small >= (1 - SHADE_PAPER) * closed, border_value=1)


def _softness(values: np.ndarray) -> float:
    """The range of ``values`` over their steepest slope, of their longer side: how wide
    their rise would be, were it all as steep."""
    spread = float(np.percentile(values, 99)) - float(np.percentile(values, 1))
    slope = float(np.hypot(*np.gradient(values)).max())
    return spread / max(slope * max(values.shape), 1e-9)


def _misfit(values: np.ndarray) -> float:
    """How far the best quadratic surface misses ``values`` at worst, of their top."""
    top = max(float(np.percentile(values, 99)), 1e-6)
    return float(np.abs(values - _quadratic(values)).max()) / top


def _fill(values: np.ndarray, known: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``values`` where ``known``, smoothed, and elsewhere the average of the known values
    nearby, by Gaussians ever wider (normalized convolution) until enough of them is in
    reach: a stroke's cells take the paper on both its sides, not one. float32."""
    known_f = known.astype(np.float32)
    out = fallback.astype(np.float32).copy()
    todo = np.ones(values.shape, dtype=bool)
    for sigma in SHADE_FILL_SIGMAS:
        weight = ndimage.gaussian_filter(known_f, sigma, mode="nearest", truncate=2.5)
        total = ndimage.gaussian_filter(values * known_f, sigma, mode="nearest", truncate=2.5)
        reached = todo & (weight >= SHADE_FILL_WEIGHT)
        out[reached] = total[reached] / weight[reached]
        todo &= ~reached
        if not todo.any():
            break
    return ndimage.gaussian_filter(out, SHADE_SMOOTH, mode="nearest")


def _quadratic(values: np.ndarray) -> np.ndarray:
    """The least-squares quadratic surface through ``values`` (H, W): what the paper's fit
    in ``preprocess`` can follow at best."""
    design, solve = _quadratic_basis(*values.shape)
    return (design @ (solve @ values.ravel().astype(np.float64))).reshape(values.shape)


@functools.lru_cache(maxsize=4)       # 1.5 MB each at 128 x 128
def _quadratic_basis(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(the (H*W, 6) design matrix of a quadratic over an H x W grid, its pseudo-inverse):
    one grid size serves most pictures, and building and solving it anew each time cost 3 ms
    of a 280x280 drawing's 14."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    design = quadratic_terms(yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5)
    return design, np.linalg.pinv(design)


def quadratic_terms(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """(N, 6) the terms 1, x, y, x², xy, y² of a quadratic surface at the points (yy, xx),
    centred and scaled to [-0.5, 0.5] (so its least squares are well conditioned); the
    order ``preprocess``'s paper fit reads its coefficients in."""
    return np.stack([np.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy], -1).reshape(-1, 6)
