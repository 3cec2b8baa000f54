"""Digits from sources other than MNIST, as pictures: the test of what people actually write.

    samples = realworld_set()               # list[Sample]: picture (uint8 H x W), label, part
    samples = realworld_set(["uci"])        # one part only

Three parts, none of them MNIST, none used to design or tune any model or preprocessing step
(the seeds below are fixed once; nothing is chosen by looking at accuracy on them):

- ``uci``: the UCI optical-recognition handwritten digits (Alpaydin and Kaynak, 1998) that
  scikit-learn ships: 1,797 digits by 43 other writers, scanned and reduced to 8x8 with 17
  grey levels; drawn here 12x larger as dark ink on paper. Blocky and small: a hard test.
- ``fonts``: the digits of the 24 typefaces matplotlib ships (DejaVu, STIX and Computer Modern
  in their regular, bold, italic and mono cuts), each drawn 3 ways (size, tilt, ink, paper).
- ``strokes``: digits drawn stroke by stroke as a hand does: per digit 1-3 styles (a 1 with or
  without its flag and foot, a crossed 7, an open or closed 4, a 5 with its bar lifted, ...),
  each point jittered, the stroke smoothed (Catmull-Rom), slanted, rotated and squeezed, pen
  width varying along the stroke, grey or dark ink, plain or unevenly lit paper.

The UCI part needs scikit-learn (``pip install 'mnistlab[realworld]'``); without it the other
two parts are used and ``missing_parts`` says so.
"""

from __future__ import annotations

import gzip
import importlib.util
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from mnistlab.errors import UserError

PARTS = ("uci", "fonts", "strokes")
SEED = 20261202                      # fixed once; the set is the same everywhere
STROKE_VARIANTS = 40                 # pictures per digit style
FONT_RENDERS = 3                     # pictures per typeface and digit

Point = tuple[float, float]          # (x, y) in a unit box, y down


@dataclass(frozen=True)
class Sample:
    picture: np.ndarray              # uint8 (H, W), dark ink on light paper
    label: int
    part: str                        # one of PARTS


def missing_parts() -> list[str]:
    """The parts this installation cannot build (uci without scikit-learn)."""
    return [] if importlib.util.find_spec("sklearn") is not None else ["uci"]


def realworld_set(parts: Sequence[str] = PARTS, *, small: bool = False) -> list[Sample]:
    """The other-source set, part by part in PARTS order; unknown parts are a UserError.

    ``small`` builds a tenth of it (for tests): the first of each font's renders, 4 strokes
    per style, every 10th UCI digit."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise UserError(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    builders = {"uci": _uci, "fonts": _fonts, "strokes": _strokes}
    out: list[Sample] = []
    for part in PARTS:
        if part in parts and part not in missing_parts():
            out.extend(builders[part](small))
    return out


# --- uci ------------------------------------------------------------------------------------

def _uci(small: bool = False) -> list[Sample]:
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.float32)       # (1797, 65): 64 px, label
    if small:
        rows = rows[::10]
    samples = []
    for row in rows:
        ink = row[:64].reshape(8, 8) / 16.0                           # 0..16 grey levels
        big = Image.fromarray((ink * 255).astype(np.uint8)).resize((96, 96),
                                                                    Image.Resampling.BICUBIC)
        paper = np.full((128, 128), 255, np.uint8)
        paper[16:112, 16:112] = 255 - np.asarray(big)
        samples.append(Sample(paper, int(row[64]), "uci"))
    return samples


# --- fonts ----------------------------------------------------------------------------------

FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf", "DejaVuSansDisplay.ttf",
    "DejaVuSerifDisplay.ttf", "STIXNonUni.ttf",
)


def _font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _fonts(small: bool = False) -> list[Sample]:
    rng = np.random.default_rng(SEED + 1)
    samples = []
    for name in FONT_FILES:
        path = _font_dir() / name
        if not path.is_file():
            continue
        for digit in range(10):
            for _ in range(1 if small else FONT_RENDERS):
                size = int(rng.integers(60, 140))
                font = ImageFont.truetype(str(path), size)
                img = Image.new("L", (size * 2, size * 2), 0)
                ImageDraw.Draw(img).text((size // 2, size // 4), str(digit), fill=255, font=font)
                if img.getbbox() is None:              # a face without this glyph
                    continue
                img = img.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BICUBIC)
                samples.append(Sample(_on_paper(np.asarray(img) / 255.0, rng), digit, "fonts"))
    return samples


# --- strokes ----------------------------------------------------------------------------------

def _ellipse(cx: float, cy: float, rx: float, ry: float, start: float = -90.0,
             turn: float = 360.0, n: int = 9) -> list[Point]:
    # few control points: each is jittered, and many close ones would make the loop lumpy
    angles = np.radians(start + np.linspace(0.0, turn, n))
    return [(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in angles]


# digit -> styles; a style is a list of strokes, a stroke a list of points (unit box, y down)
STYLES: dict[int, list[list[list[Point]]]] = {
    0: [[_ellipse(0.5, 0.5, 0.32, 0.45)], [_ellipse(0.5, 0.5, 0.26, 0.46, start=-120)]],
    1: [[[(0.5, 0.05), (0.5, 0.95)]],
        [[(0.28, 0.28), (0.56, 0.05), (0.56, 0.95)]],
        [[(0.3, 0.25), (0.55, 0.05), (0.55, 0.95)], [(0.3, 0.95), (0.8, 0.95)]]],
    2: [[[(0.2, 0.25), (0.35, 0.08), (0.6, 0.05), (0.78, 0.2), (0.75, 0.4), (0.5, 0.65),
          (0.2, 0.95), (0.85, 0.95)]],
        [[(0.22, 0.2), (0.5, 0.05), (0.78, 0.22), (0.6, 0.5), (0.22, 0.92), (0.45, 0.85),
          (0.85, 0.92)]]],
    3: [[[(0.2, 0.12), (0.5, 0.04), (0.75, 0.15), (0.72, 0.35), (0.45, 0.48), (0.75, 0.6),
          (0.8, 0.8), (0.55, 0.95), (0.2, 0.88)]],
        [[(0.2, 0.08), (0.78, 0.08), (0.45, 0.42), (0.75, 0.55), (0.78, 0.8), (0.5, 0.95),
          (0.2, 0.85)]]],
    4: [[[(0.62, 0.05), (0.15, 0.65), (0.85, 0.65)], [(0.66, 0.3), (0.66, 0.95)]],
        [[(0.22, 0.05), (0.18, 0.58), (0.82, 0.58)], [(0.7, 0.05), (0.7, 0.95)]]],
    5: [[[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45), (0.55, 0.38), (0.8, 0.55), (0.78, 0.8),
          (0.5, 0.95), (0.2, 0.85)]],
        [[(0.3, 0.06), (0.25, 0.45), (0.55, 0.38), (0.8, 0.55), (0.78, 0.8), (0.5, 0.95),
          (0.2, 0.85)], [(0.32, 0.05), (0.8, 0.03)]]],
    6: [[[(0.7, 0.08), (0.4, 0.2), (0.22, 0.55), (0.3, 0.88), (0.55, 0.95), (0.75, 0.8),
          (0.72, 0.6), (0.5, 0.5), (0.25, 0.62)]]],
    7: [[[(0.15, 0.08), (0.85, 0.08), (0.4, 0.95)]],
        [[(0.15, 0.08), (0.85, 0.08), (0.45, 0.95)], [(0.35, 0.5), (0.78, 0.5)]]],
    8: [[_ellipse(0.5, 0.27, 0.22, 0.22, start=90), _ellipse(0.5, 0.71, 0.27, 0.24, start=-90)],
        [[(0.7, 0.15), (0.5, 0.05), (0.28, 0.18), (0.35, 0.38), (0.7, 0.6), (0.72, 0.85),
          (0.5, 0.95), (0.28, 0.85), (0.3, 0.62), (0.65, 0.38), (0.72, 0.2)]]],
    9: [[_ellipse(0.5, 0.3, 0.24, 0.24, start=0), [(0.74, 0.3), (0.72, 0.6), (0.6, 0.95)]],
        [_ellipse(0.48, 0.28, 0.25, 0.23, start=0), [(0.73, 0.25), (0.73, 0.95)]]],
}


def _catmull_rom(points: np.ndarray, per_segment: int = 8) -> np.ndarray:
    """A smooth curve through ``points`` (K, 2), end points repeated."""
    if len(points) < 3:
        return np.linspace(points[0], points[-1], per_segment * 2)
    p = np.vstack([points[0], points, points[-1]])
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(points[-1:])
    return np.vstack(out)


def _draw_style(style: list[list[Point]], rng: np.random.Generator, side: int = 256) -> np.ndarray:
    """One hand-drawn rendering of a style: ink float (side, side) in [0, 1]."""
    angle = math.radians(rng.uniform(-12, 12))
    slant = rng.uniform(-0.35, 0.25)                     # x += slant * (0.5 - y): italic
    squeeze = rng.uniform(0.7, 1.1)                      # width relative to height
    width = rng.uniform(0.04, 0.11) * side               # pen width, px
    cos, sin = math.cos(angle), math.sin(angle)
    img = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(img)
    for stroke in style:
        pts = np.asarray(stroke, dtype=np.float64)
        pts = pts + rng.normal(0, 0.025, pts.shape)      # an unsteady hand
        curve = _catmull_rom(pts)
        x = (curve[:, 0] - 0.5) * squeeze + slant * (0.5 - curve[:, 1])
        y = curve[:, 1] - 0.5
        xr, yr = cos * x - sin * y, sin * x + cos * y
        xy = np.stack([(xr * 0.7 + 0.5) * side, (yr * 0.7 + 0.5) * side], 1)
        # pressure: the pen thins where it moves fast (long segments), never below a third
        speed = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        press = np.clip(1.3 - 0.6 * speed / max(float(speed.mean()), 1e-6), 0.35, 1.3)
        for (a, b), p in zip(itertools.pairwise(xy), press, strict=True):
            w = max(1.0, width * p)
            draw.line([tuple(a), tuple(b)], fill=255, width=round(w))
            r = w / 2
            draw.ellipse([b[0] - r, b[1] - r, b[0] + r, b[1] + r], fill=255)
    return np.asarray(img.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32) / 255.0


def _strokes(small: bool = False) -> list[Sample]:
    rng = np.random.default_rng(SEED + 2)
    samples = []
    for digit, styles in STYLES.items():
        for style in styles:
            for _ in range(4 if small else STROKE_VARIANTS):
                ink = _draw_style(style, rng)
                samples.append(Sample(_on_paper(ink, rng), digit, "strokes"))
    return samples


# --- paper ----------------------------------------------------------------------------------

def _on_paper(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink (H, W) in [0, 1] as a picture: grey to black ink on paper, plain or unevenly lit,
    with sensor noise; uint8 (H, W)."""
    h, w = ink.shape
    darkness = rng.uniform(0.45, 0.95)                   # pencil grey to marker black
    paper = rng.uniform(0.8, 1.0)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    light = 1.0 - rng.uniform(0.0, 0.35) * (np.cos(rng.uniform(0, 2 * np.pi)) * xx
                                            + np.sin(rng.uniform(0, 2 * np.pi)) * yy)
    gray = paper * light * (1.0 - darkness * ink) + rng.normal(0, rng.uniform(0.0, 0.03), ink.shape)
    return (np.clip(gray, 0.0, 1.0) * 255).astype(np.uint8)


# --- not digits: what a confident digit classifier should be unsure about -------------------

def non_digits(count: int = 200) -> list[Sample]:
    """Pictures that are not digits, for measuring "unsure": letters of the same typefaces
    (label -1, part "letters") and scribbles of random strokes (part "scribbles")."""
    rng = np.random.default_rng(SEED + 3)
    out: list[Sample] = []
    letters = "ABCDEFGHJKMNPQRUVWXYabdefhkmnpqrtuvwxy"   # no O, I, l, S, Z, o, s, z: digit-like
    fonts = [p for p in (_font_dir() / n for n in FONT_FILES) if p.is_file()]
    for i in range(count // 2):
        path = fonts[i % len(fonts)]
        size = int(rng.integers(60, 140))
        font = ImageFont.truetype(str(path), size)
        img = Image.new("L", (size * 2, size * 2), 0)
        ImageDraw.Draw(img).text((size // 2, size // 4), letters[int(rng.integers(len(letters)))],
                                 fill=255, font=font)
        if img.getbbox() is None:
            continue
        out.append(Sample(_on_paper(np.asarray(img) / 255.0, rng), -1, "letters"))
    for _ in range(count - count // 2):
        strokes = [[(float(x), float(y)) for x, y in rng.uniform(0.05, 0.95, (int(rng.integers(
            3, 8)), 2))] for _ in range(int(rng.integers(1, 4)))]
        out.append(Sample(_on_paper(_draw_style(strokes, rng), rng), -1, "scribbles"))
    return out
