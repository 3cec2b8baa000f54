"""Training and evaluation: one typed config, a loop in named phases, numbers returned, not printed.

    config = TrainConfig(model="cnn", **preset_overrides("seed", "cnn"))
    result = fit(config, run_dir)                 # trains, checkpoints each epoch, writes the run
    evaluate(model, x, y)                         # {"test_loss": ..., "test_accuracy": ...}
    predict_proba(model, images)                  # np.ndarray (N, 10), rows sum to 1

fit() = prepare (data, model, optimizer, schedule; or restore a checkpoint) -> for each epoch:
train_one_epoch -> evaluate -> save (checkpoint, weights, history) -> callbacks. Printing is a
callback's job (``KerasLogger``); train_one_epoch and evaluate only return numbers. The config
and its validation live in ``mnistlab.train_config`` (re-exported here), checkpoints and resume
in ``mnistlab.train_resume``, the fused bf16 step for the seed CNN in ``mnistlab.fused``.

Reproducibility: the model is initialised from ``torch.manual_seed(seed)``, the batch order from
its own generator seeded with ``seed``, augmentation from another (``seed + 1``); all three
states go into every checkpoint, so a resumed run continues exactly where it stopped. On one
machine, with one PyTorch version and one thread count, fp32 runs with the same seed give
identical figures; PyTorch promises nothing across versions, platforms or thread counts.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab import runs
from mnistlab.data.batches import Batches, to_tensors
from mnistlab.errors import UserError
from mnistlab.machine import torch_threads
from mnistlab.train_config import (  # noqa: F401  (re-exported: mnistlab.train.TrainConfig, ...)
    ENGINES,
    OPTIMIZERS,
    PRECISIONS,
    SCHEDULES,
    TrainConfig,
    augmenter,
    validate,
)
from mnistlab.train_resume import check_resumable, restore, save_epoch


def resolve_precision(config: TrainConfig, model: nn.Module | None = None) -> str:
    """``auto`` -> bf16 for convolutional models on a CPU with native bf16, else fp32.

    Measured here (AVX-512 BF16): the seed CNN trains about 2x faster in bf16 autocast with
    channels_last at the same accuracy; the FC model's matrices are too small to gain.
    """
    if config.precision != "auto":
        return config.precision
    has_conv = model is not None and any(isinstance(m, nn.Conv2d) for m in model.modules())
    bf16_ok = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return "bf16" if has_conv and bf16_ok else "fp32"


def autocast(precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on the CPU (weights stay fp32; matmuls and convs run in bf16)."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_engine(config: TrainConfig, model: nn.Module, precision: str) -> str:
    """``auto`` -> ``fused`` for the seed CNN's family in bf16 (mnistlab.fused: a hand-written
    step checked against autograd, 1.9x faster than autocast here), else ``autograd``."""
    from mnistlab.fused import supports

    fits = precision == "bf16" and supports(model)
    if config.engine == "fused" and not fits:
        raise UserError("the fused engine trains the cnn family (3x3 conv + relu + 2x2 pool "
                        "blocks, then two dense layers) in bf16 only; use --engine autograd")
    if config.engine == "auto":
        return "fused" if fits else "autograd"
    return config.engine


def prepare_model(model: nn.Module, precision: str) -> nn.Module:
    # channels_last lets oneDNN's bf16 convolutions skip layout reorders (measured 1.6-1.8x).
    if precision == "bf16" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def build(config: TrainConfig) -> tuple[nn.Module, dict[str, Any]]:
    """The model for ``config`` (seeded) and the model config that rebuilds it."""
    from mnistlab.models import build_model, factory

    model_config = dict(config.model_config)
    params = inspect.signature(factory(config.model)).parameters
    if "init" in params and "init" not in model_config:
        model_config["init"] = config.init
    torch.manual_seed(config.seed)
    try:
        model = build_model(config.model, **model_config)
    except TypeError as exc:
        raise UserError(f"bad model config for {config.model!r}: {exc}") from None
    return model, model_config


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # foreach/fused variants update all tensors in a few kernels instead of one per tensor.
    params = model.parameters()
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0,
                               weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, eps=config.eps,
                                weight_decay=config.weight_decay, fused=True)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, eps=config.eps,
                                 weight_decay=config.weight_decay, fused=True)
    return torch.optim.RMSprop(params, lr=config.lr, eps=config.eps, momentum=config.momentum,
                               weight_decay=config.weight_decay, foreach=True)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                   steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch)
    return None


# --- data ------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=4)
def _split_tensors(dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from mnistlab.data import load_dataset

    images, labels = load_dataset(dataset, split)
    return to_tensors(images, labels)                       # new float32 memory, (N, 1, 28, 28)


def load_tensors(config: TrainConfig) -> tuple[torch.Tensor, ...]:
    """(x_train, y_train, x_test, y_test): float (N, 1, 28, 28) in [0, 1] and int64 labels."""
    x_train, y_train = _split_tensors(config.dataset, "train")
    x_test, y_test = _split_tensors(config.dataset, "test")
    if config.limit:
        x_train, y_train = x_train[:config.limit], y_train[:config.limit]
    if config.test_limit:
        x_test, y_test = x_test[:config.test_limit], y_test[:config.test_limit]
    return x_train, y_train, x_test, y_test


# --- the phases --------------------------------------------------------------------------------

class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during fit(); ``epochs_done`` epochs are saved in ``run_dir``."""

    def __init__(self, epochs_done: int, epochs: int, run_dir: Path | None) -> None:
        super().__init__(f"interrupted after {epochs_done} of {epochs} epochs")
        self.epochs_done, self.epochs, self.run_dir = epochs_done, epochs, run_dir


class Callback:
    """Hooks fit() calls; subclass and override what you need (printing, logging, plotting).

    fit() sets ``model`` and ``optimizer`` on each callback before ``on_train_begin``.
    """

    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None

    def on_train_begin(self, info: dict[str, Any]) -> None: ...
    def on_epoch_begin(self, epoch: int, epochs: int, steps: int) -> None: ...
    def on_step(self, step: int, loss: float, accuracy: float) -> None: ...
    def on_epoch_end(self, row: dict[str, Any]) -> None: ...
    def on_train_end(self, result: FitResult | None) -> None: ...  # None: interrupted


def train_one_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, *,
                    precision: str = "fp32", label_smoothing: float = 0.0,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    augment: str = "none", augment_generator: torch.Generator | None = None,
                    on_step: Any = None, engine: Any = None) -> dict[str, float]:
    """One pass over ``batches``; returns the running mean loss and accuracy, as Keras reports.

    ``engine`` (a ``mnistlab.fused`` step) replaces the forward, loss and backward when given.
    Raises TrainingDiverged on a non-finite loss, before the bad step is applied.
    """
    augment_batch = augmenter(augment)
    model.train()
    loss_sum, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for step, (x, y) in enumerate(batches, 1):
        if augment_batch is not None:
            x = augment_batch(x, augment, augment_generator)
        if engine is not None:                                         # fills the gradients
            loss, logits = engine.step(x, y, label_smoothing)
        else:
            with autocast(precision):
                logits = model(x)                                      # (B, 10)
                loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"the loss became {loss_value} at step {step}")
        if engine is None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        else:
            engine.optimizer_step(optimizer)
        if scheduler is not None:
            scheduler.step()
        n = len(y)
        loss_sum += loss_value * n
        correct += int((logits.argmax(1) == y).sum())
        seen += n
        if on_step is not None:
            on_step(step, loss_sum / seen, correct / seen)
    seconds = time.perf_counter() - start
    return {"train_loss": loss_sum / seen, "train_accuracy": correct / seen,
            "seconds": seconds, "steps": len(batches), "images": seen}


def _eval_batches(x: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 32,
             precision: str = "fp32") -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y); x float (N, 1, 28, 28) in [0, 1]."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    start = time.perf_counter()
    with torch.inference_mode(), autocast(precision):
        for i, xb in enumerate(_eval_batches(x, batch_size)):
            yb = y[i * batch_size:i * batch_size + len(xb)]
            logits = model(xb).float()
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    n = len(x)
    return {"test_loss": loss_sum / n, "test_accuracy": correct / n,
            "seconds": time.perf_counter() - start, "steps": -(-n // batch_size), "images": n}


def predict_proba(model: nn.Module, x: torch.Tensor | np.ndarray, *, batch_size: int = 256,
                  precision: str = "fp32") -> np.ndarray:
    """Class probabilities, float32 (N, 10). ``x``: uint8 images (N, 28, 28) or float inputs."""
    if isinstance(x, np.ndarray):
        x = to_tensors(x, np.zeros(len(x), dtype=np.int64))[0] if x.dtype == np.uint8 \
            else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if x.dim() == 3:
        x = x.unsqueeze(1)                                             # (N, 28, 28) -> (N, 1, ...)
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode(), autocast(precision):
        for xb in _eval_batches(x, batch_size):
            out.append(torch.softmax(model(xb).float(), dim=1))
    model.train(was_training)
    if not out:
        return np.zeros((0, 10), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


# --- fit -------------------------------------------------------------------------------------

@dataclass
class FitResult:
    model: nn.Module
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    run_dir: Path | None


def fit(config: TrainConfig, run_dir: str | Path | None = None, *, resume: bool = False,
        callbacks: Sequence[Callback] = (), record: dict[str, Any] | None = None) -> FitResult:
    """Train ``config`` and return the model, its history and final metrics.

    With ``run_dir``, write config.json first, then after each epoch an atomic checkpoint,
    model.safetensors and history, and metrics.json at the end. ``resume`` continues from the
    checkpoint in ``run_dir`` (its saved config must match ``config``, thread count aside).
    ``record`` adds entries to config.json (the CLI records the command line).
    """
    validate(config)
    run_dir = Path(run_dir) if run_dir is not None else None
    with torch_threads(config.threads):
        return _fit(config, run_dir, resume, list(callbacks), record or {})


def _fit(config: TrainConfig, run_dir: Path | None, resume: bool,
         callbacks: list[Callback], record: dict[str, Any]) -> FitResult:
    # -- prepare
    x_train, y_train, x_test, y_test = load_tensors(config)
    model, model_config = build(config)
    precision = resolve_precision(config, model)
    model = prepare_model(model, precision)
    engine_name = resolve_engine(config, model, precision)
    warmup = time.perf_counter()
    engine = _make_engine(engine_name, model)
    warmup = time.perf_counter() - warmup
    batches = Batches(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed)
    augment_generator = torch.Generator().manual_seed(config.seed + 1)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, len(batches))
    history: list[dict[str, Any]] = []
    info = {"model": config.model, "model_config": model_config, "precision": precision,
            "engine": engine_name, "warmup_seconds": round(warmup, 3),
            "threads": torch.get_num_threads(), "train_images": len(x_train),
            "test_images": len(x_test), "steps_per_epoch": len(batches),
            "parameters": sum(p.numel() for p in model.parameters()),
            "run_dir": str(run_dir) if run_dir else None, "resumed_from": 0}

    if resume:
        if run_dir is None:
            raise UserError("resuming needs the run folder (--out DIR)")
        check_resumable(config, run_dir)
        runs.remove_partial_writes(run_dir)
        if (run_dir / runs.CHECKPOINT).exists():  # else no epoch had finished: start afresh
            ckpt = runs.load_checkpoint(run_dir)
            restore(ckpt, model, optimizer, scheduler, batches, augment_generator)
            history = list(ckpt.history)
            info["resumed_from"] = ckpt.epoch
    elif run_dir is not None:
        runs.write_config(run_dir, {
            "model": config.model, "model_config": model_config, "precision": precision,
            "engine": engine_name, "threads": info["threads"], "parameters": info["parameters"],
            "train": asdict(config), "environment": runs.environment(info["threads"]),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record})
    for cb in callbacks:
        cb.model, cb.optimizer = model, optimizer
        cb.on_train_begin(info)

    # -- epochs
    test: dict[str, float] = {}
    saved = len(history)               # epochs whose checkpoint is on disk
    try:
        for epoch in range(len(history) + 1, config.epochs + 1):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, config.epochs, len(batches))
            try:
                train = train_one_epoch(
                    model, batches, optimizer, precision=precision,
                    label_smoothing=config.label_smoothing, scheduler=scheduler,
                    augment=config.augment, augment_generator=augment_generator,
                    on_step=_fan_out(callbacks), engine=engine)
            except TrainingDiverged as exc:
                for cb in callbacks:
                    cb.on_train_end(None)
                kept = (f"; the last good checkpoint (epoch {saved}) is kept in {run_dir}"
                        if run_dir is not None and saved else "")
                raise TrainingDiverged(f"{exc} of epoch {epoch}/{config.epochs} (learning "
                                       f"rate {config.lr:g} may be too high){kept}") from None
            this_epoch: dict[str, float] = {}
            if config.eval_each_epoch or epoch == config.epochs:
                test = this_epoch = evaluate(model, x_test, y_test, precision=precision,
                                             batch_size=config.eval_batch_size)
            row = _history_row(epoch, train, this_epoch, optimizer)
            history.append(row)
            if run_dir is not None:
                save_epoch(run_dir, config.model, model_config, model, optimizer, scheduler,
                            batches, augment_generator, history)
                saved = epoch
            for cb in callbacks:
                cb.on_epoch_end(row)
    except KeyboardInterrupt:
        for cb in callbacks:
            cb.on_train_end(None)
        raise TrainingInterrupted(saved if run_dir is not None else 0, config.epochs,
                                  run_dir) from None

    # -- finish
    if not test:  # resumed a run whose last epoch had finished: evaluate once more
        test = evaluate(model, x_test, y_test, batch_size=config.eval_batch_size,
                        precision=precision)
    metrics = _final_metrics(config, info, history, test, run_dir)
    if run_dir is not None:
        runs.write_metrics(run_dir, metrics)
    result = FitResult(model=model.eval(), history=history, metrics=metrics, run_dir=run_dir)
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def _make_engine(name: str, model: nn.Module) -> Any:
    if name != "fused":
        return None
    from mnistlab.fused import FusedCNN

    engine = FusedCNN(model)
    engine.warm_up()              # compiles (or loads) its kernels before any step is timed
    return engine


def _fan_out(callbacks: list[Callback]) -> Any:
    if not callbacks:
        return None

    def on_step(step: int, loss: float, accuracy: float) -> None:
        for cb in callbacks:
            cb.on_step(step, loss, accuracy)

    return on_step


def _history_row(epoch: int, train: dict[str, float], test: dict[str, float],
                 optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "train_loss": train["train_loss"], "train_accuracy": train["train_accuracy"],
        "test_loss": test.get("test_loss"),                       # None: not evaluated
        "test_accuracy": test.get("test_accuracy"),
        "seconds": round(train["seconds"], 4),                     # training phase only
        "eval_seconds": round(test.get("seconds", 0.0), 4),
        "eval_steps": test.get("steps"),                           # None: not evaluated
        "images_per_second": round(train["images"] / train["seconds"], 1),
        "steps": train["steps"],
        "lr": optimizer.param_groups[0]["lr"],                     # at the end of the epoch
    }


def _final_metrics(config: TrainConfig, info: dict[str, Any], history: list[dict[str, Any]],
                   test: dict[str, float], run_dir: Path | None) -> dict[str, Any]:
    train_seconds = sum(r["seconds"] for r in history)
    images = info["train_images"] * len(history)
    last = history[-1]
    return {
        "model": config.model, "dataset": config.dataset, "preset": config.preset,
        "seed": config.seed, "precision": info["precision"], "engine": info["engine"],
        "warmup_seconds": info["warmup_seconds"],
        "threads": info["threads"],
        "epochs": len(history), "parameters": info["parameters"],
        "test_accuracy": test["test_accuracy"], "test_loss": test["test_loss"],
        "train_accuracy": last["train_accuracy"], "train_loss": last["train_loss"],
        "train_seconds": round(train_seconds, 3),
        "eval_seconds": round(sum(r["eval_seconds"] for r in history), 3),
        "images_per_second": round(images / train_seconds, 1) if train_seconds else None,
        "train_images": info["train_images"], "test_images": info["test_images"],
        "run_dir": str(run_dir) if run_dir is not None else None,
    }
