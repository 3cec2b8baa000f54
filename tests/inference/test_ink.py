"""Ink detection follows the picture: faint but clear strokes are ink, blank paper is not.

The pictures are MNIST test digits drawn large as a scanner or a phone would see them: pencil
grey on white, low-contrast scans, uneven light, JPEG; and blank sheets with the same noise.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mnistlab.data import load_dataset
from mnistlab.inference.preprocess import NoInk, preprocess


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return load_dataset("mnist", "test")[0][:3]


def encode(gray: np.ndarray, fmt: str = "PNG", blur: float = 0.0, **save: object) -> bytes:
    img = Image.fromarray((np.clip(gray, 0, 1) * 255).astype(np.uint8))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def scan(digit: np.ndarray, *, paper: float = 0.97, ink: float = 0.88, noise: float = 0.004,
         gradient: float = 0.0, seed: int = 0) -> np.ndarray:
    """The digit 10x larger, as grey ``ink`` on ``paper`` with sensor noise and light falling
    off by ``gradient`` across the sheet; float (360, 360) in [0, 1]."""
    rng = np.random.default_rng(seed)
    big = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC),
                     dtype=np.float32) / 255.0
    strokes = np.zeros((360, 360), np.float32)
    strokes[40:320, 40:320] = big
    xx = np.mgrid[0:360, 0:360][1] / 360
    return paper - gradient * xx - (paper - ink) * strokes + rng.normal(0, noise, strokes.shape)


FAINT = {
    "pencil": dict(ink=0.88),
    "faint pencil": dict(ink=0.92),
    "very faint pencil": dict(ink=0.94, noise=0.003),
    "low-contrast scan": dict(paper=0.85, ink=0.72, noise=0.01),
    "uneven light": dict(ink=0.86, gradient=0.3, noise=0.006),
}


@pytest.mark.parametrize("kind", sorted(FAINT))
def test_faint_strokes_are_ink(digits, kind):
    for seed, digit in enumerate(digits):
        pre = preprocess(encode(scan(digit, seed=seed, **FAINT[kind]), blur=0.8))
        assert pre.inverted
        corr = np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1]
        assert corr > 0.7, (kind, seed, corr)      # the digit itself, not noise


def test_faint_pencil_in_a_noisy_photo_is_a_digit_not_a_block(digits):
    # pencil 15-20 grey levels under the paper, sensor noise of 4 added after the lens's blur:
    # Otsu split the noise, half the picture was "ink", and a solid block was read (6 at 52%)
    rng = np.random.default_rng(0)
    for ink in (0.86, 0.88):
        for seed, digit in enumerate(digits):
            lens = encode(scan(digit, paper=0.93, ink=ink, noise=0.0, seed=seed), blur=1.0)
            photo = np.asarray(Image.open(io.BytesIO(lens)), np.float32) / 255.0
            photo += rng.normal(0, 0.016, photo.shape)
            pre = preprocess(encode(photo, "JPEG", quality=88))
            corr = np.corrcoef(pre.image.ravel(), digit.ravel() / 255.0)[0, 1]
            assert corr > 0.7, (ink, seed, corr)


def test_faint_strokes_survive_jpeg(digits):
    pre = preprocess(encode(scan(digits[1], ink=0.9), "JPEG", blur=0.8, quality=80))
    assert np.corrcoef(pre.image.ravel(), digits[1].ravel() / 255.0)[0, 1] > 0.7


def _blanks() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:300, 0:300] / 300
    return {
        "white": np.ones((300, 300)),
        "white, noisy": 0.97 + rng.normal(0, 0.01, xx.shape),
        "grey, very noisy": 0.5 + rng.normal(0, 0.05, xx.shape),
        "clean but faintly noisy": 0.9 + rng.normal(0, 0.003, xx.shape),
        "lighting gradient": 0.5 + 0.4 * xx,
        "gradient and noise": 0.5 + 0.4 * xx + rng.normal(0, 0.02, xx.shape),
        "vignette": 0.95 - 0.4 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2),
        "light in waves": 0.9 + 0.05 * np.sin(xx * 6) + rng.normal(0, 0.01, xx.shape),
    }


@pytest.mark.parametrize("name", sorted(_blanks()))
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_blank_or_flat_pictures_are_refused(name, fmt):
    with pytest.raises(NoInk, match="no ink found"):
        preprocess(encode(_blanks()[name], fmt, **({"quality": 85} if fmt == "JPEG" else {})))


def test_a_digit_cropped_to_its_blurred_ink_is_read():
    """Cropped to the ink of a soft, upscaled digit, under a fifth of the picture is clean
    paper: the fitted surface followed the strokes and these were refused as blank."""
    images = load_dataset("mnist", "test")[0]
    for i in (39, 94, 154, 168, 181, 203, 279):             # 1s and an 8
        big = np.asarray(Image.fromarray(images[i]).resize((224, 224),
                                                           Image.Resampling.BICUBIC))
        rows, cols = np.flatnonzero(big.max(1) > 40), np.flatnonzero(big.max(0) > 40)
        crop = 1.0 - big[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] / 255.0
        pre = preprocess(encode(crop))
        # 0.81-1.00 here
        assert np.corrcoef(pre.image.ravel(), images[i].ravel() / 255.0)[0, 1] > 0.75, i


def _crossed_seven(side: int, width: int) -> bytes:
    from PIL import ImageDraw

    img = Image.new("L", (side, side), 255)
    draw, s = ImageDraw.Draw(img), side / 900
    draw.line([(200 * s, 80 * s), (600 * s, 80 * s), (330 * s, 820 * s)], fill=0, width=width)
    draw.line([(300 * s, 450 * s), (560 * s, 450 * s)], fill=0, width=width)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_a_one_pixel_pencil_on_a_large_canvas_keeps_its_strokes() -> None:
    # A 740 px tall 7 drawn with a 1 px pencil: shrunk by averaging to the 160 px working
    # size, its lines faded to a quarter of their shade and only their crossings stayed ink,
    # so the 28x28 was a blob (correlation 0.31 with the same 7 drawn bold; 0.96 now).
    thin = preprocess(_crossed_seven(900, 1)).image
    bold = preprocess(_crossed_seven(900, 75)).image
    assert np.corrcoef(thin.ravel(), bold.ravel())[0, 1] > 0.85


@pytest.mark.parametrize("side", [1200, 1600, 2400])
def test_a_one_pixel_pencil_on_a_larger_canvas_keeps_its_top_bar(side: int) -> None:
    # Reduced to the 1,024 px working size, the 1 px bar fell where two rows became one and
    # kept half its stem's shade: the 28x28 lost the bar (correlation 0.42 with the bold 7
    # at 1,200 px, 0.41 at 1,600, 0.42 at 2,400; 0.96 now)
    thin = preprocess(_crossed_seven(side, 1)).image
    bold = preprocess(_crossed_seven(900, 75)).image
    assert np.corrcoef(thin.ravel(), bold.ravel())[0, 1] > 0.85
    bar = thin[:, 8:18].max(axis=1)          # the bar: one of the top rows, across the digit
    assert bar[:12].max() > 0.9


def test_a_one_pixel_pencil_on_a_1600_px_canvas_is_one_piece_of_ink() -> None:
    # BOX-reduced by 1.56, the line's shade varied fourfold and its faint stretches fell below
    # the ink's threshold: the 7 was read as a number of 7 pieces
    from mnistlab.inference.number import read_layout
    from mnistlab.inference.preprocess import open_image, to_gray

    assert len(read_layout(to_gray(open_image(_crossed_seven(1600, 1)))).digits) == 1
