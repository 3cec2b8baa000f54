"""A circle drawn round an answer and a line drawn under a number are no digits: the digits
are read as if they were not there, and a digit's own detached stroke stays."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab.data import load_dataset
from mnistlab.inference.number import read_layout
from mnistlab.inference.preprocess import preprocess, to_gray
from mnistlab.inference.sheet import NOTES


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_dataset("mnist", "test")[0][:6]


def written(size: tuple[int, int], placed: list[tuple[np.ndarray, int, int]]) -> Image.Image:
    """MNIST digits written in dark ink at (left, top), 140 px high, on light paper."""
    gray = np.full((size[1], size[0]), 240 / 255, np.float32)
    for digit, left, top in placed:
        strokes = np.zeros_like(gray)
        strokes[top:top + 140, left:left + 140] = np.asarray(
            Image.fromarray(digit).resize((140, 140), Image.Resampling.BICUBIC),
            dtype=np.float32) / 255.0
        gray = gray * (1 - strokes) + 0.1 * strokes
    return Image.fromarray((gray * 255).astype(np.uint8))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_a_circle_round_a_digit_is_no_ink(digits):
    for digit in digits[:3]:
        img = written((300, 300), [(digit, 80, 80)])
        ImageDraw.Draw(img).ellipse([30, 30, 270, 270], outline=20, width=9)
        pre = preprocess(_png(img))
        # 0.85-0.98 here; with the circle read as ink these read 0, 9 and 0
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7
        assert pre.notes == [NOTES["added"]]


def test_an_underlined_number_is_its_digits(digits):
    for first, second in zip(digits[0::2], digits[1::2], strict=True):
        img = written((420, 260), [(first, 40, 30), (second, 200, 30)])
        ImageDraw.Draw(img).line([(50, 200), (350, 205)], fill=20, width=9)
        layout = read_layout(to_gray(img))
        assert len(layout.digits) == 2 and not layout.marks          # it read one digit, a 4
        for piece, digit in zip(layout.digits, (first, second), strict=True):
            assert np.corrcoef(piece.pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7


@pytest.mark.parametrize("base", [(95, 215), (80, 250)])
def test_a_2_s_detached_base_close_under_it_stays(base):
    img = Image.new("L", (300, 300), 240)
    draw = ImageDraw.Draw(img)
    draw.arc([90, 50, 210, 160], 180, 20, fill=20, width=12)
    draw.line([(205, 125), (95, 240)], fill=20, width=12)
    draw.line([(base[0], 258), (base[1], 258)], fill=20, width=12)
    pre = preprocess(_png(img))
    assert pre.bbox[2] >= 262 and pre.bbox[1] <= base[0]               # the base is in it


def test_a_spray_of_noise_is_not_searched_for_rings_or_underlines():
    """Thousands of specks are noise: the pairwise search for rings is skipped (it took 9.5 s
    on a noisy 1024 x 1024 picture), and nothing is taken from the mask."""
    from mnistlab.inference.annotations import MAX_PIECES, annotations
    from mnistlab.inference.sheet import NOISE_PIECES, paper_only

    rng = np.random.default_rng(0)
    mask = rng.random((256, 256)) > 0.97                # about 2,000 single-pixel pieces
    assert not annotations(mask).any()
    ink = mask.astype(np.float32)
    same_ink, same_mask, notes = paper_only(ink, mask, 0.5)
    assert np.array_equal(same_mask, mask) and np.array_equal(same_ink, ink) and not notes
    assert MAX_PIECES < NOISE_PIECES < int(mask.sum())
