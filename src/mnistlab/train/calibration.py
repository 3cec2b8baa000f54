"""Honest confidence: temperature scaling and an "unsure" threshold, both fitted on a
validation split held out of training (``TrainConfig.validation``), never on the test set.

    calibration = calibrate(model, x_val, y_val, precision="bf16")
    probs = calibration.probabilities(logits)        # softmax(logits / T), (N, 10)
    calibration.reasons(probs, calibration.far(features))   # why each is unsure (top
                                                     # probability too low, or unlike any
                                                     # digit), or None

A network trained with cross-entropy (and label smoothing) is over- or under-confident by a
roughly constant factor in its logits; one temperature T, fitted by minimising the negative
log-likelihood on held-out images, removes most of it (Guo et al., 2017). The threshold flags
the least confident ``UNSURE_SHARE`` of the validation digits: on MNIST those hold most of
the errors, and a scribble or a letter lands there more often than a digit does. A picture
whose features lie far from every digit the model learnt is unsure too, however confident the
answer (``typicality``: most letters and scribbles are caught that way, few mistakes).

The run folder keeps the fit in ``calibration.json`` (and ``typicality.safetensors``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mnistlab import atomic
from mnistlab.errors import UserError
from mnistlab.runs.files import read_json_object
from mnistlab.runs.weights import tensors_sha256
from mnistlab.train.typicality import (
    TYPICALITY,
    Progress,
    Typicality,
    features_and_logits,
    fit_typicality,
    load_typicality,
    save_typicality,
    typicality_sha256,
)

CALIBRATION = "calibration.json"
UNSURE_SHARE = 0.01          # the share of validation digits flagged "unsure"
ECE_BINS = 15
NOT_CONFIDENT = "not confident"
UNLIKE_DIGITS = "unlike the digits it learnt"


@dataclass(frozen=True)
class Calibration:
    temperature: float            # logits are divided by it before the softmax
    unsure_below: float           # a calibrated top probability under this is "unsure"
    validation_images: int
    validation_accuracy: float
    nll_before: float             # mean negative log-likelihood on validation, T = 1
    nll_after: float              # ... with the fitted T
    ece_before: float             # expected calibration error (15 bins), T = 1
    ece_after: float
    unsure_share: float           # share of validation digits flagged
    errors_flagged: float         # share of validation errors among the flagged
    # where the features lie against the training digits' (typicality.safetensors); None: a
    # run calibrated before it was fitted, or an ensemble (its members' own fits vote)
    typicality: Typicality | None = field(default=None, compare=False, repr=False)
    # the weights it was fitted for (``weights_fingerprint``), so that the files beside a
    # model cannot pass for another's; None: an ensemble, or a calibration older than it
    model_sha256: str | None = field(default=None, compare=False)
    # typicality.safetensors as it was fitted with it: a calibration whose fit is missing or
    # another's is refused (without, the "unlike the digits" check went off in silence);
    # None: no fit, or a calibration older than it
    typicality_sha256: str | None = field(default=None, compare=False)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, 10) logits -> calibrated probabilities, float32."""
        return softmax(np.asarray(logits, dtype=np.float64) / self.temperature)

    def far(self, features: np.ndarray | None) -> np.ndarray | None:
        """(N,) bool: which features lie far from every digit; None without a fit or
        features (a run calibrated before typicality, a model or export without them)."""
        if self.typicality is None or features is None:
            return None
        return self.typicality.far(features)

    def reasons(self, probs: np.ndarray, far: np.ndarray | None = None
                ) -> list[str | None]:
        """Why each answer is unsure (NOT_CONFIDENT, UNLIKE_DIGITS), or None where it is not;
        ``far``: which pictures are unlike the digits learnt (``far``; an ensemble's members'
        vote), None where nobody can say."""
        low = np.asarray(probs).max(axis=1) < self.unsure_below
        if far is None:
            far = np.zeros(len(low), dtype=bool)
        return [NOT_CONFIDENT if lo else UNLIKE_DIGITS if fa else None
                for lo, fa in zip(low, far, strict=True)]

    def to_dict(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {f.name: getattr(self, f.name) for f in _FIELDS}
        for key in _DIGESTS:
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def check_fitted_for(self, fingerprint: str | None, what: str, fix: str) -> None:
        """UserError where this calibration was fitted for other weights than ``fingerprint``
        (``weights_fingerprint``; None, or a calibration that does not say: not checked)."""
        if None not in (fingerprint, self.model_sha256) and fingerprint != self.model_sha256:
            raise UserError(f"the calibration beside {what} was fitted for another model's "
                            f"weights; {fix}")

    @classmethod
    def from_dict(cls, data: dict[str, object], path: Path) -> Calibration:
        try:
            cal = cls(**{f.name: _number(data[f.name], f.name) for f in _FIELDS})
            for key in _DIGESTS:
                sha = data.get(key)
                if sha is not None and not isinstance(sha, str):
                    raise ValueError(f"{key} {sha!r} is not a hex digest")
                cal = replace(cal, **{key: sha})
            if not (math.isfinite(cal.temperature) and cal.temperature > 0):
                raise ValueError(f"temperature {cal.temperature} is not a number > 0")
            if not 0.0 <= cal.unsure_below <= 1.0:
                raise ValueError(f"unsure_below {cal.unsure_below} is not a probability")
            return cal
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, KeyError):
                exc = ValueError(f"it has no {exc.args[0]!r}")
            raise UserError(f"{path} is not a readable calibration file ({exc}); fit it "
                            "again with `mnistlab calibrate RUN` (a saved ensemble: save it "
                            "again with `mnistlab evaluate --ensemble ... --save DIR`)") from None


# calibration.json's digests, optional: files older than them lack them
_DIGESTS = ("model_sha256", "typicality_sha256")
# ... and its numbers
_FIELDS = [f for f in fields(Calibration) if f.name not in ("typicality", *_DIGESTS)]


def _number(value: object, name: str) -> float | int:
    """A field of calibration.json as written: a JSON number ("1.2" and true were taken)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} {value!r} is not a number")
    if name == "validation_images":
        if not isinstance(value, int):
            raise ValueError(f"{name} {value!r} is not a whole number")
        return value
    return float(value)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float((log_norm - z[np.arange(len(labels)), labels]).mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising the validation NLL (a 1-D convex problem in log T)."""
    # imported here: 0.55 s, which every `predict` (that never fits) used to pay at start
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(lambda log_t: nll(logits, labels, math.exp(log_t)),
                             bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                             options={"xatol": 1e-4})
    return float(math.exp(result.x))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray,
                               bins: int = ECE_BINS) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by count."""
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(right[in_bin].mean() - conf[in_bin].mean())
    return float(total)


def calibrate(model: nn.Module, x_val: torch.Tensor, y_val: torch.Tensor, *,
              precision: str = "fp32", unsure_share: float = UNSURE_SHARE,
              x_fit: torch.Tensor | None = None, y_fit: torch.Tensor | None = None,
              on_progress: Progress | None = None) -> Calibration:
    """Fit the temperature and the unsure threshold on the validation split; with training
    images (``x_fit``, ``y_fit``), where their features lie too (``typicality``; up to
    FIT_IMAGES of them). ``on_progress``: called with each batch's image count."""
    features, logits = features_and_logits(model, x_val, precision=precision,
                                           on_progress=on_progress)
    calibration = replace(
        calibration_from_logits(logits, y_val.numpy(), unsure_share=unsure_share),
        model_sha256=weights_fingerprint(model))
    if x_fit is None or y_fit is None or features is None:
        return calibration
    typicality = fit_typicality(model, x_fit, y_fit, features, precision=precision,
                                on_progress=on_progress)
    return replace(calibration, typicality=typicality)


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of a model's floating-point weights and buffers, by name, on the CPU in their
    plain layout: the same for the model in memory at the end of training, loaded from its run
    folder, or exported (ONNX metadata); integer counters (BatchNorm's) are left out."""
    return tensors_sha256({name: tensor.detach().to("cpu", torch.float32)
                           for name, tensor in model.state_dict().items()
                           if tensor.is_floating_point()})


def calibration_from_logits(logits: np.ndarray, labels: np.ndarray, *,
                            unsure_share: float = UNSURE_SHARE) -> Calibration:
    """The temperature and the unsure threshold fitted on validation ``logits`` (N, 10) (a
    model's, or an ensemble's log averaged probabilities) and their ``labels``."""
    temperature = fit_temperature(logits, labels)
    before, after = softmax(logits.astype(np.float64)), softmax(logits / temperature)
    conf = after.max(axis=1)
    threshold = float(np.quantile(conf, unsure_share))
    flagged = conf < threshold
    wrong = after.argmax(axis=1) != labels
    return Calibration(
        temperature=round(temperature, 5), unsure_below=threshold,
        validation_images=len(labels), validation_accuracy=float((~wrong).mean()),
        nll_before=nll(logits, labels), nll_after=nll(logits, labels, temperature),
        ece_before=expected_calibration_error(before, labels),
        ece_after=expected_calibration_error(after, labels),
        unsure_share=float(flagged.mean()),
        errors_flagged=float(flagged[wrong].mean()) if wrong.any() else 0.0)


def save_calibration(run_dir: str | os.PathLike[str], calibration: Calibration) -> None:
    """calibration.json, and typicality.safetensors beside it (an earlier one is removed when
    this calibration has none), each written atomically."""
    sha = save_typicality(run_dir, calibration.typicality)
    atomic.write_json(Path(run_dir) / CALIBRATION,
                      replace(calibration, typicality_sha256=sha).to_dict())


def load_calibration(run_dir: str | os.PathLike[str]) -> Calibration | None:
    """The run's calibration, or None for a run trained without a validation split."""
    path = Path(run_dir) / CALIBRATION
    if not path.is_file():
        return None
    calibration = Calibration.from_dict(read_json_object(path, "calibration"), path)
    expected = calibration.typicality_sha256
    found = typicality_sha256(run_dir) if expected is not None else None
    if expected is not None and found != expected:
        found = "is missing" if found is None else "is another fit"
        raise UserError(f"{Path(run_dir) / TYPICALITY}, which {path.name} was fitted with, "
                        f"{found}: without it nothing would be flagged 'unlike the digits it "
                        "learnt'; fit both again with `mnistlab calibrate RUN`")
    return replace(calibration, typicality=load_typicality(run_dir))
