"""Inference on real images with a trained run (PyTorch) or an exported ONNX file.

    predictor = load_predictor("runs/cnn-...")        # or load_predictor(onnx="model.onnx")
    result = predict_image(predictor, "photo.jpg")    # Prediction(digit=7, probability=0.98, ...)

A predictor maps a batch (N, 1, 28, 28) float32 in [0, 1] to logits (N, 10); softmax is
applied here, where probabilities are shown, never inside a model. Two backends implement
``Predictor``: ``TorchPredictor`` (a run's model) and ``OnnxPredictor`` (an exported file).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from mnistlab import runs
from mnistlab.errors import UserError
from mnistlab.inference.preprocess import Preprocessed, preprocess


@runtime_checkable
class Predictor(Protocol):
    """What classifies images: a name to show and a batch -> logits function."""

    name: str      # what the user is told: the run folder or the ONNX file
    backend: str   # what computes the logits: "pytorch" | "onnxruntime"

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 1, 28, 28) float32 in [0, 1] -> (N, 10) float32 logits."""
        ...


class TorchPredictor:
    backend = "pytorch"

    def __init__(self, model: nn.Module, name: str) -> None:
        self.model = model.eval()
        self.name = name

    def logits(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        return out.float().numpy()


class OnnxPredictor:
    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
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
        self.input_name = inputs[0].name
        self.name = str(path)

    def logits(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self.session.run(None, {self.input_name: x})[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(predictor: Predictor, images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) or (N, 1, 28, 28) floats in [0, 1] -> (N, 10) probabilities (float64)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[:, None]
    return softmax(predictor.logits(x).astype(np.float64))


@dataclass
class Prediction:
    file: str
    digit: int
    probability: float
    probabilities: list[float]           # ten, summing to 1
    top: list[tuple[int, float]]         # (digit, probability), most likely first
    pre: Preprocessed

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "digit": self.digit, "probability": self.probability,
                "top": [{"digit": d, "probability": p} for d, p in self.top],
                "probabilities": self.probabilities}


class ModelOutputError(UserError):
    """The model answered NaN or infinity: the model is broken, not the picture."""


def _prediction(name: str, pre: Preprocessed, proba: np.ndarray, top: int) -> Prediction:
    if not np.isfinite(proba).all():
        # A diverged run or a broken export: `0 (nan%)` would look like an answer.
        raise ModelOutputError(f"{name}: the model answered NaN or infinity instead of "
                               "probabilities; its weights are broken (a diverged run or a "
                               "bad export): re-train the run or re-export it")
    order = np.argsort(-proba, kind="stable")[:max(1, min(top, 10))]
    return Prediction(file=name, digit=int(order[0]), probability=float(proba[order[0]]),
                      probabilities=[float(p) for p in proba],
                      top=[(int(d), float(proba[d])) for d in order], pre=pre)


def predict_preprocessed(predictor: Predictor, pre: Preprocessed, *, name: str = "image",
                         top: int = 3) -> Prediction:
    """An already preprocessed picture -> its Prediction."""
    return _prediction(name, pre, predict_proba(predictor, pre.image[None])[0], top)


def predict_image(predictor: Predictor, source: str | os.PathLike[str] | bytes, *,
                  top: int = 3, name: str | None = None) -> Prediction:
    """One picture (path or PNG/JPEG bytes) -> its Prediction; UserError if unusable."""
    label = name or ("upload" if isinstance(source, bytes) else str(source))
    return predict_preprocessed(predictor, preprocess(source), name=label, top=top)


def predict_files(predictor: Predictor, paths: list[str], *,
                  top: int = 3) -> list[Prediction | UserError]:
    """Each picture preprocessed, then one batched forward pass; failures kept in place."""
    pres: list[Preprocessed | UserError] = []
    for path in paths:
        try:
            pres.append(preprocess(path))
        except UserError as exc:
            pres.append(exc)
    good = [p for p in pres if isinstance(p, Preprocessed)]
    proba = predict_proba(predictor, np.stack([p.image for p in good])) if good else None
    out: list[Prediction | UserError] = []
    i = 0
    for path, pre in zip(paths, pres, strict=True):
        if isinstance(pre, UserError):
            out.append(pre)
        else:
            assert proba is not None
            try:
                out.append(_prediction(path, pre, proba[i], top))
            except ModelOutputError as exc:
                out.append(exc)
            i += 1
    return out


def load_predictor(run: str | os.PathLike[str] | None = None, *,
                   onnx: str | os.PathLike[str] | None = None) -> Predictor:
    """A run folder (or its name), an ONNX file, or, with neither, the best finished run."""
    if onnx is not None:
        return OnnxPredictor(onnx)
    if run is None:
        run = runs.best_run()
    path = runs.resolve_run(run) if not Path(run).is_file() else Path(run)
    return TorchPredictor(runs.load_model(path), str(path))
