"""What decides a training run: ``TrainConfig`` (written into config.json as ``train``), its
allowed values and its validation.

Each field's help, allowed values and bounds live in its metadata (see ``mnistlab.checks``):
``validate`` checks them and ``mnistlab train``'s flags are generated from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import torch

from mnistlab import checks
from mnistlab.data.augment import KINDS as AUGMENTS
from mnistlab.data.augment import augment_batch
from mnistlab.data.specs import DATASETS
from mnistlab.errors import UserError
from mnistlab.models import available
from mnistlab.models.registry import build_checked
from mnistlab.train.device import DEVICES

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")
ENGINES = ("auto", "fused", "winograd", "autograd", "channels-last")
INITS = ("keras", "torch")
# More passes than this over MNIST is no experiment anyone means (the seed trains 5).
MAX_EPOCHS = 1000
# An evaluation batch beyond the largest test set only costs memory.
MAX_EVAL_BATCH = 100_000


@dataclass
class TrainConfig:
    """Everything that decides a training run; written into config.json as ``train``."""

    # a registered model name (mnistlab.models.available())
    model: str = field(default="cnn", metadata={"help": "a model name (see `mnistlab models`)"})
    model_config: dict[str, Any] = field(default_factory=dict)  # keyword args of its factory
    # keras: Glorot-uniform weights, zero biases; torch: its own
    init: str = field(default="keras", metadata={
        "help": "weight init: keras (Glorot-uniform, zero biases; the seed) or torch",
        "choices": INITS})
    dataset: str = field(default="mnist", metadata={"help": "which dataset",
                                                    "choices": tuple(DATASETS)})
    epochs: int = field(default=5, metadata={"help": "passes over the training images",
                                             "min": 1, "max": MAX_EPOCHS})
    # 938 steps per epoch on 60,000 images (the last one short); at most the training images
    # (checked once the data is loaded: validate_sizes)
    batch_size: int = field(default=64, metadata={
        "help": "images per step", "min": 1,
        "max_of": "the training images"})
    optimizer: str = field(default="adam", metadata={"help": "the optimizer",
                                                     "choices": OPTIMIZERS})
    lr: float = field(default=1e-3, metadata={
        "help": "learning rate (the peak rate with --schedule onecycle)", "above": 0})
    # Keras's SGD default is 0; 1 or more never converges
    momentum: float = field(default=0.0, metadata={"help": "sgd / rmsprop momentum",
                                                   "min": 0.0, "below": 1.0})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum (sgd)"})
    # Keras 1e-7 (torch: 1e-8)
    eps: float = field(default=1e-7, metadata={"help": "adam / adamw / rmsprop epsilon",
                                               "above": 0, "max": 1.0})
    # Adam's moment decay rates (torch's defaults; Keras's are the same)
    beta1: float = field(default=0.9, metadata={
        "help": "adam / adamw first-moment decay (with --schedule onecycle and "
                "--cycle-momentum it is cycled instead)", "min": 0.0, "below": 1.0})
    beta2: float = field(default=0.999, metadata={
        "help": "adam / adamw second-moment decay", "min": 0.0, "below": 1.0})
    # L2 (sgd, adam, rmsprop) or decoupled (adamw)
    weight_decay: float = field(default=0.0, metadata={
        "help": "L2 (sgd, adam, rmsprop) or decoupled (adamw) weight decay",
        "min": 0.0, "below": 1.0})
    # onecycle: cosine warm-up then decay, per step
    schedule: str = field(default="constant", metadata={
        "help": "learning-rate schedule (onecycle: cosine warm-up then decay, per step)",
        "choices": SCHEDULES})
    # PyTorch's OneCycleLR default: momentum (sgd, rmsprop) or beta1 (adam, adamw) cycles
    # between 0.85 and 0.95 against the learning rate
    cycle_momentum: bool = field(default=True, metadata={
        "help": "onecycle: cycle momentum / adam's beta1 between 0.85 and 0.95 against the "
                "learning rate, as PyTorch's OneCycleLR does"})
    label_smoothing: float = field(default=0.0, metadata={
        "help": "cross-entropy target smoothing", "min": 0.0, "below": 1.0})
    augment: str = field(default="none", metadata={"help": "training-image augmentation",
                                                   "choices": AUGMENTS})
    # fp32 | bf16 (see engine) | auto: bf16 for conv nets on bf16 CPUs (resolve_precision)
    precision: str = field(default="auto", metadata={
        "help": "auto: bf16 for conv nets on bf16 CPUs, else fp32", "choices": PRECISIONS})
    # fused (cnn family, bf16 or fp32; im2col convolutions) | winograd (the same with
    # Winograd convolutions) | autograd (bf16: autocast + channels_last) | channels-last
    # (autograd with the model in channels_last; in bf16 autograd already is) | auto: where
    # more than one can train the model, a cached probe times each (precision.choose_engine)
    engine: str = field(default="auto", metadata={
        "help": "fused: hand-written step for the cnn family (bf16 or fp32); winograd: the "
                "same with Winograd convolutions; autograd; channels-last: autograd with a "
                "conv model in channels_last; auto: the fastest here, measured once and "
                "cached", "choices": ENGINES})
    # auto: cuda, else mps, else cpu (mnistlab.train.device); the resolved device is recorded
    # in config.json's environment
    device: str = field(default="auto", metadata={
        "help": "where to train: auto (cuda, else mps, else cpu), cpu, cuda or mps",
        "choices": DEVICES})
    # torch intra-op threads; 0: PyTorch's default (all cores)
    threads: int = field(default=0, metadata={"help": "torch threads (0: all cores)",
                                              "min": 0, "cores": True})
    seed: int = field(default=0, metadata={
        "help": "model init, batch order, augmentation", "min": 0, "below": checks.SEED_BELOW})
    # train on the first N training images; 0 (the default): all
    limit: int = field(default=0, metadata={
        "help": "train on the first N training images only", "min": 1, "unset": 0,
        "max_of": "the training images",
        "unset_means": "all", "metavar": "N"})
    # evaluate on the first N test images; 0 (the default): all
    test_limit: int = field(default=0, metadata={
        "help": "evaluate on the first N test images only", "min": 1, "unset": 0,
        "max_of": "the test images",
        "unset_means": "all", "metavar": "N"})
    # hold out the last N training images (never trained on) to calibrate confidence
    # (mnistlab.train.calibration); 0 (the default): none
    validation: int = field(default=0, metadata={
        "help": "hold out the last N training images (never trained on) to calibrate "
                "confidence", "min": 1, "unset": 0, "max_of": "the training images",
        "unset_means": "none", "metavar": "N"})
    # Keras's evaluate default (313 steps); larger is no faster
    eval_batch_size: int = field(default=32, metadata={
        "help": "images per evaluation step", "min": 1, "max": MAX_EVAL_BATCH})
    eval_each_epoch: bool = field(default=True, metadata={
        "help": "test loss/accuracy after every epoch, or only at the end"})
    # the preset that filled this config, for the record
    preset: str | None = field(default=None, metadata={"help": "the preset that filled it"})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown training setting(s): {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return cls(**data)


def validate(config: TrainConfig, label: Any = str) -> None:
    """Raise UserError for any setting that cannot train (before anything is written).

    ``label(field_name)`` names a setting in the message (the CLI passes its flag names). The
    bounds that need the data's size are ``validate_sizes``'s.
    """
    checks.one_of(label("model"), config.model, available())
    checks.check_fields(config, label)
    if not isinstance(config.model_config, dict):
        raise UserError(f"{label('model_config')} must be a JSON object, "
                        f"got {config.model_config!r}")
    # A bad model setting fails here, in one line, not as a traceback inside fit(); the trial
    # build draws from torch's global generator, so it runs on a forked one (seeds unchanged).
    given = config.model_config.get("init", config.init)
    if given != config.init:       # build() fills init from --init; the model config's would win
        raise UserError(f"the model config sets init {given!r} but {label('init')} is "
                        f"{config.init!r}: choose the initialisation with {label('init')} only")
    with torch.random.fork_rng(devices=[]):
        build_checked(config.model, **config.model_config)


def validate_sizes(config: TrainConfig, train_images: int, test_images: int,
                   label: Any = str) -> None:
    """The bounds that need the data: ``train_images`` and ``test_images`` are what
    ``load_tensors(config)`` returned (after --limit / --test-limit)."""
    what = f"the {config.dataset} training images" + (
        f" left after --validation {config.validation:,}" if config.validation else "")
    if config.limit:
        checks.at_most(label("limit"), config.limit, train_images, what)
    if config.test_limit:
        checks.at_most(label("test_limit"), config.test_limit, test_images,
                       f"the {config.dataset} test images")
    checks.at_most(label("batch_size"), config.batch_size, train_images,
                   "the training images" + (" kept by --limit" if config.limit else
                                            " left after --validation" if config.validation
                                            else ""))


def augmenter(kind: str) -> Any:
    """The batch augmentation function for ``kind``, or None for no augmentation."""
    return None if kind in ("none", "", None) else augment_batch
