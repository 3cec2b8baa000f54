"""What decides a training run: ``TrainConfig`` (written into config.json as ``train``), its
allowed values and its validation. ``mnistlab.train`` re-exports all of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from mnistlab.errors import UserError

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "onecycle")
PRECISIONS = ("auto", "fp32", "bf16")
ENGINES = ("auto", "fused", "autograd")


@dataclass
class TrainConfig:
    """Everything that decides a training run; written into config.json as ``train``."""

    model: str = "cnn"                 # a registered model name (mnistlab.models.available())
    model_config: dict[str, Any] = field(default_factory=dict)  # keyword args of its factory
    init: str = "keras"                # keras: Glorot-uniform weights, zero biases; torch: its own
    dataset: str = "mnist"             # mnist | fashion-mnist
    epochs: int = 5                    # passes over the training images
    batch_size: int = 64               # 938 steps per epoch on 60,000 images (the last one short)
    optimizer: str = "adam"            # sgd | adam | adamw | rmsprop
    lr: float = 1e-3                   # learning rate; the peak rate with schedule "onecycle"
    momentum: float = 0.0              # sgd / rmsprop momentum (Keras's SGD default: 0)
    nesterov: bool = False             # sgd only
    eps: float = 1e-7                  # adam/adamw/rmsprop epsilon: Keras 1e-7 (torch: 1e-8)
    weight_decay: float = 0.0          # L2 (sgd, adam, rmsprop) or decoupled (adamw)
    schedule: str = "constant"         # constant | onecycle (cosine warm-up then decay, per step)
    label_smoothing: float = 0.0       # cross-entropy target smoothing, 0 <= x < 1
    augment: str = "none"              # none, or a kind of mnistlab.data.augment.KINDS
    precision: str = "auto"            # fp32 | bf16 (see engine) | auto: see below
    engine: str = "auto"               # fused (bf16 cnn family) | autograd (bf16: autocast +
                                       # channels_last) | auto: see resolve_engine
    threads: int = 0                   # torch intra-op threads; 0: PyTorch's default (all cores)
    seed: int = 0                      # model init, batch order, augmentation
    limit: int = 0                     # train on the first N training images; 0: all
    test_limit: int = 0                # evaluate on the first N test images; 0: all
    validation: int = 0                # hold out the last N training images (never trained
                                       # on) to calibrate confidence; 0: none
    eval_batch_size: int = 32          # Keras's evaluate default (313 steps); larger is no faster
    eval_each_epoch: bool = True       # test loss/accuracy after every epoch (else only at the end)
    preset: str | None = None          # the preset that filled this config, for the record

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown training setting(s): {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")
        return cls(**data)


def validate(config: TrainConfig) -> None:
    """Raise UserError for any setting that cannot train (before anything is written)."""
    from mnistlab.models import available

    for name, allowed in (("model", available()), ("optimizer", OPTIMIZERS),
                          ("schedule", SCHEDULES), ("precision", PRECISIONS),
                          ("engine", ENGINES)):
        value = getattr(config, name)
        if value not in allowed:
            raise UserError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
    for name in ("epochs", "batch_size", "eval_batch_size"):
        value = getattr(config, name)
        if not isinstance(value, int) or value <= 0:
            raise UserError(f"{name.replace('_', ' ')} must be a positive whole number, "
                            f"got {value!r}")
    for name in ("limit", "test_limit", "threads", "validation"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 0:
            raise UserError(f"{name.replace('_', ' ')} must be 0 or a positive whole number, "
                      f"got {value!r}")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise UserError(f"learning rate must be a positive number, got {config.lr!r}")
    for name in ("momentum", "weight_decay"):
        value = getattr(config, name)
        if not (math.isfinite(value) and value >= 0):
            raise UserError(f"{name.replace('_', ' ')} must be >= 0, got {value!r}")
    if not 0 <= config.label_smoothing < 1:
        raise UserError(f"label smoothing must be in [0, 1), got {config.label_smoothing!r}")
    if config.init not in ("keras", "torch"):
        raise UserError(f"unknown init {config.init!r}; choose keras or torch")
    if augmenter(config.augment) is not None:
        import mnistlab.data.augment

        kinds = getattr(mnistlab.data.augment, "KINDS", ())
        if kinds and config.augment not in kinds:
            raise UserError(f"unknown augmentation {config.augment!r}; choose none or one of: "
                      f"{', '.join(kinds)}")


def augmenter(kind: str) -> Any:
    if kind in ("none", "", None):
        return None
    try:
        from mnistlab.data.augment import augment_batch
    except ModuleNotFoundError as exc:
        if exc.name != "mnistlab.data.augment":
            raise
        raise UserError(f"augmentation {kind!r} needs mnistlab.data.augment, "
                        "which this installation lacks; use --augment none") from None
    return augment_batch
