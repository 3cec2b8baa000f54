"""mnistlab from Python: train a model, open a run, evaluate it, predict digits, plot it.

    >>> import mnistlab.api as lab
    >>> run = lab.train("cnn", epochs=1, limit=2000)      # doctest: +SKIP
    cnn: 438,026 parameters, 2,000 training images, precision fp32, 2 thread(s)
    Epoch 1/1  32/32  1s  29ms/step  accuracy: 0.7645  loss: 0.7631  val_accuracy: ...
    >>> run.metrics.test_accuracy                          # doctest: +SKIP
    0.9093
    >>> run.predict("my-seven.png").digit                  # doctest: +SKIP
    7
    >>> run = lab.load_run("runs/cnn-seed-s0-20260101-120000")   # doctest: +SKIP

``train`` is ``mnistlab train`` as a call (the same presets, settings and run folder);
``Run`` is one run folder with what one wants next: its ``config``, ``history`` and
``metrics``, ``evaluate()``, ``predict()`` (one digit), ``read()`` (a digit or a written
number), ``probabilities()`` and ``plot()``.

This module imports torch; ``import mnistlab`` alone does not (``mnistlab --help`` stays
instant), so import this one by name: ``import mnistlab.api as lab`` or
``from mnistlab.api import Run, train, load_run``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from PIL import Image
from torch import nn

from mnistlab import checks, runs
from mnistlab.errors import UserError
from mnistlab.folders import new_run_folder, training_in
from mnistlab.inference.predict import (
    NumberPrediction,
    Prediction,
    TorchPredictor,
    predict_image,
    predict_preprocessed,
    read_picture,
    run_predictor,
)
from mnistlab.inference.preprocess import Preprocessed, preprocess_gray
from mnistlab.report.plots import learning_curves
from mnistlab.train.callbacks import KerasLogger, eval_line
from mnistlab.train.config import TrainConfig, validate, validate_sizes
from mnistlab.train.data import load_tensors
from mnistlab.train.evaluation import LoadedRun, evaluate_run
from mnistlab.train.evaluation import load_run as _load_loaded_run
from mnistlab.train.fit import Callback, fit
from mnistlab.train.phases import predict_proba
from mnistlab.train.presets import preset_overrides

__all__ = ["Evaluation", "NumberPrediction", "Prediction", "Run", "load_run", "train"]

ImageLike = str | os.PathLike[str] | bytes | Image.Image | np.ndarray


@dataclass(frozen=True)
class Evaluation:
    """Test loss and accuracy of a run's model; ``str()`` is the seed's Keras line.

    >>> e = Evaluation(test_accuracy=0.9855, test_loss=0.0452, test_images=10000, steps=313,
    ...                seconds=1.2)
    >>> print(e)
    313/313  1s  4ms/step  accuracy: 0.9855  loss: 0.0452
    """

    test_accuracy: float
    test_loss: float          # mean cross-entropy, nats
    test_images: int
    steps: int                # evaluation batches
    seconds: float

    def __str__(self) -> str:
        return eval_line({"steps": self.steps, "seconds": self.seconds,
                          "test_accuracy": self.test_accuracy, "test_loss": self.test_loss})


class Run:
    """One run folder, as ``mnistlab train`` (or ``train()`` here, or ``mnistlab loop``) left it.

    >>> run = Run.load("runs/cnn-seed-s0-20260101-120000")   # doctest: +SKIP
    >>> run.metrics.test_accuracy, len(run.history)         # doctest: +SKIP
    (0.9855, 5)
    >>> print(run.evaluate())                               # doctest: +SKIP
    313/313  2s  5ms/step  accuracy: 0.9855  loss: 0.0452

    The files are read when first asked for and kept: ``config`` (``RunConfig``), ``history``
    (``HistoryRow`` per epoch), ``metrics`` (``RunMetrics``), ``model`` (the ``nn.Module``, in
    eval mode).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path: Path = runs.resolve_run(path)
        self._config: runs.RunConfig | None = None
        self._history: list[runs.HistoryRow] | None = None
        self._metrics: runs.RunMetrics | None = None
        self._loaded: LoadedRun | None = None
        self._predictor: TorchPredictor | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Run:
        """The run at ``path`` (a folder, or a name under the runs folder); ``UserError`` if it
        is not a run."""
        return cls(path)

    def __repr__(self) -> str:
        acc = self.metrics.test_accuracy if (self.path / runs.METRICS).is_file() else None
        shown = f", test_accuracy={acc:.4f}" if acc is not None else ", unfinished"
        return f"Run({str(self.path)!r}, model={self.config.model!r}{shown})"

    # -- the files ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The folder's name, e.g. ``cnn-seed-s0-20260101-120000``."""
        return self.path.name

    @property
    def config(self) -> runs.RunConfig:
        """config.json: model, precision, threads, the training settings (``config.train``, a
        ``TrainConfig``), versions and CPU."""
        if self._config is None:
            self._config = runs.read_config(self.path)
        return self._config

    @property
    def history(self) -> list[runs.HistoryRow]:
        """One ``HistoryRow`` per finished epoch: train/test loss and accuracy, seconds, lr."""
        if self._history is None:
            self._history = runs.read_history(self.path)
        return self._history

    @property
    def metrics(self) -> runs.RunMetrics:
        """metrics.json: the final figures (test_accuracy, test_loss, train_seconds, ...)."""
        if self._metrics is None:
            self._metrics = runs.read_metrics(self.path)
        return self._metrics

    @property
    def model(self) -> nn.Module:
        """The trained model (eval mode, in the precision and memory layout it trained in)."""
        return self._loaded_run().model

    def _loaded_run(self) -> LoadedRun:
        if self._loaded is None:
            self._loaded = _load_loaded_run(self.path)
        return self._loaded

    # -- using it ----------------------------------------------------------------------------

    def evaluate(self, *, test_limit: int = 0, batch_size: int = 32) -> Evaluation:
        """Test loss and accuracy on the run's dataset's test set (the first ``test_limit``
        images; 0: all), in batches of ``batch_size`` (Keras's default, 32)."""
        checks.non_negative_int("test_limit", test_limit)
        checks.positive_int("batch_size", batch_size)
        result = evaluate_run(self._loaded_run(), test_limit=test_limit, batch_size=batch_size)
        return Evaluation(test_accuracy=result.test_accuracy, test_loss=result.test_loss,
                          test_images=result.test_images, steps=result.steps,
                          seconds=result.seconds)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, 10) of a batch: uint8 images (N, 28, 28) as MNIST stores them
        (``load_dataset``), or floats in [0, 1]; no preprocessing (they are MNIST's already).
        The model's own softmax, in its training precision, as ``evaluate`` scores it;
        ``predict`` and ``read`` apply the run's calibration where it has one."""
        loaded = self._loaded_run()
        return predict_proba(loaded.model, _mnist_batch(images), precision=loaded.precision)

    def predict(self, image: ImageLike, *, top: int = 3) -> Prediction:
        """The digit in one picture: a file path, PNG/JPEG bytes, a PIL image, or an array.

        Pictures (paths, bytes, PIL images, arrays of any other size) go through MNIST's
        preprocessing first (``mnistlab.inference.preprocess``); a (28, 28) array is taken as
        an MNIST image already (uint8 0-255 or floats in [0, 1], white ink on black).
        ``Prediction.digit``, ``.probability``, ``.probabilities`` (ten), ``.top``.

        >>> images, labels = load_dataset("mnist", "test")   # doctest: +SKIP
        >>> run.predict(images[0]).digit, int(labels[0])      # doctest: +SKIP
        (7, 7)
        """
        checks.in_range("top", top, 1, 11, whole_only=True)
        image = _image_like(image)
        predictor = self._torch_predictor()
        if isinstance(image, np.ndarray) and _gray(image).shape == (28, 28):
            return predict_preprocessed(predictor, _array_input(image), name="array", top=top)
        if isinstance(image, Image.Image | np.ndarray):
            # as a file of it is read: a written number is refused here too, not squeezed
            # into one 28x28 and answered as one digit
            return predict_image(predictor, _png(image), top=top,
                                 name="array" if isinstance(image, np.ndarray) else "image")
        return predict_image(predictor, image, top=top)

    def read(self, image: ImageLike, *, top: int = 3) -> Prediction | NumberPrediction:
        """What a picture says, as `mnistlab predict` reads it: one digit (a ``Prediction``,
        as ``predict`` gives) or a written number (a ``NumberPrediction``: ``.number`` such as
        "34" or "06.12", ``.digits`` each with its ``.bbox``, ``.marks``). A (28, 28) array is
        one MNIST digit, as in ``predict``.

        >>> run.read("house-number.jpg").number                # doctest: +SKIP
        '34'
        """
        checks.in_range("top", top, 1, 11, whole_only=True)
        image = _image_like(image)
        if isinstance(image, np.ndarray) and _gray(image).shape == (28, 28):
            return self.predict(image, top=top)
        if isinstance(image, Image.Image | np.ndarray):
            image = _png(image)
        name = str(image) if isinstance(image, str | os.PathLike) else "image"
        return read_picture(self._torch_predictor(), image, top=top, name=name)

    def _torch_predictor(self) -> TorchPredictor:
        if self._predictor is None:
            # What `mnistlab predict` uses: the weights in fp32, whatever the run trained in,
            # and the run's calibration (its temperature and "unsure" flags) where it has one,
            # refused where it was fitted for other weights.
            self._predictor = run_predictor(self.path)
        return self._predictor

    def plot(self) -> Figure:
        """Learning curves: accuracy and loss per epoch, train (solid, dots) and test (dashed,
        hollow squares), as a matplotlib ``Figure`` (shown by a notebook;
        ``fig.savefig("curves.png")`` to keep)."""
        curves = {self.config.model: _curves(self.history)}
        return learning_curves(curves)


def load_run(path: str | os.PathLike[str]) -> Run:
    """The run at ``path`` (a folder, or a name under the runs folder): ``Run.load(path)``."""
    return Run.load(path)


def train(model: str = "cnn", preset: str | None = "seed", *,
          out: str | os.PathLike[str] | None = None, verbose: bool = True,
          callbacks: Sequence[Callback] = (), **settings: Any) -> Run:
    """Train ``model`` as ``mnistlab train`` does and return the finished ``Run``.

    The settings are built in three layers, as on the command line: ``TrainConfig``'s
    defaults, then the ``preset`` (``"seed"``: what the seed report ran; None: none), then
    ``settings`` (any ``TrainConfig`` field: ``epochs=1``, ``limit=5000``, ``seed=3``,
    ``threads=1``, ...). The run folder is ``out`` (created; it must not hold a run yet) or a
    new ``<model>-<preset>-s<seed>-<time>`` under the runs folder (``$MNISTLAB_RUNS_DIR``, else
    ``./runs``). ``verbose`` prints the seed's Keras-style lines, one per epoch:

        Epoch 1/5  938/938  3s  3ms/step  accuracy: 0.9212  loss: 0.2629  val_accuracy: ...

    ``callbacks`` are more ``mnistlab.train.fit.Callback``s (a live plot, a logger).

    >>> run = train("fc", epochs=1, limit=500, verbose=False)   # doctest: +SKIP
    >>> run.metrics.epochs                                      # doctest: +SKIP
    1
    """
    values: dict[str, Any] = {"model": model}
    if preset is not None:
        values.update(preset_overrides(preset, model), preset=preset)
    values.update(settings)
    config = TrainConfig.from_dict(values)
    # Everything that can be refused is refused before a folder is made.
    validate(config)
    x_train, _, x_test, _ = load_tensors(config)
    validate_sizes(config, len(x_train), len(x_test))
    # as `mnistlab train --out` makes it ready: a file, an unwritable place or a folder that
    # holds files is one UserError, and no other training may write into it meanwhile
    folder = None if out is None else Path(out).expanduser()
    created = folder is None or not folder.exists()
    run_dir = new_run_folder(folder, f"{config.model}-{config.preset or 'custom'}-s{config.seed}",
                             flag="out=")
    shown = [KerasLogger()] if verbose else []
    with training_in(run_dir, created=created):       # a diverged start leaves nothing
        fit(config, run_dir, callbacks=[*shown, *callbacks])
    return Run(run_dir)


def _image_like(image: Any) -> ImageLike:
    """``image`` as one of the kinds ``predict`` and ``read`` take; UserError otherwise."""
    if isinstance(image, bytearray | memoryview):
        return bytes(image)
    if isinstance(image, str | os.PathLike | bytes | np.ndarray):
        return image
    if isinstance(image, Image.Image):
        if image.width < 1 or image.height < 1:
            raise UserError(f"the image is {image.width}x{image.height} pixels: nothing to read")
        return image
    raise UserError(f"expected a file path, PNG/JPEG bytes, a PIL image or an array, got "
                    f"{type(image).__name__}")


def _mnist_batch(images: Any) -> np.ndarray:
    """A batch (N, 28, 28) or (N, 1, 28, 28) of MNIST images: uint8, or floats in [0, 1]."""
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) == 0:
        raise UserError(f"expected a batch of 28x28 images (N, 28, 28), got an array of shape "
                        f"{x.shape}; one image is images[None], or use predict()")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise UserError(f"expected uint8 or float pixels, got {x.dtype}")
    if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
        raise UserError("expected pixel values in [0, 1] (floats) or 0-255 (uint8); scale "
                        "0-255 floats by 1/255 or give them as uint8")
    return x.astype(np.float32)


def _gray(image: np.ndarray) -> np.ndarray:
    """One grayscale image (H, W) as floats in [0, 1]; UserError for anything else."""
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2 or x.size == 0:
        raise UserError(f"expected one grayscale image (H, W), got an array of shape {x.shape}")
    scaled = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if not np.isfinite(scaled).all() or scaled.min() < 0.0 or scaled.max() > 1.0:
        raise UserError("expected pixel values in [0, 1] (floats) or 0-255 (uint8)")
    return scaled


def _array_input(image: np.ndarray) -> Preprocessed:
    """An array as the model's input: (28, 28) as MNIST's own, anything else as a picture."""
    scaled = _gray(image)
    if scaled.shape == (28, 28):
        return Preprocessed(image=scaled, inverted=False, bbox=(0, 0, 28, 28))
    return preprocess_gray(scaled)


def _png(image: Image.Image | np.ndarray) -> bytes:
    """A PIL image, or an array as ``_gray`` takes it, as PNG bytes (what read_picture
    decodes, with its checks and its size limits)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.round(_gray(image) * 255).astype(np.uint8))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _curves(history: list[runs.HistoryRow]) -> dict[str, np.ndarray]:
    """history -> learning_curves' arrays (1 seed, epochs); a metric some epoch lacks (not
    evaluated every epoch; loop runs measure no accuracy) is left out."""
    out: dict[str, np.ndarray] = {}
    for key in ("train_accuracy", "test_accuracy", "train_loss", "test_loss"):
        values = [getattr(row, key) for row in history]
        if values and all(v is not None for v in values):
            out[key] = np.asarray([values], dtype=float)
    return out
