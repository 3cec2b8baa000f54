"""``mnistlab scratch`` as a library call: the NumPy FC network trained on MNIST, evaluated.

    result = train_scratch(ScratchConfig())   # the seed FC: lr 0.1, batch 64, 5 epochs
    result.metrics.test_accuracy              # about 0.968 (0.962-0.972 over 12 seeds)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from mnistlab import checks
from mnistlab.data import load_dataset
from mnistlab.data.specs import DATASETS
from mnistlab.errors import UserError
from mnistlab.mechanics import numpy_net
from mnistlab.mechanics.twin import TorchTwin
from mnistlab.runs import HistoryRow, JSONObject

# Beyond these the run is a typo, not an experiment: the seed trains 5 epochs of 128 units.
MAX_EPOCHS = 1000
MAX_HIDDEN = 100_000


@dataclass
class ScratchConfig:
    """The NumPy FC network's run; each field's help and bounds are in its metadata
    (``mnistlab.checks``): ``validate`` checks them, ``mnistlab scratch``'s flags come from them.
    """

    epochs: int = field(default=5, metadata={"help": "passes over the training images",
                                             "min": 1, "max": MAX_EPOCHS})
    # the seed FC's (see DESIGN.md)
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate", "above": 0})
    # 938 steps per epoch, the last one short, as in Keras; at most the training images
    batch_size: int = field(default=64, metadata={
        "help": "images per step", "min": 1, "max_of": "the training images"})
    seed: int = field(default=0, metadata={"help": "Glorot init and the order of each epoch",
                                           "min": 0, "below": checks.SEED_BELOW})
    hidden: int = field(default=128, metadata={"help": "hidden ReLU units",
                                               "min": 1, "max": MAX_HIDDEN})
    # train on the first N training images; 0: all 60,000
    limit: int = field(default=0, metadata={
        "help": "train on the first N training images only", "min": 1, "unset": 0,
        "max_of": "the training images",
        "unset_means": "all", "metavar": "N"})
    # NumPy's BLAS threads. One is fastest here: the matrices are small (64 x 784 x 128), and on
    # this shared 2-core machine two BLAS threads measured 20x slower under load.
    threads: int = field(default=1, metadata={
        "help": "NumPy BLAS threads (1: fastest for these small matrices)",
        "min": 1, "cores": True})
    dataset: str = field(default="mnist", metadata={"help": "which dataset",
                                                    "choices": tuple(DATASETS)})
    # Also step the torch fc model from the same init on the same batches (mechanics.twin).
    twin: bool = field(default=False, metadata={
        "help": "also train the torch fc model from the same init on the same batches "
                "(autograd + torch.optim.SGD) and compare: it tracks the NumPy net"})

    def validate(self, label: Callable[[str], str] = str) -> None:
        """UserError for a setting that cannot run; ``label`` names settings in the message."""
        checks.check_fields(self, label)

    def validate_sizes(self, train_images: int, label: Callable[[str], str] = str) -> None:
        """The bounds that need the data: ``train_images`` is the full training split."""
        checks.training_sizes(label, limit=self.limit, batch_size=self.batch_size,
                              train_images=train_images, dataset=self.dataset)


@dataclass
class ScratchMetrics:
    """The final figures of ``mnistlab scratch`` (what ``--json`` prints)."""

    config: ScratchConfig
    test_accuracy: float
    test_loss: float
    train_accuracy: float
    train_loss: float
    train_seconds: float                   # training phases only
    wall_seconds: float                    # including the per-epoch test pass
    train_images: int
    test_images: int
    twin_test_accuracy: float | None = None    # with config.twin (see mechanics.twin)
    twin_max_weight_diff: float | None = None
    model: str = "numpy-fc"

    def to_dict(self) -> JSONObject:
        out: JSONObject = {"model": self.model, **asdict(self.config),
                           "test_accuracy": self.test_accuracy, "test_loss": self.test_loss,
                           "train_accuracy": self.train_accuracy, "train_loss": self.train_loss,
                           "train_seconds": self.train_seconds, "wall_seconds": self.wall_seconds,
                           "train_images": self.train_images, "test_images": self.test_images}
        if self.config.twin:
            out |= {"twin_test_accuracy": self.twin_test_accuracy,
                    "twin_max_weight_diff": self.twin_max_weight_diff}
        return out


@dataclass
class ScratchResult:
    params: numpy_net.Params
    history: list[HistoryRow]
    metrics: ScratchMetrics
    # with config.twin: the torch twin's test accuracy after each epoch
    twin_test_accuracy: list[float] = field(default_factory=list)


OnEpoch = Callable[[HistoryRow, float | None], None]   # (the epoch, the twin's accuracy or None)


def load_flat(dataset: str, split: str, limit: int = 0,
              dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(x (N, 784) in [0, 1], labels int64 (N,)) from the verified cache."""
    images, labels = load_dataset(dataset, split)
    if limit:
        images, labels = images[:limit], labels[:limit]
    return numpy_net.flatten_images(images, dtype), labels.astype(np.int64)


def train_scratch(config: ScratchConfig, *, on_epoch: OnEpoch | None = None,
                  on_batch: Callable[[np.ndarray], None] | None = None) -> ScratchResult:
    """Train ``numpy_net`` (evaluating the test set after each epoch) and return the numbers.

    With ``config.twin``, the torch fc model steps beside it (see ``mechanics.twin``): its test
    accuracy after each epoch and its largest weight difference at the end are recorded too.
    """
    config.validate()
    x, y = load_flat(config.dataset, "train", config.limit)
    x_test, y_test = load_flat(config.dataset, "test")
    twin = None
    if config.twin:
        # fit() draws its init first from a generator seeded the same way: the same weights.
        init = numpy_net.init_params(np.random.default_rng(config.seed), inputs=x.shape[1],
                                     hidden=config.hidden, dtype=x.dtype.type)
        twin = TorchTwin(init, x, y, config.lr)
    history: list[HistoryRow] = []
    twin_accuracy: list[float] = []

    def epoch_done(raw: dict[str, float]) -> None:
        losses = [raw["train_loss"], raw.get("test_loss", 0.0)]
        if not all(math.isfinite(v) for v in losses):
            raise UserError(f"the loss became {raw['train_loss']} in epoch {int(raw['epoch'])}"
                            f"/{config.epochs} (learning rate {config.lr:g} may be too high)")
        row = HistoryRow(epoch=int(raw["epoch"]), steps=int(raw["steps"]),
                         train_loss=raw["train_loss"], train_accuracy=raw["train_accuracy"],
                         seconds=raw["seconds"], test_loss=raw.get("test_loss"),
                         test_accuracy=raw.get("test_accuracy"))
        history.append(row)
        if twin is not None:
            twin_accuracy.append(twin.accuracy(x_test, y_test))
        if on_epoch is not None:
            on_epoch(row, twin_accuracy[-1] if twin is not None else None)

    # a diverging run overflows to inf and NaN: said once at the epoch's end, not as numpy's
    # multi-line warnings
    with threadpool_limits(limits=config.threads, user_api="blas"), \
            np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        start = time.perf_counter()
        params, _ = numpy_net.fit(
            x, y, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
            seed=config.seed, hidden=config.hidden, validation=(x_test, y_test),
            on_epoch=epoch_done, on_batch=_also(twin.step, on_batch) if twin else on_batch)
        wall = time.perf_counter() - start
    last = history[-1]
    assert last.train_accuracy is not None and last.test_accuracy is not None
    assert last.test_loss is not None
    metrics = ScratchMetrics(
        config=config,
        test_accuracy=last.test_accuracy, test_loss=last.test_loss,
        train_accuracy=last.train_accuracy, train_loss=last.train_loss,
        train_seconds=round(sum(r.seconds or 0.0 for r in history), 3),
        wall_seconds=round(wall, 3),
        train_images=len(x), test_images=len(x_test),
        twin_test_accuracy=twin_accuracy[-1] if twin is not None else None,
        twin_max_weight_diff=twin.max_weight_diff(params) if twin is not None else None)
    return ScratchResult(params=params, history=history, metrics=metrics,
                         twin_test_accuracy=twin_accuracy)


def _also(first: Callable[[np.ndarray], None], then: Callable[[np.ndarray], None] | None,
          ) -> Callable[[np.ndarray], None]:
    """A callback that runs ``first`` and then ``then`` (when given) on the same argument."""
    def both(arg: np.ndarray) -> None:
        first(arg)
        if then is not None:
            then(arg)
    return both
