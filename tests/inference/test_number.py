"""A written number is read as its digits, left to right; one digit behaves as before."""

from __future__ import annotations

import io
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from app_helpers import trained_run  # noqa: F401  (fixture)
from mnistlab.data import load_dataset
from mnistlab.inference.number import (
    JOIN_PIECES,
    JUDGED_SPLIT_WIDTH,
    SPLIT_WIDTH,
    SeveralLines,
    find_digits,
    read_layout,
)
from mnistlab.inference.predict import NumberPrediction, Prediction, load_predictor, read_picture
from mnistlab.inference.preprocess import NoInk, preprocess, preprocess_gray, to_gray
from mnistlab.inference.verify import JUDGE, Judgement, verified

SCALE = 8            # each 28x28 digit drawn at 224 px


@pytest.fixture(scope="module")
def test_digits() -> tuple[np.ndarray, np.ndarray]:
    return load_dataset("mnist", "test")


def compose(digits: list[np.ndarray], gaps: list[int], margin: int = 40,
            stretch: float = 1.0) -> np.ndarray:
    """MNIST digits side by side as dark ink on white paper, float (H, W) in [0, 1].

    ``gaps[i]`` is the space in px between digit i's ink and digit i+1's (negative: touching,
    overlapping by that much); ``stretch``: each digit drawn that many times as wide."""
    big = [np.asarray(Image.fromarray(d).resize((round(28 * SCALE * stretch), 28 * SCALE),
                                                Image.Resampling.BICUBIC), np.float32) / 255
           for d in digits]
    cols = [np.flatnonzero(b.max(axis=0) > 0.1) for b in big]
    crops = [b[:, c[0]:c[-1] + 1] for b, c in zip(big, cols, strict=True)]
    width = sum(c.shape[1] for c in crops) + sum(gaps) + 2 * margin
    ink = np.zeros((28 * SCALE + 2 * margin, width), np.float32)
    x = margin
    for i, crop in enumerate(crops):
        region = ink[margin:margin + crop.shape[0], x:x + crop.shape[1]]
        np.maximum(region, crop, out=region)
        x += crop.shape[1] + (gaps[i] if i < len(gaps) else 0)
    return 1.0 - ink


def png(gray: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("count", [2, 3, 4])
def test_separate_digits_are_found_left_to_right(test_digits, count):
    images, labels = test_digits
    for start in range(0, 30, count):
        idx = list(range(start, start + count))
        pieces = find_digits(compose([images[i] for i in idx], [30] * (count - 1)))
        assert len(pieces) == count, (idx, labels[idx])
        lefts = [p.bbox[1] for p in pieces]
        assert lefts == sorted(lefts)


def test_each_found_digit_is_that_digit(test_digits):
    # Each piece's 28x28 is the digit's own MNIST-style image: close to preprocessing it alone.
    images, _ = test_digits
    gray = compose([images[0], images[1], images[2]], [40, 40])
    for piece, digit in zip(find_digits(gray), images[:3], strict=True):
        alone = preprocess_gray(compose([digit], [])).image
        assert np.abs(piece.pre.image - alone).mean() < 0.03


def test_touching_digits_are_split_where_the_ink_is_thin(test_digits):
    images, _ = test_digits
    found = []
    for start in range(0, 40, 2):
        gray = compose([images[start], images[start + 1]], [-4])      # strokes touch
        found.append(len(find_digits(gray)))
    assert np.mean([n == 2 for n in found]) >= 0.8, found


def test_a_lifted_stroke_stays_one_digit():
    # A "5" whose top bar is drawn apart from its body: two strokes, one column, one digit.
    gray = np.ones((300, 240), np.float32)
    gray[40:56, 60:190] = 0.0                       # the lifted top bar
    gray[70:250, 60:78] = 0.0                       # the stem, below the bar
    gray[150:166, 60:180] = 0.0
    gray[150:250, 164:180] = 0.0
    gray[234:250, 60:180] = 0.0
    assert len(find_digits(gray)) == 1


def test_one_digit_reads_as_preprocess_does(test_digits):
    images, _ = test_digits
    gray = compose([images[7]], [])
    (piece,) = find_digits(gray)
    assert np.array_equal(piece.pre.image, preprocess_gray(gray).image)


def test_number_is_read_with_each_digit_and_its_probability(test_digits, trained_run):  # noqa: F811
    images, labels = test_digits
    predictor = load_predictor(trained_run)
    right = 0
    for start in range(0, 60, 3):
        reading = read_picture(predictor, png(compose(list(images[start:start + 3]), [36, 36])))
        want = "".join(str(int(v)) for v in labels[start:start + 3])
        assert isinstance(reading, NumberPrediction) and len(reading.digits) == 3
        assert reading.to_json()["number"] == reading.number
        assert all(len(d["bbox"]) == 4 for d in reading.to_json()["digits"])
        assert all(0.0 < d.probability <= 1.0 for d in reading.digits)
        assert all(abs(sum(d.probabilities) - 1.0) < 1e-5 for d in reading.digits)
        right += reading.number == want
    # a ~94% FC reads about 0.94^3 of three-digit numbers whole
    assert right >= 13, right


def test_one_digit_picture_is_a_plain_prediction(test_digits, trained_run):  # noqa: F811
    images, _ = test_digits
    reading = read_picture(load_predictor(trained_run), png(compose([images[3]], [])))
    assert isinstance(reading, Prediction) and "number" not in reading.to_json()


def test_blank_picture_is_still_refused():
    with pytest.raises(NoInk):
        find_digits(to_gray(Image.new("L", (300, 200), 255)))
    with pytest.raises(NoInk):
        preprocess(png(np.ones((100, 100), np.float32)))


# MNIST test digits whose ink falls apart: a 3 with a detached top bar, 5s whose bar or hook
# hangs beside or below the rest, a 2 whose tail is cut off. Each is one digit.
BROKEN_DIGITS = [155, 381, 694, 1087, 1131, 1696, 1940]


def test_a_digit_in_pieces_is_one_digit(test_digits):
    images, labels = test_digits
    for i in BROKEN_DIGITS:
        pieces = find_digits(compose([images[i]], []))
        assert len(pieces) == 1, (i, int(labels[i]), [p.bbox for p in pieces])


def with_marks(digits: list[np.ndarray], marks: list[str | None], gap: int = 80) -> np.ndarray:
    """``compose``, with ``marks[i]`` (".", ":", "-", ",", or None) drawn in the gap after digit i;
    a mark after the last digit sits beyond it."""
    gray = compose(digits, [gap] * (len(digits) - 1), margin=40 + gap)
    cols = np.flatnonzero((gray < 0.5).any(axis=0))
    inked = np.flatnonzero((gray < 0.5).any(axis=1))
    top, height = inked[0], inked[-1] - inked[0]           # the digits' line
    # the gaps: runs of empty columns between inked ones, left to right, then the right margin
    edges = np.flatnonzero(np.diff(cols) > gap // 2)
    centres = [(cols[e] + cols[e + 1]) // 2 for e in edges] + [cols[-1] + gap // 2]
    rows, xs = np.mgrid[:gray.shape[0], :gray.shape[1]]
    for mark, x in zip(marks, centres, strict=False):
        if mark in (".", ":"):
            for share in ([0.85] if mark == "." else [0.3, 0.75]):
                y = top + share * height
                gray[(rows - y) ** 2 + (xs - x) ** 2 <= (0.06 * height) ** 2] = 0.0
        elif mark == "-":
            y, half = int(top + 0.5 * height), int(0.15 * height)
            gray[y - 7:y + 7, x - half:x + half] = 0.0
        elif mark == ",":        # a dot on the line's foot with a tail down to the left
            y, r = top + 0.9 * height, 0.06 * height
            gray[(rows - y) ** 2 + (xs - x) ** 2 <= r ** 2] = 0.0
            for t in np.linspace(0, 1, 40):
                cy, cx = y + t * 0.3 * height, x + r - t * 2.2 * r
                gray[(rows - cy) ** 2 + (xs - cx) ** 2 <= (0.45 * r) ** 2] = 0.0
    return gray


@pytest.mark.parametrize("marks, spelled", [
    ([None, ".", None], "dd.dd"), ([None, ":", None], "dd:dd"), ([None, "-", None], "dd-dd"),
    ([".", None, "."], "d.dd.d"), ([None, ",", None], "dd,dd"), ([",", None, None], "d,ddd"),
])
def test_marks_between_digits_are_read_in_place(test_digits, marks, spelled):
    images, _ = test_digits
    for start in (0, 4, 8):
        layout = read_layout(with_marks(list(images[start:start + 4]), marks))
        assert len(layout.digits) == 4
        chars = iter(layout.marks)
        got = "".join("d" if c == "d" else next(chars).char for c in spelled)
        assert got == spelled and next(chars, None) is None
        assert [m.before for m in layout.marks] == [i + 1 for i, m in enumerate(marks) if m]


def test_a_dot_after_the_last_digit_is_a_full_stop_and_a_dash_there_no_mark(
        test_digits, trained_run):  # noqa: F811
    # merged into the last digit as a stray tick, a full stop turned "10." into "19" at 70%
    images, _ = test_digits
    picture = with_marks([images[0], images[1]], [None, "."])
    layout = read_layout(picture)
    assert len(layout.digits) == 2 and [(m.char, m.before) for m in layout.marks] == [(".", 2)]
    reading = read_picture(load_predictor(trained_run), png(picture))
    assert isinstance(reading, NumberPrediction) and reading.number.endswith(".")
    assert len(reading.number) == 3
    layout = read_layout(with_marks([images[0], images[1]], [None, "-"]))
    assert len(layout.digits) == 2 and layout.marks == []


def test_a_number_with_marks_spells_them(test_digits, trained_run):  # noqa: F811
    images, _ = test_digits
    reading = read_picture(load_predictor(trained_run),
                           png(with_marks(list(images[:4]), [None, ".", None])))
    assert isinstance(reading, NumberPrediction) and len(reading.digits) == 4
    assert reading.number[2] == "." and len(reading.number) == 5
    assert reading.to_json()["marks"] == [{"mark": ".", "before": 2,
                                           "bbox": list(reading.marks[0].bbox)}]


def test_marks_survive_a_photo(test_digits):
    # light falling across the sheet, ink absorbing 80% of it, a blur and sensor noise
    images, _ = test_digits
    rng = np.random.default_rng(0)
    for start, marks in ((0, [None, ".", None]), (4, [None, ":", None]), (8, [None, "-", None]),
                         (12, [None, None, None])):
        gray = with_marks(list(images[start:start + 4]), marks)
        rows, cols = np.mgrid[:gray.shape[0], :gray.shape[1]] / max(gray.shape)
        light = 0.45 + 0.2 * (rows + cols)
        photo = ndimage.gaussian_filter(light * (1 - 0.8 * (1 - gray)), 1.2)
        photo = np.clip(photo + rng.normal(0, 0.025, photo.shape), 0, 1).astype(np.float32)
        layout = read_layout(photo)
        assert len(layout.digits) == 4
        assert [(m.char, m.before) for m in layout.marks] == [
            (m, i + 1) for i, m in enumerate(marks) if m]


def test_a_number_s_notes_reach_predict_s_lines_and_json(test_digits, trained_run, tmp_path,  # noqa: F811
                                                         capsys):
    """What reading left out (the rules under a number) is said once, not once a digit, and
    the digits' widened strokes in one note."""
    import json

    from mnistlab.cli import main
    from mnistlab.inference.sheet import NOTES

    images, _ = test_digits
    gray = compose(list(images[:2]), [40])
    for y in range(20, gray.shape[0], 48):         # rules the digits run into
        gray[y:y + 2] = np.minimum(gray[y:y + 2], 0.55)
    picture = tmp_path / "ruled-number.png"
    picture.write_bytes(png(gray))
    assert main(["predict", str(trained_run), str(picture), "--json"]) == 0
    out = capsys.readouterr().out
    (reading,) = json.loads(out.strip().splitlines()[-1])["predictions"]
    assert len(reading["digits"]) == 2
    assert reading["notes"].count(NOTES["lines"]) == 1
    assert f"note: {NOTES['lines']}" in out
    assert sum("widened" in n for n in reading["notes"]) <= 1


def with_minus(digits: list[np.ndarray], gap: int = 80) -> np.ndarray:
    """``compose`` with a dash drawn in front of the first digit, as a minus sign."""
    gray = compose(digits, [36] * (len(digits) - 1), margin=40 + gap)
    cols = np.flatnonzero((gray < 0.5).any(axis=0))
    inked = np.flatnonzero((gray < 0.5).any(axis=1))
    top, height = inked[0], inked[-1] - inked[0]
    x, y, half = cols[0] - gap // 2, int(top + 0.5 * height), int(0.15 * height)
    gray[y - 7:y + 7, x - half:x + half] = 0.0
    return gray


@pytest.mark.parametrize("count", [1, 2])
def test_a_minus_sign_leads_the_number(test_digits, trained_run, count):  # noqa: F811
    """"-5" read "5" (the dash merged into the 5 as a stray tick): the sign was lost."""
    images, _ = test_digits
    for start in (0, 3, 6):
        reading = read_picture(load_predictor(trained_run),
                               png(with_minus(list(images[start:start + count]))))
        assert isinstance(reading, NumberPrediction) and len(reading.digits) == count
        assert reading.number.startswith("-") and len(reading.number) == count + 1
        assert [(m.char, m.before) for m in reading.marks] == [("-", 0)]


def test_no_digit_on_its_own_gets_a_sign(test_digits):
    """A flat stroke left of the only digit is a minus; MNIST's digits have none of their own."""
    images, _ = test_digits
    for image in images[:200]:
        layout = read_layout(compose([image], []))
        assert layout.marks == [] and len(layout.digits) == 1


# MNIST test 4s (of the first 300) that the ink alone cuts in two when drawn 1.6 times as wide:
# the valley between the left stroke and the stem looks like two digits touching
WIDE_FOURS = [6, 33, 49, 56, 103, 117, 210, 248]


def judge_with(layout, *, pieces: float, whole: float, other: float = 0.2, units: float = 0.2):
    """A stand-in model for ``layout``'s candidates: the ink's digits read at ``pieces``, the
    whole stroke as one digit at ``whole``, each unit alone at ``units``, the rest at
    ``other``."""
    every = [i for i, s in enumerate(layout.segments) if s.stop - s.start == layout.units]
    def judge(images: np.ndarray) -> np.ndarray:
        assert len(images) == len(layout.segments)
        top = np.full(len(images), other)
        top[[i for i, s in enumerate(layout.segments) if s.stop - s.start == 1]] = units
        top[layout.reading] = pieces
        top[every] = whole
        proba = np.repeat(((1 - top) / 9)[:, None], 10, axis=1)
        proba[:, 4] = top
        return proba
    return judge


def test_the_model_chooses_how_touching_digits_are_read(test_digits):
    images, _ = test_digits
    layout = read_layout(compose([images[6]], [], stretch=1.6))
    assert len(layout.digits) == 2 and layout.units > 2 and layout.undecided  # cut on ink
    def count(**read: float) -> int:
        return len(verified(layout, judge_with(layout, **read)).digits)
    assert count(pieces=0.6, whole=0.9) == 1
    assert count(pieces=0.9, whole=0.7) == 2
    assert count(pieces=0.9, whole=0.9) == 2                # a tie keeps the ink's reading
    assert count(pieces=np.nan, whole=0.9) == 2             # so does a broken model
    # the mean, not the product, of the digits' probabilities: 0.95 twice beats 0.93 once
    assert count(pieces=0.95, whole=0.93) == 2
    # a reading the ink did not propose: every unit a digit of its own
    assert count(pieces=0.9, whole=0.7, units=0.99) == layout.units
    joined = verified(layout, judge_with(layout, pieces=0.6, whole=0.9))
    assert joined.reading != layout.reading and len(joined.digits) == 1
    assert joined.digits[0].bbox[1] == layout.digits[0].bbox[1]


def test_pieces_unlike_any_digit_lose_to_pieces_that_look_like_digits(test_digits):
    """A confident answer is not enough: where the run's typicality fit says the whole stroke
    lies far from every digit it learnt and the ink's pieces near, the pieces are read."""
    images, _ = test_digits
    layout = read_layout(compose([images[6]], [], stretch=1.6))
    whole = [i for i, s in enumerate(layout.segments) if s.stop - s.start == layout.units]
    probabilities = judge_with(layout, pieces=0.9, whole=0.95)   # alone: read as one digit

    def count(whole_far: float, pieces_far: float) -> int:
        def judge(x: np.ndarray) -> Judgement:
            distance = np.full(len(x), 3.0)              # the other candidates: far
            distance[layout.reading] = pieces_far
            distance[whole] = whole_far
            return Judgement(probabilities(x), distance)
        return len(verified(layout, judge).digits)

    assert len(verified(layout, probabilities).digits) == 1
    assert len(verified(layout, lambda x: Judgement(probabilities(x), None)).digits) == 1
    assert count(whole_far=1.5, pieces_far=0.3) == 2
    assert count(whole_far=0.3, pieces_far=0.3) == 1     # equally near: the surer reading
    # the weight is a trade: a slightly surer whole wins over slightly nearer pieces
    gain = np.log(0.95) - np.log(0.9)
    farther = -0.5 * gain * JUDGE.confidence / JUDGE.distance    # half the gain, as distance
    assert count(whole_far=0.3 + farther, pieces_far=0.3) == 1


def test_pieces_shorter_than_the_line_lose_to_whole_digits(test_digits):
    """Equally sure and equally near, a reading whose pieces fall short of the line's height
    (a 4 drawn wide, cut under its bar: one piece half as tall) loses to the whole digit."""
    images, _ = test_digits
    layout = read_layout(compose([images[6]], [], stretch=1.6))
    heights = [s.piece.bbox[2] - s.piece.bbox[0] for s in layout.segments]
    assert min(heights[i] for i in layout.reading) < 0.6 * max(heights)
    same = judge_with(layout, pieces=0.9, whole=0.9, other=0.9, units=0.9)
    near = np.full(len(layout.segments), 0.3)
    assert len(verified(layout, same).digits) == 2               # no distance: a tie, the ink's
    assert len(verified(layout, lambda x: Judgement(same(x), near)).digits) == 1


def test_a_judge_that_knows_nearness_is_offered_narrower_strokes(test_digits):
    """A touching "71" only 1.0-1.25 times as wide as it is tall is one stroke the ink leaves
    whole; where the model can tell half a digit from a digit it is offered the cut."""
    images, labels = test_digits
    assert (labels[36], labels[39]) == (7, 1)
    gray = compose([images[36], images[39]], [-8])
    plain = read_layout(gray)
    assert not plain.undecided and len(plain.digits) == 1
    judged = read_layout(gray, split_width=JUDGED_SPLIT_WIDTH)
    assert judged.undecided and judged.units == 2
    def judge(x: np.ndarray) -> Judgement:
        whole = [s.stop - s.start == 2 for s in judged.segments]
        top = np.where(whole, 0.6, 0.99)
        proba = np.repeat(((1 - top) / 9)[:, None], 10, axis=1)
        proba[:, 7] = top
        return Judgement(proba, np.where(whole, 2.0, 0.3))
    assert len(verified(judged, judge).digits) == 2


def test_a_calibrated_run_judges_by_distance_too(tmp_path, trained_run):  # noqa: F811
    from mnistlab.inference.predict import judgement, split_width
    from mnistlab.train.calibration import calibration_from_logits, save_calibration
    from mnistlab.train.typicality import features_and_logits, fit

    images, labels = load_dataset("mnist", "test")
    plain = load_predictor(trained_run)
    x = images[:300].astype(np.float32) / 255
    bare = judgement(plain, x)
    assert bare.distance is None and bare.proba.shape == (300, 10)
    features, logits = features_and_logits(plain.model, torch.from_numpy(x[:, None]))
    typicality = fit(features[:200], labels[:200], features[200:])
    labels = labels[:300]
    assert typicality is not None
    run = tmp_path / "calibrated"
    shutil.copytree(trained_run, run)
    save_calibration(run, replace(calibration_from_logits(logits[200:], labels[200:]),
                                  typicality=typicality))
    said = judgement(load_predictor(run), x)
    assert said.distance is not None and said.distance.shape == (300,)
    assert split_width(plain) == SPLIT_WIDTH                # narrower strokes where it judges
    assert split_width(load_predictor(run)) == JUDGED_SPLIT_WIDTH
    expected = typicality.distance(features) / typicality.far_above
    assert np.allclose(said.distance, expected, rtol=1e-4)
    # noise is farther from the digits than the digits are
    noise = np.random.default_rng(0).random((50, 28, 28)).astype(np.float32)
    assert np.median(judgement(load_predictor(run), noise).distance) > np.median(said.distance)


def test_a_wide_digit_is_one_digit(test_digits, trained_run):  # noqa: F811
    """A 4 written broadly was cut in two at the thin join of its bar and stem ("41")."""
    images, _ = test_digits
    predictor = load_predictor(trained_run)
    pictures = [compose([images[i]], [], stretch=1.6) for i in WIDE_FOURS]
    assert all(len(find_digits(gray)) == 2 for gray in pictures)      # the ink alone cuts
    ones = [isinstance(read_picture(predictor, png(gray)), Prediction) for gray in pictures]
    assert sum(ones) >= 6, ones


def test_touching_digits_stay_two_when_the_model_judges(test_digits, trained_run):  # noqa: F811
    images, labels = test_digits
    predictor = load_predictor(trained_run)
    pairs = [(i, i + 1) for i in range(0, 40, 2)]
    for want in ("00", "11", "17", "47"):          # touching pairs a wide digit resembles
        first, second = (np.flatnonzero(labels[:200] == int(d))[:3] for d in want)
        pairs += list(zip(first, second, strict=True))
    for overlap in (4, 8):
        cut = same = 0
        for i, j in pairs:
            gray = compose([images[i], images[j]], [-overlap])
            if len(find_digits(gray)) != 2:
                continue                            # not cut on ink: nothing to judge
            cut += 1
            reading = read_picture(predictor, png(gray))
            same += isinstance(reading, NumberPrediction) and len(reading.digits) == 2
        assert same >= cut - 2 and cut >= 20, (overlap, same, cut)


def _columns(digits: list[np.ndarray], overlap: int, margin: int = 40) -> list[tuple[int, int]]:
    """Where ``compose(digits, [-overlap] * ...)`` puts each digit's ink: (left, right) px."""
    out, x = [], margin
    for d in digits:
        big = np.asarray(Image.fromarray(d).resize((28 * SCALE, 28 * SCALE),
                                                   Image.Resampling.BICUBIC), np.float32) / 255
        cols = np.flatnonzero(big.max(axis=0) > 0.1)
        width = int(cols[-1] + 1 - cols[0])
        out.append((x, x + width))
        x += width - overlap
    return out


def knows(layout, truth: list[tuple[int, int]], slack: int = 6):
    """A stand-in model that reads surely exactly the candidates lying within one digit's
    columns (``truth``) and covering most of them."""
    def judge(images: np.ndarray) -> np.ndarray:
        top = np.array([0.99 if any(s.piece.bbox[1] >= a - slack and s.piece.bbox[3] <= b + slack
                                    and s.piece.bbox[3] - s.piece.bbox[1] >= 0.6 * (b - a)
                                    for a, b in truth) else 0.5
                        for s in layout.segments])
        proba = np.repeat(((1 - top) / 9)[:, None], 10, axis=1)
        proba[:, 0] = top
        return proba
    return judge


@pytest.mark.parametrize("overlap", [8, 12])
def test_the_units_hold_the_border_the_ink_s_cut_misses(test_digits, overlap):
    """Overlapping digits' border is rarely their thinnest column: the ink alone splits 34 of
    these 40 pairs in two at 8 px, 27 at 12; among the units a model finds the border in more."""
    images, _ = test_digits
    ink = judged = 0
    for i in range(0, 80, 2):
        digits = [images[i], images[i + 1]]
        layout = read_layout(compose(digits, [-overlap]))
        ink += len(layout.digits) == 2
        judged += len(verified(layout, knows(layout, _columns(digits, overlap))).digits) == 2
    assert judged >= ink + 4, (ink, judged)


def test_a_long_stroke_may_still_be_read_as_one_digit():
    """However many units a stroke is cut into, the model may read it whole."""
    img = Image.new("L", (1000, 240), 255)
    xs = np.arange(20, 980, 2)
    ys = 120 + 90 * np.sin(xs / 23.0)
    ImageDraw.Draw(img).line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=0, width=8)
    layout = read_layout(np.asarray(img, np.float32) / 255)
    assert layout.units > JOIN_PIECES
    assert any(s.start == 0 and s.stop == layout.units for s in layout.segments)


@pytest.mark.parametrize("gap", [60, 120])
def test_two_lines_of_digits_are_refused_not_merged_into_one_number(test_digits, gap):
    # "72" over "10": merged column by column as stacked pieces, read "65" at 29%
    images, _ = test_digits
    top, bottom = compose([images[0], images[1]], [30]), compose([images[2], images[3]], [30])
    width = max(top.shape[1], bottom.shape[1])
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=1.0)
            for r in (top, bottom)]
    page = np.concatenate([rows[0][:-40], np.ones((gap - 80 + 40, width), np.float32),
                           rows[1][40:]])
    with pytest.raises(SeveralLines, match="2 lines of digits"):
        read_layout(page)


def test_digits_in_two_strokes_and_a_sloping_line_are_one_line(test_digits):
    images, labels = test_digits
    three = images[int(np.flatnonzero(labels == 3)[0])].copy()
    three[13:15] = 0                        # a 3 written as two arcs, one above the other
    arcs = compose([three, three], [30])    # two rows of pieces, two side by side in each
    assert len(read_layout(arcs).digits) >= 2                 # read, not refused
    # a number written uphill: each digit a third of a digit higher than the last
    sloped = compose([images[i] for i in range(4)], [30] * 3, margin=200)
    shifted = sloped.copy()
    for c in range(sloped.shape[1]):
        shifted[:, c] = np.roll(sloped[:, c], -int(0.33 * c * 28 * SCALE / (28 * SCALE + 30)))
    assert len(read_layout(shifted).digits) == 4


def test_a_judged_picture_is_read_in_one_pass_of_the_model(test_digits, trained_run):  # noqa: F811
    """The judge's answers for the digits it chose are the reading's: the model runs once on a
    picture of touching digits, and a batch of pictures gives what each picture gives alone."""
    from mnistlab.inference.predict import assess, read_pictures

    images, _ = test_digits
    predictor = load_predictor(trained_run)
    passes = []
    for method in ("logits", "logits_and_features"):           # every way to run the model
        real = getattr(predictor, method)

        def counted(x, real=real):
            passes.append(len(x))
            return real(x)

        setattr(predictor, method, counted)
    gray = compose([images[10], images[11]], [-8])                  # a 0 and a 6 touching
    assert read_layout(gray).undecided                              # ink cut, model to judge
    touching = png(gray)
    reading = read_picture(predictor, touching)
    assert isinstance(reading, NumberPrediction) and len(passes) == 1
    alone = assess(predictor, np.stack([d.pre.image for d in reading.digits]))
    assert np.allclose([d.probabilities for d in reading.digits], alone.proba, atol=1e-6)
    single = png(compose([images[2]], []))
    together = read_pictures(predictor, [single, touching, single])
    assert together[1].number == reading.number
    assert np.allclose([d.probabilities for d in together[1].digits],
                       [d.probabilities for d in reading.digits], atol=1e-6)
    assert together[0].digit == together[2].digit == read_picture(predictor, single).digit
