"""Halftoned (dithered) two-level pictures, mnistlab.inference.halftone: read as their grey, while
two-level line drawings keep their strokes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app_helpers import png_bytes, render_mnist
from mnistlab.data import load_dataset
from mnistlab.inference.halftone import halftoned, two_levels
from mnistlab.inference.preprocess import preprocess, to_gray


def _digits(n: int = 6) -> list[np.ndarray]:
    x, _ = load_dataset("mnist", "test")
    return [x[i] for i in range(n)]


def _shaded(digit: np.ndarray, shade: float, scale: int = 10) -> Image.Image:
    """The digit drawn in a grey of ``shade`` (1: black) on white, as a pencil would."""
    gray = np.asarray(render_mnist(digit, scale=scale), dtype=np.float32) / 255
    return Image.fromarray(np.round(255 * (1 - shade * (1 - gray))).astype(np.uint8))


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation over shifts of a pixel (centring by mass may move one by one)."""
    return max(float(np.corrcoef(np.roll(a, (dy, dx), (0, 1)).ravel(), b.ravel())[0, 1])
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


@pytest.mark.parametrize("shade", [0.35, 0.55, 0.8, 1.0])
def test_a_dithered_digit_reads_as_its_grey(shade: float) -> None:
    for digit in _digits():
        grey = _shaded(digit, shade)
        dithered = grey.convert("1")                  # Floyd-Steinberg, a 1-bit PNG
        assert two_levels(dithered)
        # at 35% grey the dots used to be "1,112 separate pieces of ink" and refused
        got = preprocess(png_bytes(dithered)).image
        assert _similarity(got, preprocess(png_bytes(grey)).image) > 0.9


def test_the_light_and_the_dark_patterns_are_both_halftones() -> None:
    digit = _digits(1)[0]
    for shade in (0.3, 0.9):                          # dots of ink; ink with dots of paper
        dithered = _shaded(digit, shade).convert("1")
        gray = np.asarray(dithered.convert("L"), dtype=np.float32) / 255
        assert halftoned(dithered, gray)
        assert not halftoned(_shaded(digit, shade), gray)   # many levels: never a halftone
        smoothed = to_gray(dithered)
        assert len(np.unique(smoothed)) > 2                 # smoothed to its grey


def test_a_palette_of_two_colours_other_than_black_and_white() -> None:
    # orange dots on white: the dark level lies below the two colours' midpoint, not 0.5
    dots = np.asarray(_shaded(_digits(1)[0], 0.35).convert("1"))
    rgb = np.where(dots[..., None], [255, 255, 255], [255, 140, 0]).astype(np.uint8)
    img = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=2)
    assert two_levels(img)
    assert halftoned(img, np.asarray(img.convert("L"), dtype=np.float32) / 255)


@pytest.mark.parametrize("width", [1, 3, 12])
def test_two_level_line_drawings_keep_their_strokes(width: int) -> None:
    img = Image.new("1", (700, 700), 1)
    ImageDraw.Draw(img).line([(150, 120), (550, 120), (300, 600)], fill=0, width=width)
    assert two_levels(img)
    gray = to_gray(img)
    assert set(np.unique(gray)) == {0.0, 1.0}          # not smoothed
    assert preprocess(img).image.max() > 0.9


def test_a_thin_line_on_a_large_drawing_is_no_halftone() -> None:
    # reduced 4x for size, a 3 px line breaks into specks: the judging is on the drawing itself
    img = Image.new("1", (4000, 4000), 1)
    ImageDraw.Draw(img).line([(800, 600), (3200, 600), (1700, 3500)], fill=0, width=3)
    from mnistlab.inference.preprocess import _composited

    assert not halftoned(img, _composited(img))


@pytest.mark.parametrize("scale", [50, 80])
def test_a_large_dithered_picture_is_judged_before_its_reduction(scale: int) -> None:
    grey = _shaded(_digits(1)[0], 0.35, scale=scale)           # 1,480 and 2,320 px
    big = grey.convert("1")
    assert max(big.size) > 1024 and two_levels(big)
    assert _similarity(preprocess(png_bytes(big)).image, preprocess(png_bytes(grey)).image) > 0.9


def test_a_grey_picture_is_not_a_halftone() -> None:
    grey = _shaded(_digits(1)[0], 0.5)
    assert not two_levels(grey)
    assert np.array_equal(to_gray(grey), np.asarray(grey, dtype=np.float32) / 255)
