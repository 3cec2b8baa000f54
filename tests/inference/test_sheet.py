"""A photo of a sheet shows more than the writing: the ground round the sheet (a desk, a table,
the wall round a board) and lines printed on it (a notebook's rules). Neither is ink: the digit
is read as if it were alone on plain paper.

The pictures are MNIST test digits drawn large on a sheet, the sheet photographed on a darker
(or, for a board, lighter) ground: on every side, on one side, turned, on wood grain; and in
pencil on ruled paper, square and turned.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from mnistlab.data import load_dataset
from mnistlab.inference.number import read_layout
from mnistlab.inference.preprocess import NoInk, dark_ink, open_image, preprocess, to_gray
from mnistlab.inference.sheet import NOTES

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


def photo(digit: np.ndarray, kind: str, *, seed: int = 0) -> bytes:
    """The digit written on a sheet lying on the ground of ``kind`` (a key of SHEETS),
    photographed: light falling off across the picture, a slight blur and sensor noise; a
    JPEG."""
    rng = np.random.default_rng(seed)
    board = kind == "board on a wall"
    sheet = Image.new("L", (SIDE, SIDE), 0)
    ImageDraw.Draw(sheet).polygon(SHEETS[kind], fill=255)
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


def test_a_sticky_note_filling_a_fifth_of_the_photo_is_the_paper(digits):
    # a bright note on a darker wooden desk, the pen darker than both: the desk is the most
    # common shade, and the note was taken for light ink round a digit-shaped hole ("0")
    for seed, digit in enumerate(digits):
        rng = np.random.default_rng(seed)
        picture = np.full((SIDE, SIDE), 0.35, np.float32)         # the desk
        picture[110:290, 110:290] = 0.88                          # 20% of the picture
        strokes = np.zeros((SIDE, SIDE), np.float32)
        strokes[125:275, 125:275] = np.asarray(
            Image.fromarray(digit).resize((150, 150), Image.Resampling.BICUBIC),
            dtype=np.float32) / 255.0
        picture = picture + (0.19 - picture) * strokes + rng.normal(0, 0.012, picture.shape)
        buf = io.BytesIO()
        Image.fromarray((np.clip(picture, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG",
                                                                             quality=90)
        pre = preprocess(buf.getvalue())
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7, seed


@pytest.mark.parametrize("kind", sorted(SHEETS))
def test_the_ground_round_the_sheet_is_no_ink(digits, kind):
    for seed, digit in enumerate(digits):
        pre = preprocess(photo(digit, kind, seed=seed))
        # the digit, as on a sheet filling the picture (0.82-0.98 here); the ground read as
        # ink gave -0.10 to 0.37
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.75, (kind, seed)
        assert pre.inverted == (kind != "board on a wall")
        assert NOTES["ground"] in pre.notes                   # the web page says so


@pytest.mark.parametrize(("size", "share"), [((1000, 667), 0.11), ((3000, 2000), 0.11),
                                             ((600, 400), 0.34)])
def test_a_note_with_a_number_on_a_dark_grainy_desk_is_the_paper(digits, size, share):
    """A light note with "721" on it, a small or middling share of a photo of a dark brown,
    grainy desk (JPEG). Read the other way round, the desk was the paper and the note one
    light "7" at 97%: the desk's lone noisy pixels outnumbered the note's writing, a small
    note's thin strokes seemed no writing against the whole photo, and at a third of the
    photo nothing stood out of a fitted background at all."""
    rng = np.random.default_rng(0)
    width, height = size
    note_h = int((share * width * height / 1.75) ** 0.5)
    note_w = int(1.75 * note_h)
    ink = np.zeros((note_h, note_w), np.float32)
    side = note_h // 2
    for k, digit in enumerate(digits):
        left = note_w // 2 - int(1.6 * side) + k * int(1.1 * side)
        ink[note_h // 4:note_h // 4 + side, left:left + side] = np.asarray(
            Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)) / 255.0
    note = 0.93 * (1 - ink) + 0.1 * ink
    picture = np.empty((height, width, 3), np.float32)
    picture[:] = (0.24, 0.18, 0.12)                                       # dark brown wood
    top, left = (height - note_h) // 2, (width - note_w) // 2
    picture[top:top + note_h, left:left + note_w] = note[..., None]
    picture += rng.normal(0, 0.025, picture.shape)                        # grain and noise
    buf = io.BytesIO()
    Image.fromarray((np.clip(picture, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG",
                                                                         quality=85)
    gray = to_gray(open_image(buf.getvalue()))
    assert dark_ink(gray)
    layout = read_layout(gray)
    assert len(layout.digits) == 3 and not layout.marks
    for piece, digit in zip(layout.digits, digits, strict=True):
        assert np.corrcoef(piece.pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7


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


def ruled(digit: np.ndarray, *, turn: float = 0.0, on_desk: bool = False, seed: int = 0,
          every: int = 32, squared: bool = False, margin: bool = False) -> bytes:
    """The digit in pencil grey on ruled paper (light blue rules every ``every`` px, as dark
    against the paper as the pencil nearly), photographed a little blurred and noisy; a JPEG.
    ``on_desk``: the sheet lies on a dark desk that shows on every side; ``squared``: rules
    down the page too (squared paper); ``margin``: a notebook's red margin line down the page,
    through the rules."""
    rng = np.random.default_rng(seed)
    sheet = np.full((SIDE, SIDE, 3), 0.92, np.float32)
    for y in range(20, SIDE, every):
        sheet[y:y + 2] = (0.55, 0.7, 0.9)
        if squared:
            sheet[:, y:y + 2] = (0.55, 0.7, 0.9)
    if margin:
        sheet[:, 60:63] = (0.85, 0.35, 0.35)
    if on_desk:
        desk = np.ones((SIDE, SIDE), dtype=bool)
        desk[30:370, 40:360] = False
        sheet[desk] = 0.3
    strokes = np.zeros((SIDE, SIDE, 1), np.float32)
    strokes[90:310, 90:310, 0] = np.asarray(
        Image.fromarray(digit).resize((220, 220), Image.Resampling.BICUBIC),
        dtype=np.float32) / 255.0
    sheet = sheet * (1 - strokes) + np.float32(0.55) * strokes
    sheet += rng.normal(0, 0.01, sheet.shape)
    img = Image.fromarray((np.clip(sheet, 0, 1) * 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(0.8))
    if turn:
        img = img.rotate(turn, resample=Image.Resampling.BICUBIC, fillcolor=(235, 235, 235))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@pytest.mark.parametrize("turn", [0.0, 4.0])
def test_a_notebook_s_rules_are_no_ink(digits, turn):
    for seed, digit in enumerate(digits):
        pre = preprocess(ruled(digit, turn=turn, seed=seed))
        # 0.76-0.97 here; the rules read as ink gave 0.21-0.46: the digit small in a box of lines
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7, (turn, seed)
        assert pre.notes[0] == NOTES["lines"]


@pytest.mark.parametrize("paper", ["squared", "margin"])
def test_squared_paper_and_a_notebook_margin_are_no_ink(digits, paper):
    # squared paper's columns stayed in as ink (a photo of one digit read as twenty 1s at 99%):
    # the slant was searched on a shrunk copy in which a small grid fills every row; a margin
    # line was one line down the page, and one alone is no proof of print
    for seed, digit in enumerate(digits):
        pre = preprocess(ruled(digit, seed=seed, every=12 if paper == "squared" else 32,
                               squared=paper == "squared", margin=paper == "margin"))
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7, (paper, seed)
        assert pre.notes[0] == NOTES["lines"]


def test_a_thin_1_cropped_edge_to_edge_beside_a_bold_digit_is_no_printed_line():
    img = Image.new("L", (200, 200), 240)
    draw = ImageDraw.Draw(img)
    draw.line([(30, 0), (30, 200)], fill=30, width=6)               # top edge to bottom edge
    draw.ellipse([80, 5, 180, 95], outline=30, width=16)
    draw.ellipse([75, 95, 185, 195], outline=30, width=16)
    layout = read_layout(to_gray(img))
    assert len(layout.digits) == 2


@pytest.mark.parametrize("turn", [0.0, 4.0, -3.0])
@pytest.mark.parametrize("crop", [(80, 100, 320, 300), (60, 120, 340, 280)])
def test_rules_that_all_touch_the_digit_are_no_ink(digits, turn, crop):
    """The photo cropped to the writing: every rule runs into the digit (or leaves through
    the top or the bottom), so none stands alone to show the slant."""
    for seed, digit in enumerate(digits):
        buf = io.BytesIO()
        Image.open(io.BytesIO(ruled(digit, turn=turn, seed=seed))).crop(crop).save(buf, "PNG")
        pre = preprocess(buf.getvalue())
        # 0.82-0.96 here; the rules read as ink gave 0.10-0.45
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.75, seed
        assert pre.notes[0] == NOTES["lines"]


def test_a_number_written_across_the_rules_is_read_as_its_digits():
    img = Image.new("L", (300, 160), 250)
    draw = ImageDraw.Draw(img)
    for y in (40, 80, 120):
        draw.line([(0, y), (300, y)], fill=110, width=2)
    draw.line([(60, 30), (40, 90), (90, 90)], fill=30, width=8)      # a 4
    draw.line([(75, 40), (75, 130)], fill=30, width=8)
    draw.arc([150, 30, 210, 80], 200, 90, fill=30, width=8)          # a 3
    draw.arc([150, 75, 210, 130], 270, 160, fill=30, width=8)
    layout = read_layout(to_gray(img))
    assert len(layout.digits) == 2
    for piece in layout.digits:
        assert piece.pre.notes[0] == NOTES["lines"]
        assert piece.pre.bbox[2] - piece.pre.bbox[0] > 80          # the whole digit, no rule


def test_a_digit_s_own_bars_across_its_crop_are_no_rules():
    """A 2 with a flat top and foot, cropped to its ink: two rows run across, but as thick as
    its strokes."""
    img = Image.new("L", (140, 200), 235)
    draw = ImageDraw.Draw(img)
    draw.line([(0, 6), (140, 6)], fill=30, width=14)
    draw.line([(130, 10), (10, 190)], fill=30, width=14)
    draw.line([(0, 193), (140, 193)], fill=30, width=14)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    pre = preprocess(buf.getvalue())
    assert NOTES["lines"] not in pre.notes
    assert pre.bbox[2] - pre.bbox[0] >= 195                            # top bar to foot
    ink = np.flatnonzero((pre.image > 0.5).any(axis=1))
    for bar in (pre.image[ink[0]:ink[0] + 2], pre.image[ink[-1] - 1:ink[-1] + 1]):
        assert (bar > 0.5).sum(axis=1).max() >= 10                      # both bars are there


def test_a_ruled_sheet_on_a_desk_is_dark_ink_on_light_paper(digits):
    """Nothing stands out of a fitted background here (the desk round the sheet bends the fit),
    and the picture's border is the dark desk: the paper is the shade the middle shares with
    most of the picture, not the border's."""
    for seed, digit in enumerate(digits[:2]):          # 7 and 2 (a thin 1: see pictures.md)
        picture = ruled(digit, on_desk=True, seed=seed)
        assert dark_ink(to_gray(open_image(picture)))
        pre = preprocess(picture)
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7, seed


def form(digits: list[np.ndarray], *, seed: int = 0) -> Image.Image:
    """The digits written in pen, one per printed field of a form: boxes 170 x 180 px with thin
    grey sides, 20 px apart."""
    rng = np.random.default_rng(seed)
    img = Image.new("L", (40 + 190 * len(digits), 220), 235)
    draw = ImageDraw.Draw(img)
    for k in range(len(digits)):
        draw.rectangle([30 + 190 * k, 20, 200 + 190 * k, 200], outline=90, width=3)
    gray = pen_in(np.asarray(img, dtype=np.float32) / 255.0, digits, top=40, left=45, step=190,
                  side=140, pen=0.15)
    gray += rng.normal(0, 0.01, gray.shape).astype(np.float32)
    return Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))


def pen_in(gray: np.ndarray, digits: list[np.ndarray], *, top: int, left: int, step: int,
           side: int, pen: float) -> np.ndarray:
    """``gray`` with the digits written in pen of shade ``pen``, each ``side`` px square, the
    k-th with its top-left corner at (top, left + k * step)."""
    for k, digit in enumerate(digits):
        strokes = np.zeros_like(gray)
        x = left + step * k
        strokes[top:top + side, x:x + side] = np.asarray(
            Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC),
            dtype=np.float32) / 255.0
        gray = gray * (1 - strokes) + pen * strokes
    return gray


def test_a_printed_box_round_a_digit_is_no_ink(digits):
    for seed, digit in enumerate(digits):
        buf = io.BytesIO()
        form([digit], seed=seed).save(buf, format="PNG")
        pre = preprocess(buf.getvalue())
        # 0.96-0.99 here; the box read as ink gave 0.02-0.40: the digit small in a square
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7, seed
        assert pre.notes[0] == NOTES["box"]


def test_a_row_of_form_fields_is_read_as_its_digits(digits):
    layout = read_layout(to_gray(form(list(digits))))
    assert len(layout.digits) == 3 and not layout.marks
    for piece, digit in zip(layout.digits, digits, strict=True):
        image = piece.pre.image
        assert np.corrcoef(image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7


def test_a_number_in_a_plate_s_frame_is_its_digits_alone(digits):
    # a house number's plate photographed to its frame: 8 px sides, 10 px in from the crop.
    # Its top and bottom passed for printed rules, and without them its sides were no box,
    # so they were read as 1s ("305" read "13051").
    img = Image.new("L", (620, 240), 238)
    ImageDraw.Draw(img).rectangle([10, 10, 609, 229], outline=25, width=8)
    gray = pen_in(np.asarray(img, dtype=np.float32) / 255.0, list(digits), top=45, left=70,
                  step=170, side=150, pen=0.1)
    layout = read_layout(gray)
    assert len(layout.digits) == 3 and not layout.marks
    for piece, digit in zip(layout.digits, digits, strict=True):
        assert np.corrcoef(piece.pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7


def test_a_boxy_8_drawn_as_thick_as_its_bar_is_no_printed_box():
    img = Image.new("L", (160, 240), 240)
    draw = ImageDraw.Draw(img)
    draw.rectangle([20, 20, 140, 220], outline=30, width=12)
    draw.line([(20, 120), (140, 120)], fill=30, width=12)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    pre = preprocess(buf.getvalue())
    top, left, bottom, right = pre.bbox
    assert bottom - top > 190 and right - left > 110                      # its sides stay


@pytest.mark.parametrize("kind", sorted(SHEETS))
def test_a_blank_sheet_is_refused_not_read(kind):
    """Nothing off the edge to compare the ground with: it still runs along a whole side, is
    thick, and leaves one broad sheet of paper."""
    blank = np.zeros((28, 28), np.uint8)
    with pytest.raises(NoInk, match="nothing is written on the sheet"):
        preprocess(photo(blank, kind))


@pytest.mark.parametrize("on_desk", [False, True])
def test_a_blank_ruled_sheet_is_refused_not_read(on_desk):
    with pytest.raises(NoInk, match="nothing is written on the sheet"):
        preprocess(ruled(np.zeros((28, 28), np.uint8), on_desk=on_desk))


def test_a_digit_cropped_to_its_ink_is_no_blank_sheet():
    """Cropped to the ink, these MNIST test digits' shades are read the wrong way round: the
    paper then runs along the edges like a desk, but what is left is a stroke, not a sheet."""
    images, _ = load_dataset("mnist", "test")
    for i in (68, 135, 196, 200, 267):
        big = np.asarray(Image.fromarray(images[i]).resize((224, 224),
                                                          Image.Resampling.BICUBIC))
        rows, cols = np.flatnonzero(big.max(1) > 40), np.flatnonzero(big.max(0) > 40)
        buf = io.BytesIO()
        Image.fromarray(255 - big[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]).save(buf, "PNG")
        preprocess(buf.getvalue())                      # read, not refused as a blank sheet


def test_a_thin_digit_on_squared_paper_stays_one_digit():
    # the grid's columns taken out cut a thin 0's sides where they ran along them: its pieces
    # were read as three digits ("111"); pieces a printed line cut apart are one
    img = Image.new("RGB", (600, 600), (250, 250, 247))
    draw = ImageDraw.Draw(img)
    for x in range(10, 600, 25):
        draw.line([(x, 0), (x, 600)], fill=(160, 185, 210), width=2)
        draw.line([(0, x), (600, x)], fill=(160, 185, 210), width=2)
    draw.ellipse([250, 170, 350, 430], outline=(20, 20, 90), width=7)
    gray = to_gray(img.filter(ImageFilter.GaussianBlur(0.7)))
    layout = read_layout(gray)
    assert len(layout.digits) == 1
    box = layout.digits[0].bbox
    assert box[2] - box[0] >= 240 and box[3] - box[1] >= 90        # the whole 0, not a piece


@pytest.mark.parametrize("light", [0.38, 0.6])
def test_a_hard_shadow_over_most_of_the_sheet_is_light_not_ink(digits, light):
    # a phone's shadow over most of a sheet at 38% of the light: the lit paper was the heavier
    # bright tail, the picture was read as light ink on a dark board, and the writing went
    # with the "wall round it" ("nothing is written", or a 0 read "1" from its lit half)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    edge = 1 / (1 + np.exp(-((xx - 0.27 * yy - 0.52 * SIDE) / 5)))     # a soft, slanted edge
    for seed, digit in enumerate(digits):
        rng = np.random.default_rng(seed)
        strokes = np.zeros((SIDE, SIDE), np.float32)
        strokes[90:310, 90:310] = np.asarray(
            Image.fromarray(digit).resize((220, 220), Image.Resampling.BICUBIC)) / 255.0
        sheet = 0.93 * (1 - strokes) + 0.12 * strokes
        photo = sheet * (light + (1 - light) * edge) + rng.normal(0, 0.01, strokes.shape)
        buf = io.BytesIO()
        Image.fromarray((np.clip(photo, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG",
                                                                            quality=90)
        pre = preprocess(buf.getvalue())
        assert pre.inverted, (light, seed)
        assert np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1] > 0.7, (light, seed)


@pytest.mark.parametrize("side", [100, 140, 200])
def test_a_fat_white_8_on_black_stays_light_ink(side):
    # a canvas's drawing: the 8's holes, narrower than the closing, passed for thin dark
    # strokes and the picture for a hard shadow over paper (read "1")
    img = Image.new("L", (side, side), 0)
    draw, w = ImageDraw.Draw(img), round(0.2 * 0.7 * side)
    draw.ellipse([0.3 * side, 0.12 * side, 0.7 * side, 0.5 * side], outline=255, width=w)
    draw.ellipse([0.27 * side, 0.45 * side, 0.73 * side, 0.88 * side], outline=255, width=w)
    gray = to_gray(img)
    assert dark_ink(gray) is False
    assert len(read_layout(gray).digits) == 1
