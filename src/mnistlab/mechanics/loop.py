"""The explicit training loop: every phase of a step written out, no optimizer object.

This is the PyTorch counterpart of the reference lab's ``tf.GradientTape`` loop. ``train_loop``
is meant to be read; ``mnistlab.mechanics.loop_run`` wraps it with data, the live loss curve and
a saved run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.data.batches import Batches

OnStep = Callable[[int, float], None]


def train_loop(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
               steps: int, lr: float, on_step: OnStep | None = None) -> list[float]:
    """Run ``steps`` SGD iterations and return the loss of each, in order.

    One iteration: take a batch, forward pass, loss, gradients with ``torch.autograd.grad``,
    then move every parameter against its gradient by hand: p <- p - lr * dL/dp.
    ``on_step(step, loss)`` (step counts from 1) lets a caller draw progress; it returns nothing.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    losses: list[float] = []
    for step, (x, y) in zip(range(1, steps + 1), batches, strict=False):
        logits = model(x)                                   # forward: (B, 1, 28, 28) -> (B, 10)
        loss = F.cross_entropy(logits, y)                   # mean over the batch
        grads = torch.autograd.grad(loss, params)           # dL/dp for each parameter
        with torch.no_grad():                               # the update is not part of the graph
            for p, g in zip(params, grads, strict=True):
                p -= lr * g                                 # SGD, written out
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    if len(losses) < steps:
        raise ValueError(f"the batch stream ended after {len(losses)} of {steps} steps")
    return losses


def batch_stream(x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled batches: a fresh seeded permutation for each pass over the data.

    Full batches only (60,000 / 12 = 5,000 per pass), so every loss on the curve is a mean over
    exactly ``batch_size`` images.
    """
    passes = Batches(x, y, batch_size, shuffle=True, seed=seed, drop_last=True)
    if len(passes) == 0:
        raise ValueError(f"batch size {batch_size} is larger than the {len(x)} training images")
    while True:
        yield from passes
