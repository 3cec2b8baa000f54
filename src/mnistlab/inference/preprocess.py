"""Any photo or drawing of one digit -> the 28x28 image MNIST would have made of it.

MNIST's recipe (LeCun et al.): white ink on black, the digit's bounding box scaled to fit
20x20 keeping its aspect ratio (anti-aliased), pasted into 28x28 so that its centre of mass
sits at the centre. Measured on MNIST's training set, the centre of mass lies at (14.0, 14.0)
in array coordinates with a spread of 0.29 px: an integer shift, which we copy.

Real images need more than that recipe, done in this order:

1. decode safely (PNG/JPEG only, pixel count checked from the header before decoding),
   apply the EXIF orientation, composite any alpha channel onto a contrasting background;
   a halftoned (dithered) two-level picture is smoothed to its grey (mnistlab.inference.halftone);
2. make ink bright: against a robust fit of the paper, the ink is the heavier tail (darker
   or lighter than the paper); dark ink gets inverted;
3. flatten uneven lighting (phone photos): a smooth quadratic surface is fitted to the paper
   pixels only (iteratively, so the ink does not pull it); the picture is divided by it
   (light on paper is multiplicative) or, for light ink on a dark ground, it is subtracted;
   a broad soft shadow a quadratic cannot follow is followed by the paper's own upper
   envelope instead (mnistlab.inference.shading);
4. Otsu's threshold separates ink from paper; what lies around the sheet (a desk, the wall
   round a board) and lines printed on it (a notebook's rules) are set apart from the ink
   (mnistlab.inference.sheet); small specks are dropped; ink that does not stand out of the
   paper's own noise (``INK_NOISE_SIGMAS``) means no digit (``NoInk``): a faint pencil stroke
   on clean paper is ink, flat or noisy paper is not;
5. pen strokes much thinner than MNIST's (about 1/8 of the digit's height) are thickened;
6. crop, scale, centre by mass.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from mnistlab.errors import UserError
from mnistlab.inference.annotations import EIGHT, SPECK
from mnistlab.inference.halftone import descreen, halftoned
from mnistlab.inference.shading import quadratic_terms, soft_shading
from mnistlab.inference.sheet import NOISE_PIECES, paper_only

# A phone's JPEG often carries a second, smaller picture (the multi-picture format): Pillow
# names it MPO, and its first picture is the photo, decoded as any JPEG.
JPEG_FORMATS = ("JPEG", "MPO")
FORMATS = ("PNG", *JPEG_FORMATS)
MAX_PIXELS = 40_000_000        # a 40-megapixel phone photo still passes; bombs do not
JPEG_HEADROOM = 4              # a JPEG may declare 4x that: it is decoded at a fraction
SHEET_RADIUS = 0.1             # a bright piece this thick (of the shorter side) is a sheet ...
SHEET_HOLDS = 0.9              # ... when it holds this share of what stands out dark
SHEET_MIN_DARK = 0.0002        # ... and that is some writing (of the picture: labelling spared)
SHEET_WRITING = 0.002          # ... this share of the sheet at least, not a few noisy pixels
SHEET_MARGIN = 3.0             # a sheet's paper is this many times as thick as its strokes
SHEET_SPECK = 6                # px: dark pieces smaller than this are a desk's noise, no writing
SHEET_SOLID = 0.7              # a sheet is bright but for its writing: a frame is hollow
MIN_CORE_PIXELS = 20           # inner stroke pixels enough to judge ink on transparency by
WORK_SIDE = 1024               # px: larger pictures are reduced first (the digit ends at 20 px)
BOX = 20                       # px: the digit's longer side, as in MNIST
SIZE = 28                      # px: the output side
TARGET_COM = 14.0              # MNIST's measured mean centre of mass (row, column)
STROKE_MIN_RATIO = 0.07        # stroke width / longer side under which we thicken (MNIST 0.08-0.20)
STROKE_TARGET_RATIO = 0.11     # ... and the ratio we thicken to (MNIST's median is 0.125)
FADE_WIDTH = 2.0               # strokes under 1/this of the shrink step: shrunk by blocks
# px: a picture smaller than this each way is refused. Ten drawn digits shrunk to pictures of
# 5 or 8 px a side read 2 of 10 right, five as confident 1s; of 10 px 6, of 12 8, of 16 9.
MIN_PICTURE_SIDE = 12
MIN_INK_SIDE = 6               # px: so is writing this small in a larger picture (as read)
STROKE_SPAN = 0.06             # of the shorter side: wider than a stroke, narrower than a shadow
STROKES_DARKER = 3.0           # dark strokes this many times the light ones: dark ink
LIT_RIM = 0.25                 # lit paper runs along at least this share of the edge
NOISE_SHARE = 0.25             # "ink" over this share of the picture, in over NOISE_PIECES
#                                pieces: Otsu split the paper's noise (a faint stroke's: 52%,
#                                11,000 pieces; a digit cropped to its ink: one piece)
FAINT_SMOOTH = 1.5             # px: the Gaussian that smooths such a picture's noise away
# Ink must stand this many noise sigmas above the paper (judged after a 1 px blur, see
# _stands_out). Measured on synthetic scans (tests/inference/test_ink.py): faint pencil strokes
# stand 6.5-46 sigmas out, blank paper (sensor noise, lighting gradients and waves, vignettes,
# JPEG noise) at most 4.3. The floor is 5 grey levels of 255, where 8-bit pictures run out.
INK_NOISE_SIGMAS = 5.5
INK_MIN_CONTRAST = 0.02
# Ink this far below zero (paper brighter than the fitted paper) on this share of the picture:
# the fitted surface followed the strokes, not the paper (a fitted photo's paper: under 0.05)
FIT_OVERSHOOT = 0.25
FIT_OVERSHOOT_SHARE = 0.02


class ImageInputError(UserError):
    """Base class for a picture we cannot use; the web app maps each subclass to a status."""


class NotAnImage(ImageInputError):
    pass


class UnsupportedFormat(ImageInputError):
    pass


class ImageTooLarge(ImageInputError):
    pass


class NoInk(ImageInputError):
    pass


class TooSmall(ImageInputError):
    pass


@dataclass
class Preprocessed:
    """The model's input and what was done to get it (for --debug-dir and the web app)."""

    image: np.ndarray = field(repr=False)   # float32 (28, 28) in [0, 1], ink white on black
    inverted: bool                    # True if the picture was dark ink on light paper
    bbox: tuple[int, int, int, int]   # (top, left, bottom, right) of the ink, working pixels
    thickened_px: float = 0.0         # how much the strokes were widened, working pixels
    left_out: list[str] = field(default_factory=list)   # what finding the ink set apart

    @property
    def notes(self) -> list[str]:
        """Anything unusual done, for the user: what was left out, then widened strokes."""
        widened = [widened_note(f"{self.thickened_px:.0f}")] if self.thickened_px else []
        return [*self.left_out, *widened]


def open_image(source: str | os.PathLike[str] | bytes, *,
               max_pixels: int = MAX_PIXELS,
               max_decoded_pixels: int | None = None) -> Image.Image:
    """Decode a PNG or JPEG (path or bytes) safely and apply its EXIF orientation.

    ``max_pixels`` bounds the size the header declares; ``max_decoded_pixels`` (default: no
    further bound) what is actually decoded, which for a JPEG is the reduced draft size. Both
    are checked before any pixel is decoded, so the memory a picture costs is bounded by them.
    """
    name = "the upload" if isinstance(source, bytes) else str(source)
    if isinstance(source, bytes):
        if not source:
            raise NotAnImage("empty image: no bytes were sent; send a PNG or JPEG file")
        if source[:11].lower() == b"data:image/":
            raise NotAnImage("the upload is a data: URL (the picture as base64 text, as a "
                             "canvas's toDataURL gives it), not the picture's bytes: decode "
                             "it first, or send canvas.toBlob's PNG")
        fp: io.BytesIO | Path = io.BytesIO(source)
    else:
        fp = Path(source)
        if fp.is_dir():
            raise UserError(f"{name} is a folder, not a picture; give the pictures in it, "
                            f"e.g. {fp / '*.png'}")
        if not fp.is_file():
            raise UserError(f"{name}: no such file; give the path of a PNG or JPEG image")
        if fp.stat().st_size == 0:
            raise NotAnImage(f"{name} is empty (0 bytes); give a PNG or JPEG file")
    try:
        # Lazy: reads the header only. Every format is identified so that the error can name
        # it, but only PNG and JPEG are ever decoded (checked just below).
        with _no_bomb_warning():
            img = Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{name}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError):
        raise NotAnImage(f"{name}: not an image that can be read{_named_format(fp)}; "
                         "expected a PNG or JPEG file") from None
    if img.format not in FORMATS:
        raise UnsupportedFormat(f"{name}: {img.format} images are not supported; "
                                "convert it to PNG or JPEG")
    if getattr(img, "is_animated", False) and img.format == "PNG":
        # its first frame alone was read (a blank first frame: "looks blank")
        raise UnsupportedFormat(f"{name}: an animated PNG ({img.n_frames} frames); send one "
                                "still picture")
    w, h = img.size
    jpeg = img.format in JPEG_FORMATS
    # a JPEG decodes at 1/2, 1/4 or 1/8 scale directly (its draft), so a 48 or 50 MP phone
    # photo costs a few megapixels: its header may declare JPEG_HEADROOM times the limit
    declared = max_pixels * (JPEG_HEADROOM if jpeg else 1)
    if w * h > declared or w <= 0 or h <= 0:
        raise ImageTooLarge(f"{name}: {w}x{h} pixels is more than the {declared:,} allowed; "
                            "send a smaller picture")
    if jpeg:
        img.draft(img.mode, (WORK_SIDE, WORK_SIDE))
    dw, dh = img.size  # the draft's size for a JPEG
    if dw * dh > max_pixels:         # a JPEG whose draft could not shrink it enough
        raise ImageTooLarge(f"{name}: {w}x{h} pixels ({dw}x{dh} decoded) is more than the "
                            f"{max_pixels:,} allowed; send a smaller picture")
    if max_decoded_pixels is not None and dw * dh > max_decoded_pixels:
        decoded = f" ({dw}x{dh} decoded)" if (dw, dh) != (w, h) else ""
        raise ImageTooLarge(f"{name}: {w}x{h} pixels{decoded} is more than the "
                            f"{max_decoded_pixels:,} allowed; send a smaller picture")
    try:
        with _no_bomb_warning():
            img.load()
        # In place: the default returns a copy of the whole picture even when nothing turns.
        ImageOps.exif_transpose(img, in_place=True)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"{name}: image too large ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise NotAnImage(f"{name}: the image data is damaged ({exc}); send a whole PNG or "
                         "JPEG file") from None
    return img


@contextmanager
def _no_bomb_warning() -> Iterator[None]:
    """Pillow's DecompressionBombWarning silenced: its limit (89 MP) is not ours, which
    open_image checks itself, and the two lines of Pillow's source it printed over 89 MP broke
    the one-line answer or error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


# formats Pillow cannot open here, named from their first bytes so the error says what it is
_UNREADABLE = {b"ftypheic": "HEIC", b"ftypheix": "HEIC", b"ftypmif1": "HEIF",
               b"ftypavif": "AVIF", b"ftyphevc": "HEIC"}


def _named_format(fp: io.BytesIO | Path) -> str:
    """What the error adds where the first bytes name a format we cannot read: the format
    and how to get a JPEG instead; else nothing."""
    if isinstance(fp, io.BytesIO):
        head = fp.getvalue()[:16]
    else:
        try:
            with fp.open("rb") as f:
                head = f.read(16)
        except OSError:
            return ""
    kind = _UNREADABLE.get(head[4:12])
    return (f" (a {kind} picture, as iPhones save by default: export it as JPEG, or set the "
            "camera to 'most compatible')" if kind else "")


def to_gray(img: Image.Image) -> np.ndarray:
    """Luminance as float32 (H, W) in [0, 1], reduced to at most WORK_SIDE px on a side.

    Transparent pixels are composited onto a background: where most of the picture is opaque
    (a sheet with see-through margins), the sheet's own median colour; where only the strokes
    are opaque, a colour contrasting with them: white behind dark strokes (the usual case),
    black behind light strokes (white ink on a transparent canvas). A halftoned picture (grey
    drawn as dots: a 1-bit scan) comes back smoothed to its grey.
    """
    gray = _composited(img)
    return descreen(gray) if halftoned(img, gray) else gray


def _composited(img: Image.Image) -> np.ndarray:
    if img.mode == "1":              # resized as it is, a 1-bit picture would stay 1-bit
        img = img.convert("L")
    if max(img.size) > WORK_SIDE:
        # The size img.copy().thumbnail() gave, without copying the whole picture first: the
        # reduction runs on uint8 pixels, before anything is converted to float. Bilinear
        # (antialiased), not BOX: at a step that is no whole number, BOX puts each row wholly
        # into one output row, one or two rows each, so a 1 px line came out at full, half or
        # quarter shade by where it fell, and a 1 px 7 on a 1,600 px canvas fell into 7
        # pieces of ink (4 of 20 thin-pen digits right there, 18 of 20 now).
        img = img.resize(_work_size(*img.size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P"
                                                       and "transparency" in img.info)
    if has_alpha:
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3]
        lum = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        opaque = alpha > 0.5
        if opaque.mean() > 0.5:      # an opaque sheet with see-through margins: extend it
            background = float(np.median(lum[opaque]))
        else:                        # strokes alone on transparency: contrast with them,
            # judged by the strokes' inner pixels, each by its opacity (a soft pencil is never
            # opaque): a palette PNG keeps the light fringe of thin dark strokes opaque, and
            # counted in, it made a 1 or a 7 "light ink" on black (3 of 10 digits so saved)
            seen = alpha > 0.02
            core = ndimage.binary_erosion(seen, structure=EIGHT)
            judged = core if core.sum() >= MIN_CORE_PIXELS else seen
            stroke = (float((lum[judged] * alpha[judged]).sum() / alpha[judged].sum())
                      if judged.any() else 0.0)
            background = 0.0 if stroke > 0.5 else 1.0
        return (lum * alpha + background * (1.0 - alpha)).astype(np.float32)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit PNGs
        arr = np.asarray(img, dtype=np.float32)
        return arr / max(float(arr.max()), 1.0)
    return np.asarray(img.convert("L"), dtype=np.float32) / 255.0


def _work_size(w: int, h: int) -> tuple[int, int]:
    """The size Image.thumbnail((WORK_SIDE, WORK_SIDE)) gives a w x h picture."""
    aspect = w / h
    if aspect <= 1:   # taller than wide: the height is WORK_SIDE
        x = WORK_SIDE * aspect
        return max(min(math.floor(x), math.ceil(x), key=lambda n: abs(aspect - n / WORK_SIDE)),
                   1), WORK_SIDE
    y = WORK_SIDE / aspect
    return WORK_SIDE, max(min(math.floor(y), math.ceil(y),
                              key=lambda n: 0 if n == 0 else abs(aspect - WORK_SIDE / n)), 1)


def _fit_background(img: np.ndarray, *, two_sided: bool = False,
                    iterations: int = 5) -> np.ndarray:
    """A smooth quadratic surface a + bx + cy + dx² + exy + fy² fitted to the paper pixels.

    Fitted on a grid of at most 64x64 samples. With ink bright (the default), each pass keeps
    the pixels less than 3 sigma above the surface and refits, so thick strokes do not pull
    it; ``two_sided`` rejects outliers on both sides (ink polarity not known yet).
    """
    h, w = img.shape
    step = max(1, max(h, w) // 64)
    sample = img[::step, ::step]
    yy, xx = np.mgrid[0:h:step, 0:w:step].astype(np.float32)
    design = quadratic_terms(yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5)
    values = sample.ravel()
    # Start from the paper's likely share: the darker half (ink bright), or the middle half.
    lo, mid, hi = np.percentile(values, [25, 50, 75])
    keep = (values >= lo) & (values <= hi) if two_sided else values <= mid
    coef = np.zeros(6, dtype=np.float32)
    for _ in range(iterations):
        # Normal equations (6x6): far cheaper than lstsq's SVD, and well conditioned here
        # since the coordinates are centred and scaled to [-0.5, 0.5].
        a = design[keep]
        coef = np.linalg.solve(a.T @ a + 1e-6 * np.eye(6, dtype=a.dtype), a.T @ values[keep])
        resid = values - design @ coef
        spread = max(1.4826 * float(np.median(np.abs(resid[keep]))), 0.01)  # robust sigma
        new_keep = (np.abs(resid) if two_sided else resid) < 3.0 * spread
        if new_keep.sum() < 12 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    a, b, c, d, e, f = (float(v) for v in coef)
    gy = (np.arange(h, dtype=np.float32) / max(h - 1, 1) - 0.5)[:, None]   # (H, 1)
    gx = (np.arange(w, dtype=np.float32) / max(w - 1, 1) - 0.5)[None, :]   # (1, W)
    return (a + b * gx + d * gx * gx) + (c * gy + f * gy * gy) + e * (gy * gx)


def dark_ink(gray: np.ndarray) -> bool:
    """True if the strokes are darker than the paper (``polarity``)."""
    return polarity(gray)[0]


def polarity(gray: np.ndarray) -> tuple[bool, int]:
    """(whether the strokes are darker than the paper, the closing that finds the paper's light
    where it falls in steps, in px; 0 where it does not).

    Against a background surface fitted with outliers rejected on both sides, the ink is the
    heavier tail: we compare the summed excess of pixels beyond 3 sigma below and above it.
    This survives lighting gradients that an absolute test (border brighter than 0.5?) does
    not. Where nothing stands out, the border is taken for the paper, unless the middle of
    the picture disagrees (a sheet on a desk): then the picture's most common shade. Where
    the bright tail is a sheet holding the dark writing (``_bright_sheet``), the ink is dark.
    The light falls in steps where the bright tail is paper lit along the picture's edge
    (``_lit_paper``) while the thin strokes are dark (``_thin_dark_strokes``): a hard shadow
    across the sheet.
    """
    resid = gray - _fit_background(gray, two_sided=True)
    sigma = max(1.4826 * float(np.median(np.abs(resid))), 0.01)
    below = float(np.clip(-resid - 3 * sigma, 0, None).sum())
    above = float(np.clip(resid - 3 * sigma, 0, None).sum())
    if below == above:  # nothing stands out: fall back on the border (the paper)
        h, w = gray.shape
        b = max(1, min(h, w) // 20)
        border = np.concatenate([gray[:b].ravel(), gray[-b:].ravel(),
                                 gray[:, :b].ravel(), gray[:, -b:].ravel()])
        # ... unless the border is the ground round a sheet: a shade the middle half of the
        # picture does not have, and the picture's most common shade is the paper
        h4, w4 = h // 4, w // 4
        middle = gray[h4:h - h4, w4:w - w4]
        if (np.median(border) > 0.5) != (np.median(middle) > 0.5):
            return _sheet_with_writing(gray) or bool(np.median(gray) > 0.5), 0
        return bool(np.median(border) > 0.5), 0
    if above > below and _bright_sheet(resid > 3 * sigma, resid < -3 * sigma):
        return True, 0
    if above > below and _lit_paper(gray):
        closing = _thin_dark_strokes(gray, sigma)
        if closing:
            return True, closing
    return below > above, 0


def stepped_light(gray: np.ndarray, closing: int) -> np.ndarray:
    """The paper's light where it falls in steps (a hard shadow): what a closing of
    ``closing`` px (``polarity``), wider than the strokes, leaves: the dark strokes taken away
    and the shadow's edge kept."""
    return ndimage.grey_closing(gray, size=closing)


def _lit_paper(gray: np.ndarray) -> bool:
    """Whether the brighter of the picture's two shades (Otsu's) runs along LIT_RIM of its
    edge, as paper lit beside a shadow does, rather than being a stroke: a white digit drawn
    with a fat brush on black, as a canvas gives it, had its 8's holes taken for thin dark
    strokes and read "1"."""
    bright = gray > otsu_threshold(gray)
    rim = np.concatenate([bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]])
    return bool(rim.mean() >= LIT_RIM)


def _thin_dark_strokes(gray: np.ndarray, sigma: float) -> int:
    """Where the picture's thin strokes are dark ones, STROKES_DARKER times as much as light
    ones, the closing (px) that takes them away whole, else 0: each kind measured by a top-hat
    (what a closing or an opening of STROKE_SPAN of the shorter side takes away), which leaves
    broad regions and steps of light alone. A hard shadow over a third of a sheet made the lit
    paper the heavier bright tail above the fitted background, the picture was read as light
    ink on a dark board, and the writing went with the "wall round the board": "nothing is
    written", or a 0 read "1"."""
    size = max(3, round(STROKE_SPAN * min(gray.shape)))
    dark = ndimage.grey_closing(gray, size=size) - gray
    light = gray - ndimage.grey_opening(gray, size=size)
    excess = 3 * sigma
    if (float(np.clip(dark - excess, 0, None).sum())
            <= STROKES_DARKER * float(np.clip(light - excess, 0, None).sum())):
        return 0
    # twice a stroke's width at least, to take them away whole (a marker's 11 px strokes under a
    # 13 px closing left their cores in the light: "96" read "95" at 99%)
    strokes = dark > max(excess, 0.5 * float(dark.max()))
    width = 2 * int(ndimage.distance_transform_cdt(strokes, metric="chessboard").max()) + 1
    return max(size, 2 * width + 1)


def _bright_sheet(bright: np.ndarray, dark: np.ndarray) -> bool:
    """Whether what stands out bright is a sheet with the dark writing on it (a sticky note on
    a darker desk, filling under half the photo) rather than light strokes: its largest piece,
    holes filled, is thick, SHEET_RADIUS of the picture's shorter side or more, and holds
    nearly all that stands out dark (chalk on a board holds next to none of it). Taken for
    light ink, the note became a white square round a digit-shaped hole, read "0" at 88-100%.
    What stands out dark is counted in pieces of SHEET_SPECK pixels or more: a grainy desk's
    lone dark pixels lie all round the note and outnumbered its writing (a note over 11% of a
    1,000 px photo held 38% of them), and against the picture, not the note, a small note's
    thin strokes seemed no writing at all (0.1% of a 3,000 px photo): both read "7" at 97%."""
    if dark.sum() < SHEET_MIN_DARK * dark.size:       # no writing to hold: labelling spared
        return False
    marks, count = ndimage.label(dark, structure=EIGHT)
    sizes = ndimage.sum_labels(dark, marks, np.arange(1, count + 1))
    dark = np.isin(marks, np.flatnonzero(sizes >= SHEET_SPECK) + 1)
    sheet = _solid_thick_piece(bright)
    if sheet is None:
        return False
    inside = sheet[1]
    held = int((dark & inside).sum())
    return held >= SHEET_WRITING * inside.sum() and held >= SHEET_HOLDS * dark.sum()


def _solid_thick_piece(bright: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(the largest light piece, it with its holes filled) where it may be a sheet: solid but
    for its holes (SHEET_SOLID; a light frame round a dark plate fills to a thick shape too,
    but a hollow one) and, filled, SHEET_RADIUS of the picture's shorter side thick (strokes
    across a note leave the piece itself thin); else None."""
    labels, count = ndimage.label(bright)
    if not count:
        return None
    sizes = ndimage.sum_labels(bright, labels, np.arange(1, count + 1))
    piece = labels == int(np.argmax(sizes)) + 1
    inside = ndimage.binary_fill_holes(piece)
    if (piece.sum() < SHEET_SOLID * inside.sum()
            or ndimage.distance_transform_edt(inside).max() < SHEET_RADIUS * min(bright.shape)):
        return None
    return piece, inside


def _sheet_with_writing(gray: np.ndarray) -> bool:
    """Whether a sheet with dark writing on it lies on a darker ground, where the two shades
    split the picture so evenly that nothing stands out of a fitted background (a note over a
    third of the photo of a dark desk): the light piece is solid but for its holes, thick
    (SHEET_RADIUS of the picture's shorter side, holes filled), holds writing (SHEET_WRITING
    of it) and its paper round the writing is SHEET_MARGIN times as thick as the strokes. A
    light 8 or 0 (chalk) fills to a thick shape too, but its loops are wider than its strokes.
    Taken the other way round, the desk was the paper and the note a "7" at 97%."""
    bright = gray > otsu_threshold(gray)
    sheet = _solid_thick_piece(bright)
    if sheet is None:
        return False
    piece, inside = sheet
    writing = inside & ~bright                  # a loop's paper (another light piece) is none
    if writing.sum() < SHEET_WRITING * inside.sum():
        return False
    return bool(ndimage.distance_transform_edt(piece).max()
                >= SHEET_MARGIN * ndimage.distance_transform_edt(writing).max())


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut maximising the between-class variance of a 1-D sample."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        return hi
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    p = hist.astype(np.float64) / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = 0
    # Every cut inside an empty gap between the modes scores the same: take the gap's middle,
    # not its first bin (which hugs the paper's noise).
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float((edges[best[0] + 1] + edges[best[-1] + 1]) / 2)


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in px: area / half the perimeter (a stroke of length L, width w
    has area L*w and about 2L boundary pixels)."""
    boundary = mask & ~ndimage.binary_erosion(mask)
    return float(mask.sum()) / max(float(boundary.sum()) / 2.0, 1.0)


def _disk(radius: float) -> np.ndarray:
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx * xx + yy * yy) <= radius * radius + 1e-6


class Ink(NamedTuple):
    """A picture's ink, found (``ink_image``)."""

    ink: np.ndarray           # float32 (H, W) in [0, 1], paper at 0
    mask: np.ndarray          # bool (H, W): the strokes
    inverted: bool            # the picture was dark ink on light paper
    notes: list[str]          # what was left out (the ground round the sheet, printed lines, ...)
    left_out: np.ndarray | None = None   # bool (H, W): the pixels of what was left out


def ink_image(gray: np.ndarray) -> Ink:
    """gray (H, W) -> its ink (``Ink``)."""
    _picture_large_enough(gray)
    # A broad soft shadow (one lit corner) is light a quadratic surface cannot follow: the
    # shadow stood out of it as "ink", the ground round a sheet or a digit of its own. Dark
    # ink only (the shading follows the paper's light from above): a digit of light ink on a
    # dark ground, soft-edged or small (MNIST's own, padded to 32x32), passed for a soft
    # shadow of its own and was refused or misread.
    inverted, closing = polarity(gray)
    shade = stepped_light(gray, closing) if closing else soft_shading(gray) if inverted else None
    ink = _reflectance(gray, shade) if shade is not None else _fitted_ink(gray, inverted)
    t = otsu_threshold(ink)
    mask = ink > t
    if _split_noise(mask):
        # Otsu split the paper's own noise, not ink from paper: faint pencil in a noisy photo
        # (strokes 15-25 grey levels under the paper, noise 4) made half the picture "ink",
        # read as one solid block. Smoothed, the noise drops and a stroke keeps its level.
        ink = ndimage.gaussian_filter(ink, FAINT_SMOOTH)
        t = otsu_threshold(ink)
        mask = ink > t
    found, before = ink, mask
    ink, mask, notes = paper_only(ink, mask, t)
    left_out = before & ~mask
    paper = ink[~mask] if (~mask).any() else ink.ravel()
    noise = _noise(paper)
    level = float(np.percentile(ink[mask], 90)) if mask.any() else 0.0
    if not mask.any() or not _stands_out(ink):
        if shade is not None:  # the light, not the writer, may be what hid it: say so
            raise NoInk("no ink found: nothing stands out of the paper under the uneven light "
                        "(a shadow over the sheet was evened out); if something is written, "
                        "photograph it in even light, without the shadow")
        # what was left out was all there was: a blank sheet, say so; unless nothing stood
        # out even before (noise on blank paper, taken apart as "lines"): blank, no more
        if notes and _stands_out(found):
            raise NoInk(f"no ink found: nothing is written on the sheet ({'; '.join(notes)}); "
                        "photograph the writing")
        raise NoInk("no ink found: the picture looks blank (no dark strokes on light paper or "
                    "light strokes on dark); draw or photograph one digit with clear contrast")
    # Drop specks: connected pieces holding under SPECK (2%) of the largest piece's area.
    labels, count = ndimage.label(mask, structure=EIGHT)
    if count > 1:
        sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
        big = np.flatnonzero(sizes >= SPECK * sizes.max()) + 1
        mask = np.isin(labels, big)
    _ink_large_enough(mask)
    # Paper (below half the threshold) goes to 0, the strokes' body to 1, edges stay grey.
    low = max(t / 2, float(np.median(paper)) + 2 * noise)
    scaled = np.clip((ink - low) / max(level - low, 1e-3), 0.0, 1.0)
    scaled[~ndimage.binary_dilation(mask, iterations=2)] = 0.0
    return Ink(scaled.astype(np.float32), mask, inverted, notes, left_out)


def _split_noise(mask: np.ndarray) -> bool:
    """Whether ``mask`` (ink > Otsu's threshold) is the paper's noise split in two rather than
    ink set apart from paper: a large share of the picture in a spray of pieces."""
    if mask.mean() <= NOISE_SHARE:
        return False
    _, count = ndimage.label(mask, structure=EIGHT)
    return count > NOISE_PIECES


def _picture_large_enough(gray: np.ndarray) -> None:
    """TooSmall for a picture under MIN_PICTURE_SIDE px each way: too few pixels to hold a
    digit's shape, which a model reads as a confident 1 or anything else ("looks blank" was
    said of some: a false reason)."""
    h, w = gray.shape
    if max(h, w) < MIN_PICTURE_SIDE:
        raise TooSmall(f"the picture is too small to read: {w}x{h} px; a digit needs at least "
                       f"{MIN_PICTURE_SIDE} px tall or wide (MNIST's pictures are 28x28): send a "
                       "larger picture")


def _ink_large_enough(mask: np.ndarray) -> None:
    """TooSmall where the ink of a larger picture spans under MIN_INK_SIDE px each way."""
    top, left, bottom, right = _bbox(mask)
    if max(bottom - top, right - left) < MIN_INK_SIDE:
        h, w = mask.shape
        raise TooSmall(f"the writing is too small to read: {right - left}x{bottom - top} px of "
                       f"a {w}x{h} picture (as read); draw it larger, or crop the picture "
                       "closer to it")


def _fitted_ink(gray: np.ndarray, inverted: bool) -> np.ndarray:
    """The ink against a quadratic surface fitted to the paper (step 3); ``inverted``: dark
    ink (dark_ink)."""
    ink = _reflectance(gray, 1.0 - _fit_background(1.0 - gray)) if inverted else (
        gray - _fit_background(gray))
    if np.mean(ink < -FIT_OVERSHOOT) > FIT_OVERSHOOT_SHARE:
        # The surface bowed into the strokes (a picture cropped to blurred, wide ink leaves
        # too little paper to fit): the paper is then far "brighter than the light". Flat.
        ink = _reflectance(gray, float(np.percentile(gray, 99))) if inverted else (
            gray - float(np.percentile(gray, 1)))
    return ink


def _reflectance(gray: np.ndarray, light: np.ndarray | float) -> np.ndarray:
    """Dark ink under ``light`` (the paper's brightness, fitted or flat) -> ink bright: light
    falls on paper and ink alike (multiplicative), so dividing by it turns a shadowed corner
    into paper, not ink."""
    return 1.0 - gray / np.maximum(light, 0.05)


def _noise(paper: np.ndarray) -> float:
    """Robust sigma of the paper's pixels (MAD), with a floor for noiseless synthetic images."""
    return 1.4826 * float(np.median(np.abs(paper - np.median(paper)))) + 1e-3


def _stands_out(ink: np.ndarray) -> bool:
    """Whether the brightest pixels stand out of the paper's noise: ink, not blank paper.

    Judged on the picture blurred by a 1 px Gaussian: a stroke is a few pixels wide and keeps
    its level, while pixel noise drops by about 3x, so a faint pencil line on a clean scan
    passes and noisy blank paper (whose "strokes" are noise too) still does not.
    """
    smooth = ndimage.gaussian_filter(ink, 1.0)
    mask = smooth > otsu_threshold(smooth)
    if not mask.any() or mask.all():
        return False
    paper = smooth[~mask]
    contrast = float(np.percentile(smooth[mask], 90)) - float(np.median(paper))
    return contrast >= max(INK_MIN_CONTRAST, INK_NOISE_SIGMAS * _noise(paper))


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def fit_to_mnist(ink: np.ndarray) -> np.ndarray:
    """A cropped ink image (h, w) -> (28, 28): longer side scaled to 20 px keeping the
    aspect ratio, pasted with its centre of mass at (14, 14) by an integer shift."""
    h, w = ink.shape
    scale = BOX / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # BOX (area averaging) is the anti-aliased downscale; bicubic for the rare upscale.
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    small = np.asarray(Image.fromarray(ink.astype(np.float32))
                       .resize((nw, nh), resample), dtype=np.float32)
    small = np.clip(small, 0.0, 1.0)
    peak = float(small.max())
    if peak > 0:  # thin strokes get greyed by averaging; MNIST's strokes peak at 1
        small = np.clip(small / peak, 0.0, 1.0)
    cy, cx = ndimage.center_of_mass(small) if small.sum() > 0 else (nh / 2, nw / 2)
    top = int(np.clip(round(TARGET_COM - cy), 0, SIZE - nh))
    left = int(np.clip(round(TARGET_COM - cx), 0, SIZE - nw))
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    out[top:top + nh, left:left + nw] = small
    return out


def _shrink(ink: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """Area-average ``ink`` down so its longer side is at most ``long_side``; (image, factor)."""
    h, w = ink.shape
    factor = min(1.0, long_side / max(h, w))
    if factor >= 1.0:
        return ink, 1.0
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BOX)), factor


def _shrink_keeping_lines(ink: np.ndarray, long_side: int) -> tuple[np.ndarray, float]:
    """Shrink ``ink`` by whole blocks, each to its strongest ink, so that its longer side is at
    most ``long_side``; (image, factor). For strokes thinner than a block: averaged, a 1 px
    pencil line on a 700 px drawing came out at a quarter of its shade, and only the crossings
    of its strokes stayed ink (a 7 read as a round blob, "0")."""
    step = int(np.ceil(max(ink.shape) / long_side))
    if step <= 1:
        return ink, 1.0
    h, w = ink.shape
    padded = np.zeros((-(-h // step) * step, -(-w // step) * step), ink.dtype)
    padded[:h, :w] = ink
    blocks = padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step)
    return _full_shade(blocks.max(axis=(1, 3))), 1.0 / step


def _full_shade(small: np.ndarray) -> np.ndarray:
    """Each block's ink over the strongest in its 3x3 neighbourhood of blocks: a line under a
    pixel wide shows how much of a pixel it covers, not how dark the pen was, and reduced to
    the working size, where it fell between rows. A 1 px 7's top bar on a 1,200 px canvas came
    out at half the shade of its stem, and its 28x28 lost the bar (correlation 0.42 with a
    bold 7; 0.96 now); a faint stroke beside a strong one stays faint."""
    local = ndimage.maximum_filter(small, size=3, mode="constant")
    return np.divide(small, local, out=np.zeros_like(small), where=local > 0)


def preprocess_gray(gray: np.ndarray) -> Preprocessed:
    """A grayscale picture (H, W) float in [0, 1] -> the MNIST-style 28x28."""
    found = ink_image(gray)
    return crop_to_mnist(found.ink, found.mask, found.inverted, found.notes)


def widened_note(px: str) -> str:
    """The note crop_to_mnist leaves when it widened thin strokes by ``px`` ("6", "5-8")."""
    return f"thin strokes widened by {px} px"


def crop_to_mnist(ink: np.ndarray, mask: np.ndarray, inverted: bool = False,
                  left_out: Sequence[str] = ()) -> Preprocessed:
    """The ink of one digit (``ink_image``'s scaled ink and mask, or a piece of them) ->
    ``Preprocessed``: cropped to the mask, thin strokes widened, scaled and centred;
    ``left_out``: what finding the ink set apart (``Ink.notes``), which leads its notes."""
    top, left, bottom, right = _bbox(mask)
    long_side = max(bottom - top, right - left)
    width = _stroke_width(mask[top:bottom, left:right])
    thicken = STROKE_TARGET_RATIO * long_side - width if width < STROKE_MIN_RATIO * long_side else 0
    pad = int(np.ceil(thicken / 2)) + 1 if thicken else 0
    crop = ink[max(0, top - pad):bottom + pad, max(0, left - pad):right + pad]
    if thicken:
        # Work at 8x the final size (160 px): enough detail, and the dilation stays cheap.
        # Strokes thinner than the shrink's step would fade in an average: keep their shade.
        step = max(crop.shape) / (8 * BOX)
        shrink = _shrink_keeping_lines if width * FADE_WIDTH < step else _shrink
        crop, factor = shrink(crop, 8 * BOX)
        radius = max(0.5, thicken * factor / 2)
        # Grey dilation by a disk of radius r widens every stroke by 2r.
        crop = ndimage.grey_dilation(crop, footprint=_disk(radius))
        crop_mask = crop > 0.25
        if crop_mask.any():
            t2, l2, b2, r2 = _bbox(crop_mask)
            crop = crop[t2:b2, l2:r2]
    return Preprocessed(fit_to_mnist(crop), inverted, (top, left, bottom, right),
                        float(thicken), list(left_out))


def preprocess(source: str | os.PathLike[str] | bytes | Image.Image, *,
               max_pixels: int = MAX_PIXELS,
               max_decoded_pixels: int | None = None) -> Preprocessed:
    """A PNG/JPEG (path, bytes or an opened PIL image) -> ``Preprocessed`` (28x28 in [0, 1])."""
    img = source if isinstance(source, Image.Image) else open_image(
        source, max_pixels=max_pixels, max_decoded_pixels=max_decoded_pixels)
    return preprocess_gray(to_gray(img))


def to_png(image28: np.ndarray, scale: int = 1) -> bytes:
    """A (28, 28) float image in [0, 1] as PNG bytes (optionally enlarged, nearest pixel)."""
    img = Image.fromarray(np.round(np.clip(image28, 0, 1) * 255).astype(np.uint8))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
