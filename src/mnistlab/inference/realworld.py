"""How a model does on digits from other sources (``data.realworld``), through the same
preprocessing that ``mnistlab predict`` uses, and on numbers composed of those digits.

    result = evaluate_realworld(predictor, realworld_set())
    result.accuracy, result.parts["strokes"].accuracy, result.numbers.accuracy

Numbers are composed of those digits (``inference.composed``); with ``touching``, the same
numbers are read again with neighbouring digits running into each other
(``result.touching_numbers``), which measures how touching digits are cut apart.

A picture preprocessing refuses (no ink found) counts as a miss: a person reads every one.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mnistlab.data.realworld import Sample
from mnistlab.errors import UserError
from mnistlab.inference.composed import Composed, compose_numbers
from mnistlab.inference.predict import NumberPrediction, Predictor, assess, read_picture
from mnistlab.inference.preprocess import ImageInputError, preprocess_gray

BATCH = 256


def encode_png(picture: np.ndarray) -> bytes:
    """A uint8 (H, W) picture as PNG bytes: numbers go through predict's own decoding."""
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class PartScore:
    images: int
    correct: int
    refused: int                   # pictures preprocessing could not use

    @property
    def accuracy(self) -> float:
        return self.correct / self.images if self.images else float("nan")


@dataclass(frozen=True)
class NumberScore:
    numbers: int
    digits: int                    # digits in all the numbers
    read_whole: int                # numbers read exactly (every digit, none missing or extra)
    right_count: int               # numbers split into the right number of digits
    marks: bool = False            # each with a mark between two digits, read whole with it
    marks_right: int = 0           # with marks: numbers whose mark was found, as written
    # per part of the set the digits came from: (numbers read whole, numbers)
    parts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.read_whole / self.numbers if self.numbers else float("nan")

    def to_dict(self) -> dict[str, object]:
        return {"accuracy": self.accuracy, "numbers": self.numbers, "digits": self.digits,
                "read_whole": self.read_whole, "right_count": self.right_count,
                "marks": self.marks, "marks_right": self.marks_right,
                "parts": {k: {"read_whole": w, "numbers": n} for k, (w, n) in self.parts.items()}}


@dataclass(frozen=True)
class RealWorldResult:
    parts: dict[str, PartScore]
    numbers: NumberScore | None = None
    confusions: list[tuple[int, int, int]] = field(default_factory=list)  # (true, pred, count)
    touching_numbers: NumberScore | None = None    # the same numbers, their digits touching

    @property
    def images(self) -> int:
        return sum(p.images for p in self.parts.values())

    @property
    def accuracy(self) -> float:
        return sum(p.correct for p in self.parts.values()) / max(self.images, 1)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "accuracy": self.accuracy, "images": self.images,
            "parts": {k: {"accuracy": v.accuracy, "images": v.images, "correct": v.correct,
                          "refused": v.refused} for k, v in self.parts.items()},
            "top_confusions": [{"true": t, "predicted": p, "count": n}
                               for t, p, n in self.confusions]}
        if self.numbers is not None:
            out["numbers"] = self.numbers.to_dict()
        if self.touching_numbers is not None:
            out["touching_numbers"] = self.touching_numbers.to_dict()
        return out


Progress = Callable[[int], None]     # called with the number of pictures just done


def classify(predictor: Predictor, samples: Sequence[Sample], *,
             on_progress: Progress | None = None) -> np.ndarray:
    """Predicted digit per sample (-1 where preprocessing refused it), int (N,)."""
    preds = np.full(len(samples), -1, dtype=np.int64)
    images, where = [], []
    for i, s in enumerate(samples):
        try:
            images.append(preprocess_gray(s.picture.astype(np.float32) / 255.0).image)
            where.append(i)
        except ImageInputError:
            pass
        if on_progress is not None:
            on_progress(1)
    for start in range(0, len(images), BATCH):
        batch = np.stack(images[start:start + BATCH])[:, None]             # (B, 1, 28, 28)
        preds[where[start:start + BATCH]] = predictor.logits(batch).argmax(axis=1)
    return preds


def evaluate_realworld(predictor: Predictor, samples: Sequence[Sample], *, numbers: int = 0,
                       marks: bool = False, touching: bool = False,
                       on_progress: Progress | None = None) -> RealWorldResult:
    """Accuracy per part (and, with ``numbers`` > 0, on that many composed numbers; ``marks``:
    each with a dot, colon or dash between two digits, read whole only with it in place;
    ``touching``: the same numbers again, their neighbouring digits touching);
    ``on_progress`` hears of each picture and each number done."""
    preds = classify(predictor, samples, on_progress=on_progress)
    labels = np.array([s.label for s in samples])
    parts: dict[str, PartScore] = {}
    for part in dict.fromkeys(s.part for s in samples):
        mine = np.array([s.part == part for s in samples])
        parts[part] = PartScore(int(mine.sum()), int((preds[mine] == labels[mine]).sum()),
                                int((preds[mine] == -1).sum()))
    pairs: dict[tuple[int, int], int] = {}
    for t, p in zip(labels, preds, strict=True):
        if t != p:
            pairs[(int(t), int(p))] = pairs.get((int(t), int(p)), 0) + 1
    confusions = [(t, p, n) for (t, p), n in sorted(pairs.items(), key=lambda kv: -kv[1])[:5]]
    score = touched = None
    if numbers:
        score = _read_numbers(predictor, compose_numbers(samples, numbers, marks=marks), marks,
                              on_progress)
        if touching:
            touched = _read_numbers(predictor, compose_numbers(samples, numbers, marks=marks,
                                                               touching=True),
                                    marks, on_progress)
    return RealWorldResult(parts, score, confusions, touched)


def _read_numbers(predictor: Predictor, composed: list[Composed], marks: bool,
                  on_progress: Progress | None) -> NumberScore:
    """How many of the composed numbers are read whole (in all and per part), and split into
    the right number of digits; with ``marks``, read whole only with the mark in place."""
    count_ok = digits = marks_right = 0
    seen: Counter[str] = Counter()                 # numbers per part, and those read whole
    read: Counter[str] = Counter()
    for picture, want, part in composed:
        seen[part] += 1
        wanted = sum(c.isdigit() for c in want)
        digits += wanted
        if on_progress is not None:
            on_progress(1)
        try:
            reading = read_picture(predictor, encode_png(picture))
        except ImageInputError:
            continue
        if isinstance(reading, NumberPrediction):
            digits_read, spelled = reading.digits, reading.number
        else:
            digits_read, spelled = [reading], str(reading.digit)
        if marks:
            marks_right += _marks_of(spelled) == _marks_of(want)
        else:                              # as before marks were read: the digits alone
            spelled = "".join(str(d.digit) for d in digits_read)
        read[part] += spelled == want
        count_ok += len(digits_read) == wanted
    return NumberScore(len(composed), digits, sum(read.values()), count_ok, marks, marks_right,
                       {part: (read[part], seen[part]) for part in sorted(seen)})


def _marks_of(spelled: str) -> list[tuple[int, str]]:
    """The marks of a spelled number, each with how many digits stand before it."""
    out, digits = [], 0
    for c in spelled:
        if c.isdigit():
            digits += 1
        else:
            out.append((digits, c))
    return out


@dataclass(frozen=True)
class UnsureRates:
    """How often answers are flagged unsure (or refused: no ink), per kind of picture."""

    mnist_test: float                 # MNIST test digits flagged (they should not be)
    by_part: dict[str, float]         # non-digit parts (letters, scribbles) flagged or refused

    def to_dict(self) -> dict[str, object]:
        return {"mnist_test": self.mnist_test, **self.by_part}


def unsure_rates(predictor: Predictor, mnist_images: np.ndarray,
                 non_digits: Sequence[Sample]) -> UnsureRates:
    """The share of MNIST test digits (uint8 (N, 28, 28)) flagged unsure, and of each part of
    ``non_digits`` flagged unsure or refused. Needs a calibrated predictor."""
    if predictor.calibration is None:
        raise UserError(f"{predictor.name} is not calibrated (trained without --validation), so "
                        "it flags nothing unsure; train with --validation N (the robust preset "
                        "does)")
    flagged = []
    for start in range(0, len(mnist_images), BATCH):
        x = mnist_images[start:start + BATCH].astype(np.float32)[:, None] / 255.0
        unsure = assess(predictor, x).unsure
        assert unsure is not None                             # calibrated, checked above
        flagged.append(unsure)
    mnist = float(np.concatenate(flagged).mean())
    preds_ok: dict[str, list[bool]] = {}
    for s in non_digits:
        try:
            reading = read_picture(predictor, encode_png(s.picture))
            hit = bool(reading.unsure)
        except ImageInputError:
            hit = True                                        # refused: not taken for a digit
        preds_ok.setdefault(s.part, []).append(hit)
    return UnsureRates(mnist, {k: float(np.mean(v)) for k, v in preds_ok.items()})
