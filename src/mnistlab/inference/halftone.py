"""Halftoned pictures: 1-bit scans and faxes that draw grey as a pattern of dots (dithering).

    if halftoned(img, gray):               # img: the decoded picture, gray: as read
        gray = descreen(gray)

A dithered pencil stroke is hundreds of separate dots. Read as ink, a light one was refused
("1,112 separate pieces of ink: more than a written number has") or read as a number of
pieces: 7 of 40 dithered MNIST digits failed so with a seed CNN run (all at the lightest shade,
35% grey). Its grey is the dots' local density, so a halftoned picture is smoothed by a
Gaussian first (inverse halftoning by low-pass filtering, the simplest of the known ways) and
then read like any grey picture.

A picture is halftoned when it has two levels and one of them lies mostly in dots: the dark
pixels (light grey drawn as scattered dots) or the light ones (dark grey drawn as black with
scattered holes). A two-level line drawing (a thresholded scan, a paint program's pencil,
a 1 px line) has few pieces, none of them dots, and is left as it is.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from mnistlab.inference.annotations import EIGHT

SIGMA = 1.5            # px: the smoothing, about the spacing of a light grey's dots
DOT = 4                # px: a piece this small is a dot of the pattern
MIN_DOTS = 30          # dots enough to be a pattern, not a few specks of dust
DOT_SHARE = 0.5        # of one level's pieces that are dots


def two_levels(img: Image.Image) -> bool:
    """Whether the decoded picture has two levels at most (a 1-bit PNG, or one saved as grey
    or with a two-colour palette); read before any reduction, which would blend them."""
    if img.mode == "1":
        return True
    if img.mode not in ("L", "P", "LA", "PA", "RGB", "RGBA"):
        return False
    colours = img.getcolors(maxcolors=2)          # None when there are more
    return colours is not None


def _mostly_dots(level: np.ndarray, drop_largest: bool) -> bool:
    labels, count = ndimage.label(level, structure=EIGHT)
    if count == 0:
        return False
    sizes = np.bincount(labels.ravel())[1:]
    if drop_largest:                    # the light level's largest piece is the paper
        sizes = np.delete(sizes, int(np.argmax(sizes)))
    dots = int((sizes <= DOT).sum())
    return dots >= MIN_DOTS and dots >= DOT_SHARE * len(sizes)


def _dark(values: np.ndarray) -> np.ndarray:
    """The darker of a picture's levels: below the midpoint of its darkest and lightest value
    (a palette's two colours need not be black and white)."""
    return values < (float(values.min()) + float(values.max())) / 2


def halftoned(img: Image.Image, gray: np.ndarray) -> bool:
    """Whether the decoded picture ``img``, read as ``gray`` (H, W) in [0, 1], draws grey as
    dots. Judged on the picture's own pixels where ``gray`` was reduced for size (a reduction
    blends dots, and breaks a thin line into some), else on ``gray``."""
    if not two_levels(img):
        return False
    reduced = max(img.size) > max(gray.shape)
    has_alpha = "A" in img.mode or "transparency" in img.info
    dark = _dark(np.asarray(img.convert("L"))) if reduced and not has_alpha else _dark(gray)
    return _mostly_dots(dark, drop_largest=False) or _mostly_dots(~dark, drop_largest=True)


def descreen(gray: np.ndarray) -> np.ndarray:
    """The picture's local grey: a Gaussian of SIGMA px over its dots."""
    return ndimage.gaussian_filter(gray, SIGMA, mode="nearest").astype(np.float32)
