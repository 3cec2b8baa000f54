"""Synthetic pictures of real digits, for checking the preprocessing end to end.

    render_mnist(digit)     an MNIST digit drawn large, dark ink on white (or light on dark)
    phone_photo(digit)      the same digit as if photographed on paper: uneven light, noise,
                            blur, a warm tint (save it as JPEG)

Used by the tests and by `mnistlab bench-serve`, which reports how often `predict` on these
pictures agrees with the label (the preprocessing's round trip).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from mnistlab.data import load_dataset
from mnistlab.inference.predict import Prediction, Predictor, predict_proba, read_picture


def encode(img: Image.Image, fmt: str = "PNG", **save: object) -> bytes:
    """A PIL image as file bytes (PNG by default)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def render_mnist(digit28: np.ndarray, scale: int = 10, margin: int = 40,
                 dark_on_light: bool = True) -> Image.Image:
    """An MNIST digit (uint8 28x28, white on black) drawn ``scale`` times larger (bicubic)
    with a ``margin`` of paper around it, by default as dark ink on white."""
    big = Image.fromarray(digit28).resize((28 * scale, 28 * scale), Image.Resampling.BICUBIC)
    arr = np.asarray(big)
    if dark_on_light:
        arr = 255 - arr
    canvas = np.full((arr.shape[0] + 2 * margin, arr.shape[1] + 2 * margin),
                     255 if dark_on_light else 0, dtype=np.uint8)
    canvas[margin:margin + arr.shape[0], margin:margin + arr.shape[1]] = arr
    return Image.fromarray(canvas)


def phone_photo(digit28: np.ndarray, seed: int = 0, size: int = 480) -> Image.Image:
    """A look-alike of a phone photo of a digit on paper (RGB, ``size`` px square): light
    falling from 0.40 to 0.98 across the sheet in a random direction plus a soft highlight,
    ink absorbing 80% of it, sensor noise (sigma 0.025), a 1.2 px blur, a warm tint."""
    rng = np.random.default_rng(seed)
    side = int(size * 0.45)
    ink = np.asarray(Image.fromarray(digit28).resize((side, side), Image.Resampling.BICUBIC),
                     dtype=np.float32) / 255.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    light = 0.40 + 0.50 * (np.cos(angle) * xx + np.sin(angle) * yy + 0.5) / 2 \
        + 0.08 * np.exp(-((xx - 0.3) ** 2 + (yy - 0.7) ** 2) * 4)
    paper = light.copy()
    top, left = (int(rng.integers(size // 8, size - side - size // 8)) for _ in range(2))
    region = paper[top:top + side, left:left + side]
    region[:] = region * (1 - 0.8 * ink)
    paper += rng.normal(0, 0.025, paper.shape).astype(np.float32)
    rgb = np.stack([paper * 1.0, paper * 0.96, paper * 0.88], -1)
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return img.filter(ImageFilter.GaussianBlur(1.2))


def _digit(predictor: Predictor, picture: bytes) -> int:
    """The digit read from a picture of one digit; -1 (a miss) where it was read as a number."""
    reading = read_picture(predictor, picture)
    return reading.digit if isinstance(reading, Prediction) else -1


def roundtrip_accuracy(predictor: Predictor, n: int = 200) -> dict[str, float | int]:
    """Accuracy of ``predict`` on the first ``n`` MNIST test digits given three ways: the raw
    28x28 arrays, large dark-on-white PNGs, and phone-photo JPEGs (quality 85)."""
    images, labels = load_dataset("mnist", "test")
    images, labels = images[:n], labels[:n].astype(int)
    direct = predict_proba(predictor, images / 255.0).argmax(1)
    png = [_digit(predictor, encode(render_mnist(d))) for d in images]
    photo = [_digit(predictor, encode(phone_photo(d, seed=i), "JPEG", quality=85))
             for i, d in enumerate(images)]
    return {"images": n, "direct_accuracy": float((direct == labels).mean()),
            "rendered_png_accuracy": float((np.array(png) == labels).mean()),
            "phone_photo_accuracy": float((np.array(photo) == labels).mean())}
