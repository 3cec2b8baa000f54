"""Inference on real images with a trained run (PyTorch) or an exported ONNX file.

    predictor = load_predictor("runs/cnn-...")        # or load_predictor(onnx="model.onnx")
    result = predict_image(predictor, "photo.jpg")    # Prediction(digit=7, probability=0.98, ...)

A predictor maps a batch (N, 1, 28, 28) float32 in [0, 1] to logits (N, 10); softmax is
applied here, where probabilities are shown, never inside a model. Two backends implement
``Predictor``: ``TorchPredictor`` (a run's model) and ``OnnxPredictor`` (an exported file);
``EnsemblePredictor`` (mnistlab.inference.ensemble) is a third, for a saved ensemble. The
first two also give the features the model's last layer reads (``FeaturePredictor``), so a
calibrated run can say a picture is unlike every digit it learnt (``train.typicality``); an
ensemble asks its members that (``EnsemblePredictor.logits_and_far``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from mnistlab import runs
from mnistlab.errors import UserError
from mnistlab.inference.ensemble import EnsemblePredictor, find_ensemble
from mnistlab.inference.marks import Mark
from mnistlab.inference.number import (
    JUDGED_SPLIT_WIDTH,
    SPLIT_WIDTH,
    Box,
    Layout,
    read_layout,
)
from mnistlab.inference.preprocess import (
    MAX_PIXELS,
    Preprocessed,
    open_image,
    to_gray,
    widened_note,
)
from mnistlab.inference.verify import Judgement, verified
from mnistlab.train.calibration import (
    NOT_CONFIDENT,
    Calibration,
    load_calibration,
    softmax,
    weights_fingerprint,
)
from mnistlab.train.typicality import Typicality, features_and_logits


@runtime_checkable
class Predictor(Protocol):
    """What classifies images: a name to show and a batch -> logits function."""

    name: str      # what the user is told: the run folder or the ONNX file
    backend: str   # what computes the logits: "pytorch" | "onnxruntime"
    # temperature and "unsure" threshold fitted on the run's held-out images; None: the run
    # kept none (TrainConfig.validation = 0), so probabilities are the raw softmax
    calibration: Calibration | None

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 1, 28, 28) float32 in [0, 1] -> (N, 10) float32 logits."""
        ...


class TorchPredictor:
    backend = "pytorch"

    def __init__(self, model: nn.Module, name: str,
                 calibration: Calibration | None = None,
                 device: torch.device | None = None) -> None:
        # the model lives on ``device`` (default the CPU); inputs go there, logits come back
        self.device = device if device is not None else torch.device("cpu")
        self.model = model.to(self.device).eval()
        self.name = name
        self.calibration = calibration

    def logits(self, x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.inference_mode():
            out = self.model(batch.to(self.device))
        return out.float().cpu().numpy()

    def logits_and_features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The logits and what the model's last layer read (N, D), in one pass; None for the
        features of a model that does not end in a Linear layer."""
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        features, logits = features_and_logits(self.model, batch)
        return logits, features


# the ONNX metadata key of the weights an export holds (``weights_fingerprint``)
WEIGHTS_KEY = "mnistlab_weights_sha256"


class OnnxPredictor:
    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None,
                 calibrated: bool = True) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: no such ONNX file; make one with "
                            "`mnistlab export RUN --format onnx`")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            reason = " ".join(str(exc).split())[:160]
            raise UserError(f"{path} is not a readable ONNX model ({reason}); re-export it "
                            "with `mnistlab export RUN --format onnx`") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or list(inputs[0].shape[1:]) != [1, 28, 28]:
            raise UserError(f"{path} does not take (N, 1, 28, 28) images; "
                            "expected an ONNX file written by `mnistlab export`")
        outputs = self.session.get_outputs()
        shape = outputs[0].shape if outputs else None
        # a named (symbolic) width is checked on the first answer instead
        if shape is None or len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != 10):
            raise UserError(f"{path} does not give (N, 10) scores (its first output is "
                            f"{shape}); expected an ONNX file written by `mnistlab export`")
        self.input_name = inputs[0].name
        self.name = str(path)
        # an export inside a run folder (the default RUN/model.onnx) shares its calibration;
        # ``calibrated`` False: the model alone (export's parity check)
        self.calibration = load_calibration(path.parent) if calibrated else None
        if self.calibration is not None:
            weights = self.session.get_modelmeta().custom_metadata_map.get(WEIGHTS_KEY)
            self.calibration.check_fitted_for(
                weights, f"{path.name} (in {path.parent})",
                "export into the run's own folder, or keep the file where no other run's "
                "calibration is")
        # exports since the second unsure reason also give what the last layer read
        self.with_features = [o.name for o in outputs][1:2] == ["features"]
        fit = self.calibration.typicality if self.calibration is not None else None
        width = outputs[1].shape[1] if self.with_features else None
        if fit is not None and isinstance(width, int) and width != fit.means.shape[1]:
            # the files beside the export belong to another model (a copy into another run)
            raise UserError(f"the calibration beside {path.name} (in {path.parent}) was fitted "
                            f"for another model ({fit.means.shape[1]} features, this file gives "
                            f"{width}); export into the run's own folder, or keep the file "
                            "where no other run's calibration is")

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.logits_and_features(x)[0]

    def logits_and_features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The logits and, from an export that has them, the features (else None)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = self.session.run(None, {self.input_name: x})
        if out[0].shape != (len(x), 10):
            raise UserError(f"{self.name} answered {out[0].shape[1:]} scores per picture, not "
                            "10; expected an ONNX file written by `mnistlab export`")
        return out[0], (out[1] if self.with_features else None)


@runtime_checkable
class FeaturePredictor(Predictor, Protocol):
    """A predictor that also gives the features its last layer reads (TorchPredictor,
    OnnxPredictor; None from a model or an export without them)."""

    def logits_and_features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        ...


@dataclass(frozen=True)
class Assessment:
    """A batch's calibrated probabilities and, where the predictor is calibrated, why each
    answer is unsure (``calibration.NOT_CONFIDENT`` or ``UNLIKE_DIGITS``) or None."""

    proba: np.ndarray                      # (N, 10) float64
    reasons: list[str | None] | None       # None: not calibrated, nothing is flagged

    @property
    def unsure(self) -> np.ndarray | None:
        """(N,) bool: which answers are unsure; None where nothing is calibrated."""
        return None if self.reasons is None else np.array([r is not None for r in self.reasons])

    def rows(self, index: list[int]) -> Assessment:
        """The answers of the pictures at ``index``, in that order."""
        return Assessment(self.proba[index],
                          None if self.reasons is None else [self.reasons[i] for i in index])


def assess(predictor: Predictor, images: np.ndarray) -> Assessment:
    """(N, 28, 28) or (N, 1, 28, 28) floats in [0, 1] -> probabilities (calibrated when the
    predictor carries a calibration) and the unsure flags with their reasons."""
    return _assessed(predictor, images)[0]


def judgement(predictor: Predictor, images: np.ndarray) -> Judgement:
    """(N, 28, 28) candidate digits -> their probabilities and, where the predictor is
    calibrated and gives features, how far each lies from the digits it learnt (over its far
    threshold): what ``verify`` weighs the ways to read touching digits by."""
    return _judged(predictor, images, [])


def _assessed(predictor: Predictor, images: np.ndarray
              ) -> tuple[Assessment, np.ndarray | None]:
    """One pass of the model for ``assess`` and ``judgement`` both: the Assessment, and each
    picture's squared distance to the nearest digit over the far threshold (an ensemble: its
    members' weighted mean), None where nobody can say."""
    x = _batch(images)
    cal = predictor.calibration
    far = distance = None
    if isinstance(predictor, EnsemblePredictor):        # each member against its own fit
        logits, far, distance = predictor.logits_far_and_distance(x)
    elif isinstance(predictor, FeaturePredictor):
        logits, features = predictor.logits_and_features(x)
        fit = _typicality(predictor)
        if fit is not None and features is not None:
            distance, far = fit.judge(features)
    else:
        logits = predictor.logits(x)
    proba = _probabilities(predictor, logits)
    return Assessment(proba, None if cal is None else cal.reasons(proba, far)), distance


def split_width(predictor: Predictor) -> float:
    """How wide a stroke must be (over its height) for ``number`` to offer cutting it into
    touching digits: narrower strokes where ``judgement`` gives distances, whose judge tells
    half a digit from a digit (``inference.verify``)."""
    if isinstance(predictor, EnsemblePredictor):
        knows = any(fit is not None for fit in predictor.typicalities)
    elif isinstance(predictor, OnnxPredictor):
        knows = predictor.with_features and _typicality(predictor) is not None
    else:
        knows = isinstance(predictor, FeaturePredictor) and _typicality(predictor) is not None
    return JUDGED_SPLIT_WIDTH if knows else SPLIT_WIDTH


def _typicality(predictor: Predictor) -> Typicality | None:
    """The fit that says how far a picture lies from the digits the run learnt, where its
    calibration holds one."""
    return predictor.calibration.typicality if predictor.calibration is not None else None


def predict_proba(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) or (N, 1, 28, 28) floats in [0, 1] -> (N, 10) probabilities (float64),
    calibrated when the predictor carries a calibration; no unsure flags (``assess``)."""
    return _probabilities(predictor, predictor.logits(_batch(images)))


def _batch(images: np.ndarray) -> np.ndarray:
    x = np.asarray(images, dtype=np.float32)
    return x[:, None] if x.ndim == 3 else x


def _probabilities(predictor: Predictor, logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    cal = predictor.calibration
    return (cal.probabilities(logits) if cal is not None else softmax(logits)).astype(np.float64)


@dataclass
class Prediction:
    file: str
    digit: int
    probability: float
    probabilities: list[float]           # ten, summing to 1
    top: list[tuple[int, float]]         # (digit, probability), most likely first
    pre: Preprocessed
    unsure: bool | None = None           # below the run's threshold; None: not calibrated
    bbox: Box | None = None              # where it was found in the picture (working pixels)
    # why it is unsure: "not confident" (the top probability is low) or "unlike the digits
    # it learnt" (its features lie far from every digit's); None when it is not
    unsure_reason: str | None = None

    @property
    def notes(self) -> list[str]:
        """What reading the picture left out or changed (a ruled line, a ring, thin strokes
        widened), for the user: nothing on a plain drawing."""
        return list(self.pre.notes)

    @property
    def number(self) -> str:
        """The digit as a number of one digit, as ``NumberPrediction.number`` spells its own:
        ``read(picture).number`` works whatever the picture holds."""
        return str(self.digit)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "digit": self.digit, "probability": self.probability,
                "top": [{"digit": d, "probability": p} for d, p in self.top],
                "probabilities": self.probabilities, "unsure": self.unsure,
                "unsure_reason": self.unsure_reason, "notes": self.notes}


@dataclass
class NumberPrediction:
    """A picture holding several digits, or one after a minus sign: each read on its own, left
    to right, and the marks written between them (a date's dots, a time's colon, a dash) or
    before them (a minus)."""

    file: str
    digits: list[Prediction]
    size: tuple[int, int]                # (height, width) of the picture the boxes refer to
    marks: list[Mark] = field(default_factory=list)
    # the calibrated threshold its digits were judged by (None: not calibrated): a number whose
    # chance of being all right falls under it is unsure too, though each digit clears it
    unsure_below: float | None = None

    @property
    def number(self) -> str:
        """The digits with their marks in place: "34", "06.12", "12:30", "42-7", "-5", "10."."""
        out = []
        for i, d in enumerate(self.digits):
            out += [m.char for m in self.marks if m.before == i]
            out.append(str(d.digit))
        out += [m.char for m in self.marks if m.before == len(self.digits)]     # a full stop
        return "".join(out)

    @property
    def probability(self) -> float:
        """The chance that every digit is right, if their errors are independent."""
        return float(np.prod([d.probability for d in self.digits]))

    @property
    def unsure(self) -> bool | None:
        flags = [d.unsure for d in self.digits]
        return None if None in flags else any(flags) or self._whole_below()

    def _whole_below(self) -> bool:
        return self.unsure_below is not None and self.probability < self.unsure_below

    @property
    def unsure_reason(self) -> str | None:
        """The first unsure digit's reason and which digit: "not confident (digit 2 of 3)";
        else, where the whole number is unlikely all right though each digit clears the
        threshold (nine digits at 94% each: 57%), "not confident in the whole number"."""
        for i, d in enumerate(self.digits):
            if d.unsure_reason is not None:
                return f"{d.unsure_reason} (digit {i + 1} of {len(self.digits)})"
        if self.unsure and self._whole_below():
            return f"{NOT_CONFIDENT} in the whole number"
        return None

    @property
    def notes(self) -> list[str]:
        """The picture's notes (a ruled line, a ring: they lead every digit's) said once, and
        the digits' widened strokes in one note ("thin strokes widened by 5-8 px")."""
        notes = list(dict.fromkeys(n for d in self.digits for n in d.pre.left_out))
        px = sorted({round(d.pre.thickened_px) for d in self.digits if d.pre.thickened_px})
        if px:
            notes.append(widened_note(f"{px[0]}" if len(px) == 1 else f"{px[0]}-{px[-1]}"))
        return notes

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "number": self.number, "probability": self.probability,
                "unsure": self.unsure, "unsure_reason": self.unsure_reason,
                "size": list(self.size), "notes": self.notes,
                "marks": [{"mark": m.char, "before": m.before, "bbox": list(m.bbox)}
                          for m in self.marks],
                "digits": [{"digit": d.digit, "probability": d.probability,
                            "unsure": d.unsure, "unsure_reason": d.unsure_reason,
                            "bbox": list(d.bbox or ()),
                            "top": [{"digit": k, "probability": v} for k, v in d.top]}
                           for d in self.digits]}


Reading = Prediction | NumberPrediction


def _threshold(predictor: Predictor) -> float | None:
    """The calibrated "unsure" threshold the predictor's answers are judged by, or None."""
    cal = predictor.calibration
    return None if cal is None else cal.unsure_below


class ModelOutputError(UserError):
    """The model answered NaN or infinity: the model is broken, not the picture."""


def _prediction(name: str, pre: Preprocessed, assessed: Assessment, index: int, top: int,
                bbox: Box | None = None) -> Prediction:
    proba = assessed.proba[index]
    if not np.isfinite(proba).all():
        # A diverged run or a broken export: `0 (nan%)` would look like an answer.
        raise ModelOutputError(f"{name}: the model answered NaN or infinity instead of "
                               "probabilities; its weights are broken (a diverged run or a "
                               "bad export): re-train the run or re-export it")
    order = np.argsort(-proba, kind="stable")[:max(1, min(top, 10))]
    reason = None if assessed.reasons is None else assessed.reasons[index]
    return Prediction(file=name, digit=int(order[0]), probability=float(proba[order[0]]),
                      probabilities=[float(p) for p in proba],
                      top=[(int(d), float(proba[d])) for d in order], pre=pre,
                      unsure=None if assessed.reasons is None else reason is not None,
                      bbox=bbox, unsure_reason=reason)


def predict_preprocessed(predictor: Predictor, pre: Preprocessed, *, name: str = "image",
                         top: int = 3) -> Prediction:
    """An already preprocessed picture -> its Prediction."""
    return _prediction(name, pre, assess(predictor, pre.image[None]), 0, top)


def read_picture(predictor: Predictor, source: str | os.PathLike[str] | bytes, *,
                 top: int = 3, name: str | None = None, max_pixels: int = MAX_PIXELS,
                 max_decoded_pixels: int | None = None) -> Reading:
    """One picture -> a Prediction (one digit, exactly as before) or, when it holds several
    digits side by side, a NumberPrediction; UserError if unusable."""
    return read_pictures(predictor, [source], top=top, names=[name] if name else None,
                         max_pixels=max_pixels, max_decoded_pixels=max_decoded_pixels,
                         keep_errors=False)[0]  # type: ignore[return-value]


def predict_image(predictor: Predictor, source: str | os.PathLike[str] | bytes, *,
                  top: int = 3, name: str | None = None) -> Prediction:
    """One picture of one digit -> its Prediction; UserError if unusable, or if it holds
    several digits (``read_picture`` reads those as a number)."""
    label = name or ("upload" if isinstance(source, bytes) else str(source))
    reading = read_picture(predictor, source, top=top, name=label)
    if isinstance(reading, Prediction):
        return reading
    raise UserError(f"{label} holds a written number ({reading.number}); "
                    "read it as a number (read_picture; Run.read in mnistlab.api), or "
                    "send one digit")


def read_pictures(predictor: Predictor, sources: list[Any], *, top: int = 3,
                  names: list[str] | None = None, max_pixels: int = MAX_PIXELS,
                  max_decoded_pixels: int | None = None,
                  keep_errors: bool = True) -> list[Reading | UserError]:
    """Each picture's digits found, then one batched forward pass over all of them; a
    picture that fails is its UserError in place (``keep_errors``) or raised."""
    names = names or [("upload" if isinstance(s, bytes) else str(s)) for s in sources]
    found: list[_Found | UserError] = []
    for source in sources:
        try:
            gray = to_gray(open_image(source, max_pixels=max_pixels,
                                      max_decoded_pixels=max_decoded_pixels))
            # a stroke wide enough to hold touching digits is read the way the model reads
            # most surely, its pieces nearest the digits it learnt (a wide 4 is no "41"; a
            # touching "47" no 4): a few 28x28s more, whose answers are kept for the reading
            judged: list[Assessment] = []
            layout = verified(read_layout(gray, split_width=split_width(predictor)),
                              partial(_judged, predictor, keep=judged))
            found.append(_Found(layout, gray.shape, judged[0].rows(layout.reading)
                                if judged else None))
        except UserError as exc:
            if not keep_errors:
                raise
            found.append(exc)
    # the digits the judge did not see, in one batched pass
    pieces = [p for f in found if isinstance(f, _Found) and f.assessed is None
              for p in f.layout.digits]
    assessed = assess(predictor, np.stack([p.pre.image for p in pieces])) if pieces else None
    out: list[Reading | UserError] = []
    i = 0
    for name, f in zip(names, found, strict=True):
        if isinstance(f, UserError):
            out.append(f)
            continue
        mine, start = (f.assessed, 0) if f.assessed is not None else (assessed, i)
        assert mine is not None
        try:
            digits = [_prediction(name, p.pre, mine, start + k, top, p.bbox)
                      for k, p in enumerate(f.layout.digits)]
        except ModelOutputError as exc:
            if not keep_errors:
                raise
            digits = []
            out.append(exc)
        if f.assessed is None:
            i += len(f.layout.digits)
        if digits:
            out.append(digits[0] if len(digits) == 1 and not f.layout.marks
                       else NumberPrediction(name, digits, f.shape, f.layout.marks,
                                             _threshold(predictor)))
    return out


@dataclass(frozen=True)
class _Found:
    """A picture's digits as found, and their answers where the judge already read them."""

    layout: Layout
    shape: tuple[int, int]
    assessed: Assessment | None     # one row per digit of the reading; None: not judged


def _judged(predictor: Predictor, images: np.ndarray, keep: list[Assessment]) -> Judgement:
    """``judgement``, keeping the Assessment of the same pass in ``keep``."""
    assessed, distance = _assessed(predictor, images)
    keep.append(assessed)
    return Judgement(assessed.proba, distance)


def predict_files(predictor: Predictor, paths: list[str], *,
                  top: int = 3) -> list[Reading | UserError]:
    """Each picture read (one digit or a number), failures kept in place."""
    return read_pictures(predictor, list(paths), top=top)


def load_predictor(run: str | os.PathLike[str] | None = None, *,
                   onnx: str | os.PathLike[str] | None = None,
                   device: torch.device | None = None) -> Predictor:
    """A run folder (or its name), a saved ensemble's folder, an ONNX file, or, with none of
    them, the best finished run for pictures (the best ``robust`` run when there is one, else
    the best of all).

    ``device``: where a run's model runs (its weights load on the CPU, then move; default the
    CPU); an ONNX file always runs on onnxruntime's CPU provider."""
    if onnx is not None:
        return OnnxPredictor(onnx)
    ensemble = find_ensemble(run)               # a folder saved by evaluate --ensemble --save
    if ensemble is not None:
        return EnsemblePredictor(ensemble, device)
    if run is None:
        run = runs.best_run(for_pictures=True)   # the robust run when there is one
    path = runs.resolve_run(run) if not Path(run).is_file() else Path(run)
    return run_predictor(path, device)


def run_predictor(path: Path, device: torch.device | None = None) -> TorchPredictor:
    """A run's model (a run folder, or its weights file) with the run's calibration, refused
    where that calibration was fitted for other weights."""
    calibration = load_calibration(path) if path.is_dir() else None
    model = runs.load_model(path)
    if calibration is not None:
        calibration.check_fitted_for(weights_fingerprint(model), f"the weights in {path}",
                                     f"fit it again with `mnistlab calibrate {path}`")
    return TorchPredictor(model, str(path), calibration, device)
