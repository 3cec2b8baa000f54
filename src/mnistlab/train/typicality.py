"""How far a picture lies from the digits a model learnt: the second reason to be unsure.

    typicality = fit_typicality(model, x_fit, y_fit, val_features, precision="bf16")
    typicality.far(features)      # (N,) bool: farther from every digit than 99% of validation

A low top probability (``calibration``) catches most of a model's mistakes on digits, but a
letter or a scribble often gets a confident answer: the softmax only says which digit is
nearest, not how near. What the model's last layer reads (its *features*) says more: the
features of each digit class cluster, and a picture that is no digit lands away from all ten.
Here that distance is the Mahalanobis one (Lee et al., 2018): a Gaussian per class with one
shared covariance, fitted on training images' features (``FIT_IMAGES`` of them); a picture is
*far* when its distance to the nearest class exceeds that of ``FAR_SHARE`` of the held-out
validation digits. The covariance is shrunk a little towards its mean variance
(``SHRINKAGE``) so that its inverse stays stable in the feature space's thin directions.

The run folder keeps the fit in ``typicality.safetensors`` (the class means and the inverse
covariance as tensors, the threshold in its metadata), beside ``calibration.json``.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save as save_tensors
from torch import nn

from mnistlab import atomic
from mnistlab.errors import UserError
from mnistlab.train.device import autocast

TYPICALITY = "typicality.safetensors"
FAR_SHARE = 0.01         # the share of validation digits that count as far
FIT_IMAGES = 20_000      # training images whose features the classes are fitted on
SHRINKAGE = 0.01         # covariance -> (1 - s) C + s * mean variance * I
_META = ("far_above", "far_share", "fit_images", "shrinkage")
Progress = Callable[[int], None]      # called with each batch's image count


@dataclass(frozen=True)
class Typicality:
    means: np.ndarray         # (classes, D) float64: each class's mean feature
    precision: np.ndarray     # (D, D) float64: the inverse of the shared covariance
    far_above: float          # a squared distance above this is far
    far_share: float          # share of validation digits that are far (about FAR_SHARE)
    fit_images: int
    shrinkage: float

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N,) squared Mahalanobis distance to the nearest class."""
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[1] != self.means.shape[1]:
            # the folder's typicality.safetensors was fitted for another model
            raise UserError(f"the model gives features of shape {f.shape[1:]}, but "
                            f"{TYPICALITY} beside it was fitted on {self.means.shape[1]}: it "
                            "belongs to another model; run `mnistlab calibrate` on the run")
        # |f - m|^2_P = f P f - 2 f P m + m P m, for all classes at once
        fp = f @ self.precision
        own = np.einsum("nd,nd->n", fp, f)[:, None]
        cross = fp @ self.means.T
        return np.maximum(own - 2 * cross + self._class_terms[None, :], 0.0).min(axis=1)

    @functools.cached_property
    def _class_terms(self) -> np.ndarray:
        """m P m for each class mean: once, not per picture (10 x D x D multiply-adds)."""
        return ((self.means @ self.precision) * self.means).sum(axis=1)

    def far(self, features: np.ndarray) -> np.ndarray:
        return self.judge(features)[1]

    def judge(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, D) features -> (each one's squared distance over the far threshold, which are
        far), from one computation of the distance."""
        squared = self.distance(features)
        return squared / self.far_above, squared > self.far_above


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Linear] | None:
    """(what comes before the last layer, the last layer) of a Sequential that ends in a
    Linear layer (every mnistlab model); None for any other model. Features computed through
    the two halves need no hook on the shared model, so concurrent readers stay apart."""
    if (isinstance(model, nn.Sequential) and len(model) > 1
            and isinstance(model[-1], nn.Linear)):
        return model[:-1], model[-1]
    return None


def features_and_logits(model: nn.Module, x: torch.Tensor, *, precision: str = "fp32",
                        batch_size: int = 1000, on_progress: Progress | None = None
                        ) -> tuple[np.ndarray | None, np.ndarray]:
    """What the last layer reads (N, D) and the logits (N, classes), both float32, for x
    (N, 1, 28, 28), in batches, wherever the model lives; the features are None for a model
    ``split_head`` refuses (its logits are the whole model's)."""
    halves = split_head(model)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    features, logits = [], []
    try:
        with torch.inference_mode(), autocast(precision, device.type):
            for i in range(0, len(x), batch_size):
                batch = x[i:i + batch_size].to(device)
                if halves is None:
                    logits.append(model(batch).float().cpu())
                else:
                    f = halves[0](batch).flatten(1)
                    logits.append(halves[1](f).float().cpu())
                    features.append(f.float().cpu())
                if on_progress is not None:
                    on_progress(len(batch))
    finally:
        model.train(was_training)
    return (torch.cat(features).numpy() if features else None), torch.cat(logits).numpy()


def fit(features: np.ndarray, labels: np.ndarray, val_features: np.ndarray, *,
        far_share: float = FAR_SHARE, shrinkage: float = SHRINKAGE) -> Typicality | None:
    """Class means and shared covariance from ``features`` (N, D) and ``labels`` (N,); the
    threshold from ``val_features`` (M, D), images the fit has not seen. None where the
    features cannot be fitted (a diverged model's NaNs, a dead one's constant features): the
    run then flags by its top probability alone, as before."""
    f = np.asarray(features, dtype=np.float64)
    classes = np.unique(labels)
    means = np.stack([f[labels == k].mean(axis=0) for k in classes])
    centred = f - means[np.searchsorted(classes, labels)]
    cov = centred.T @ centred / len(f)
    d = cov.shape[0]
    spread = float(np.trace(cov)) / d
    if not (np.isfinite(cov).all() and spread > 0):
        return None
    precision = np.linalg.inv((1 - shrinkage) * cov + shrinkage * spread * np.eye(d))
    partial = Typicality(means, precision, np.inf, 0.0, len(f), shrinkage)
    val = partial.distance(val_features)
    above = float(np.quantile(val, 1.0 - far_share))
    return Typicality(means, precision, above, float(np.mean(val > above)), len(f), shrinkage)


def fit_typicality(model: nn.Module, x_fit: torch.Tensor, y_fit: torch.Tensor,
                   val_features: np.ndarray, *, precision: str = "fp32",
                   on_progress: Progress | None = None) -> Typicality | None:
    """The fit for ``model`` on up to FIT_IMAGES of ``x_fit`` (the first; training images),
    its threshold on the validation images' features (``features_and_logits``); None as
    ``fit`` says."""
    count = min(FIT_IMAGES, len(x_fit))
    train, _ = features_and_logits(model, x_fit[:count], precision=precision,
                                   on_progress=on_progress)
    return None if train is None else fit(train, y_fit[:count].cpu().numpy(), val_features)


def save_typicality(run_dir: str | os.PathLike[str], typicality: Typicality | None
                    ) -> str | None:
    """Write the fit beside calibration.json, or remove an earlier one (None): a folder never
    keeps a fit that another model's calibration does not go with. Returns the SHA-256 of the
    file written (None: none), which calibration.json records."""
    path = Path(run_dir) / TYPICALITY
    if typicality is None:
        path.unlink(missing_ok=True)
        return None
    tensors = {"means": torch.from_numpy(typicality.means.astype(np.float32)),
               "precision": torch.from_numpy(typicality.precision.astype(np.float32))}
    metadata = {k: repr(getattr(typicality, k)) for k in _META}
    data = save_tensors(tensors, metadata)
    atomic.write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def typicality_sha256(run_dir: str | os.PathLike[str]) -> str | None:
    """The SHA-256 of the run's typicality.safetensors, or None where it has none."""
    path = Path(run_dir) / TYPICALITY
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def load_typicality(run_dir: str | os.PathLike[str]) -> Typicality | None:
    """The run's fit, or None where there is none (a run calibrated before it existed)."""
    from mnistlab.runs.weights import read_safetensors

    path = Path(run_dir) / TYPICALITY
    if not path.is_file():
        return None
    tensors, metadata = read_safetensors(path, "fit it again with `mnistlab calibrate RUN`")
    try:
        means = tensors["means"].double().numpy()
        precision = tensors["precision"].double().numpy()
        values = {k: float(metadata[k]) for k in _META}
        if precision.shape != (means.shape[1], means.shape[1]):
            raise ValueError(f"precision {tuple(precision.shape)} for means "
                             f"{tuple(means.shape)}")
    except (KeyError, ValueError) as exc:
        raise UserError(f"{path} is not a readable typicality file ({exc}); re-run "
                        "`mnistlab calibrate` on the run") from None
    return Typicality(means, precision, values["far_above"], values["far_share"],
                      int(values["fit_images"]), values["shrinkage"])
