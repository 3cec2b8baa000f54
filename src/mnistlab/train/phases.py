"""The phases of training, each returning numbers: one epoch, evaluation, probabilities.

``train_one_epoch`` and ``evaluate`` print nothing; ``fit`` (mnistlab.train.fit) calls them and
its callbacks decide what is shown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.data.batches import Batches, to_tensors
from mnistlab.errors import UserError
from mnistlab.train.config import augmenter
from mnistlab.train.precision import autocast, evaluation_engine


class TrainingDiverged(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def train_one_epoch(model: nn.Module, batches: Batches, optimizer: torch.optim.Optimizer, *,
                    precision: str = "fp32", label_smoothing: float = 0.0,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
                    augment: str = "none", augment_generator: torch.Generator | None = None,
                    on_step: Any = None, engine: Any = None, device: str = "cpu"
                    ) -> dict[str, float]:
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
            # drawn from a CPU generator and warped there (the same images on every device);
            # on the CPU .cpu() and .to() are no-ops
            x = augment_batch(x.cpu(), augment, augment_generator).to(x.device)
        if engine is not None:                                         # fills the gradients
            loss, logits = engine.step(x, y, label_smoothing)
        else:
            with autocast(precision, device):
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
             precision: str = "fp32", device: str = "cpu") -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y); x float (N, 1, 28, 28) in [0, 1].
    ``device``: the device type that model and tensors are on (for autocast)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    start = time.perf_counter()
    # the cnn family on the CPU: the fused forward (its own bf16 or fp32, outside autocast)
    fused = evaluation_engine(model, precision, device)
    forward = fused.logits if fused is not None else model
    with torch.inference_mode(), autocast(precision if fused is None else "fp32", device):
        for i, xb in enumerate(_eval_batches(x, batch_size)):
            yb = y[i * batch_size:i * batch_size + len(xb)]
            logits = forward(xb).float()
            loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    n = len(x)
    return {"test_loss": loss_sum / n, "test_accuracy": correct / n,
            "seconds": time.perf_counter() - start, "steps": -(-n // batch_size), "images": n}


def predict_proba(model: nn.Module, x: torch.Tensor | np.ndarray, *, batch_size: int = 256,
                  precision: str = "fp32") -> np.ndarray:
    """Class probabilities, float32 (N, 10), on the CPU. ``x``: uint8 images (N, 28, 28) or
    float inputs, anywhere: each batch moves to the model's device (a no-op when it is there)."""
    device = next(model.parameters(), torch.empty(0)).device
    if isinstance(x, np.ndarray):
        x = to_tensors(x, np.zeros(len(x), dtype=np.int64))[0] if x.dtype == np.uint8 \
            else torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if x.dim() == 3:
        x = x.unsqueeze(1)                                             # (N, 28, 28) -> (N, 1, ...)
    was_training = model.training
    model.eval()
    out = []
    with torch.inference_mode(), autocast(precision, device.type):
        for xb in _eval_batches(x, batch_size):
            out.append(torch.softmax(model(xb.to(device)).float(), dim=1).cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, 10), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)
