"""A photo of paper often shows what lies around it: a desk, a table, the wall round a board.
That is no ink: the digit on the paper is read as if the paper filled the picture.

The pictures are MNIST test digits drawn large on a sheet, the sheet photographed on a darker
(or, for a board, lighter) ground: on every side, on one side, turned, on wood grain.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from mnistlab.data import load_dataset
from mnistlab.inference.number import read_layout
from mnistlab.inference.preprocess import open_image, preprocess, to_gray

SIDE = 400


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_dataset("mnist", "test")[0][:3]


def _ground(kind: str) -> np.ndarray:
    """What the sheet lies on, float (SIDE, SIDE) in [0, 1]."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    if kind == "wood":
        return 0.47 + 0.1 * np.sin(yy / 6 + 2 * np.sin(xx / 40))
    return np.full((SIDE, SIDE), 0.82 if kind == "wall" else 0.25, np.float32)


SHEETS = {   # the sheet's corners on the ground
    "desk all round": [(60, 40), (340, 40), (340, 360), (60, 360)],
    "desk on one side": [(45, -20), (SIDE + 20, -20), (SIDE + 20, SIDE + 20), (45, SIDE + 20)],
    "sheet turned": [(90, 15), (385, 75), (325, 390), (25, 330)],
    "wood grain": [(70, 50), (330, 50), (330, 370), (70, 370)],
    "board on a wall": [(50, 40), (350, 40), (350, 360), (50, 360)],
}
WHOLE = [(-20, -20), (SIDE + 20, -20), (SIDE + 20, SIDE + 20), (-20, SIDE + 20)]


def photo(digit: np.ndarray, kind: str, *, seed: int = 0) -> bytes:
    """The digit written on a sheet lying on the ground of ``kind`` (a key of SHEETS; any
    other: the sheet fills the picture), photographed: light falling off across the picture,
    a slight blur and sensor noise; a JPEG."""
    rng = np.random.default_rng(seed)
    board = kind == "board on a wall"
    sheet = Image.new("L", (SIDE, SIDE), 0)
    ImageDraw.Draw(sheet).polygon(SHEETS.get(kind, WHOLE), fill=255)
    on_sheet = np.asarray(sheet, dtype=np.float32) / 255.0
    paper, ink = (0.18, 0.85) if board else (0.9, 0.15)
    picture = _ground("wall" if board else "wood" if kind == "wood grain" else "desk")
    picture = picture * (1 - on_sheet) + paper * on_sheet
    strokes = np.zeros((SIDE, SIDE), np.float32)
    strokes[90:310, 90:310] = np.asarray(
        Image.fromarray(digit).resize((220, 220), Image.Resampling.BICUBIC),
        dtype=np.float32) / 255.0
    picture = picture + (ink - paper) * strokes
    xx = np.mgrid[0:SIDE, 0:SIDE][1] / SIDE
    picture = picture * (0.8 + 0.2 * xx) + rng.normal(0, 0.012, picture.shape)
    img = Image.fromarray((np.clip(picture, 0, 1) * 255).astype(np.uint8))
    buf = io.BytesIO()
    img.filter(ImageFilter.GaussianBlur(1.0)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("kind", sorted(SHEETS))
def test_the_ground_round_the_sheet_is_no_ink(digits, kind):
    for seed, digit in enumerate(digits):
        pre = preprocess(photo(digit, kind, seed=seed))
        # the digit, as on a sheet filling the picture (0.82-0.98 here); the ground read as
        # ink gave -0.10 to 0.37
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.75, (kind, seed)
        assert pre.inverted == (kind != "board on a wall")


def test_a_number_on_a_sheet_on_a_desk_is_its_digits_alone(digits):
    pair = np.concatenate([digits[0], digits[1]], axis=1)          # "72", 28 x 56
    square = np.zeros((56, 56), np.uint8)
    square[14:42] = pair
    layout = read_layout(to_gray(open_image(photo(square, "desk all round"))))
    assert len(layout.digits) == 2 and not layout.marks


def test_a_tightly_cropped_digit_keeps_the_strokes_along_its_edges():
    """A 7 cropped to its ink: its bar runs along the top edge, and a broken stroke makes a
    second piece; nothing of it is taken for surroundings."""
    img = Image.new("L", (140, 200), 235)
    draw = ImageDraw.Draw(img)
    draw.line([(0, 6), (140, 6)], fill=30, width=14)
    draw.line([(120, 30), (40, 200)], fill=30, width=14)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    pre = preprocess(buf.getvalue())
    assert pre.bbox[0] == 0 and pre.bbox[2] - pre.bbox[0] >= 195       # bar to foot
    assert (pre.image[:8] > 0.5).sum(axis=1).max() >= 10               # the bar is there
