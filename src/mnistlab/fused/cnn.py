"""A fused training step for the seed CNN's family: forward, loss and backward in one call.

    engine = FusedCNN(model)                       # model: mnistlab's ``cnn`` (any widths)
    engine = FusedCNN(model, precision="fp32")     # the same step in float32
    loss, logits = engine.step(x, y)               # fills every parameter's .grad
    engine.optimizer_step(optimizer)

Why: in PyTorch's eager autograd a step of the seed CNN at batch 64 spends most of its time
outside the convolutions' arithmetic: oneDNN's convolution backward, max-pool backward with its
zero-filled index scatter, ReLU masks and dtype/layout copies, each a separate pass over memory.
Here
  * block 1 (one input channel: 9 multiply-adds per output) is one Numba kernel from the image
    to the pooled bf16 map, conv in float32, no im2col and no 26x26 map in memory; its backward
    accumulates the weight gradient from the pooled gradient and the recorded winners;
  * later blocks are im2col -> one bf16 matmul (oneDNN: AMX or AVX-512 BF16) -> max-pool + ReLU
    in one pass, or Winograd F(2x2, 3x3) -> 16 smaller bf16 matmuls -> the same pass
    (``convolution="winograd"``, mnistlab.fused.blocks), and the backward is written out in the
    same terms;
  * buffers are allocated once per batch size (fresh multi-megabyte buffers cost page faults);
  * pooling 2x2 after a 3x3 valid convolution discards the last row and column of an odd-sized
    output (11 -> 5, 3 -> 1), so only the even part is computed: the same function, fewer FLOPs;
  * ReLU and max-pool commute, so one pass computes both and records which input won.

The numerics are those of ``torch.autocast(cpu, bfloat16)`` (bf16 operands; float32 weights,
gradients and loss), except block 1's convolution, which runs in float32.
tests/fused/test_fused.py checks the gradients against float32 autograd: as close as autocast's.

In fp32 (``precision="fp32"``: CPUs without native bf16, most laptops, where bf16 is emulated
and far slower) the same step runs on float32 operands, and its gradients are float32
autograd's to rounding. Its gain there is the same as in bf16, the passes it saves:
on an AVX2 AMD EPYC (Zen 3) a training step of the seed CNN at batch 64 took 31 ms against
76 ms through eager autograd (64 ms with channels_last), and sprint's at batch 192 10 ms
against 37 (29).
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import numba
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mnistlab.fused import kernels
from mnistlab.fused.blocks import DTYPES, KERNELS, make_block, raw, set_grad
from mnistlab.fused.timing import UNTIMED, Timer
from mnistlab.models.shapes import IMAGE_SIZE
from mnistlab.threads import torch_threads


def supports(model: nn.Module) -> bool:
    """True for (Conv2d 3x3 valid + ReLU + MaxPool2d 2) x N -> Flatten -> Linear -> ReLU ->
    Linear on 28x28 single-channel images: the seed ``cnn`` with any widths."""
    layers = list(model.children()) if isinstance(model, nn.Sequential) else []
    convs, i, side, channels = [], 0, IMAGE_SIZE, 1
    while i + 3 <= len(layers) and isinstance(layers[i], nn.Conv2d):
        conv, relu, pool = layers[i:i + 3]
        if not (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.padding == (0, 0)
                and conv.dilation == (1, 1) and conv.groups == 1 and conv.bias is not None
                and conv.in_channels == channels and isinstance(relu, nn.ReLU)
                and isinstance(pool, nn.MaxPool2d) and _is_2x2(pool)):
            return False
        side, channels = (side - 2) // 2, conv.out_channels
        if side < 1:
            return False
        convs.append(conv)
        i += 3
    head = layers[i:]
    return (bool(convs) and len(head) == 4 and isinstance(head[0], nn.Flatten)
            and isinstance(head[1], nn.Linear) and isinstance(head[2], nn.ReLU)
            and isinstance(head[3], nn.Linear)
            and head[1].in_features == channels * side * side
            and head[1].bias is not None and head[3].bias is not None)


def _is_2x2(pool: nn.MaxPool2d) -> bool:
    def pair(v: Any) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else tuple(v)
    return (pair(pool.kernel_size) == (2, 2) and pair(pool.stride) == (2, 2)
            and pair(pool.padding) == (0, 0) and pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode)


class _Forward(NamedTuple):
    """What the forward leaves for the backward ("bf16": the step's dtype)."""

    images: np.ndarray                  # (B, 28, 28) float32
    first: dict[str, torch.Tensor]      # block 1's buffers (its pooled output, winners, ...)
    h: torch.Tensor                     # (B, S, S, C) bf16: the last block's pooled output
    flat: torch.Tensor                  # (B, S*S*C) bf16: h flattened as it lies (NHWC)
    hidden: torch.Tensor                # (B, H) bf16, after ReLU
    w1: torch.Tensor                    # the dense weights in bf16, w1's columns in flat's
                                        # (S, S, C) order
    w2: torch.Tensor
    logits: torch.Tensor                # (B, classes) float32


class FusedCNN:
    """Trains ``model`` (unchanged: same parameters, same saved weights) with a fused step;
    ``convolution`` (CONVOLUTIONS) is how the blocks after the first convolve, ``precision``
    (bf16 | fp32: DTYPES) the operands' type."""

    def __init__(self, model: nn.Module, convolution: str = "im2col",
                 precision: str = "bf16") -> None:
        if not supports(model):
            raise ValueError("FusedCNN needs the seed CNN's layout: (Conv2d 3x3 + ReLU + "
                             "MaxPool2d 2) x N -> Flatten -> Linear -> ReLU -> Linear")
        if precision not in DTYPES:
            raise ValueError(f"precision must be one of {tuple(DTYPES)}, not {precision!r}")
        self.precision, self.dtype = precision, DTYPES[precision]
        self.kernels = KERNELS[self.dtype]
        layers = list(model.children())
        self.convs: list[nn.Conv2d] = [m for m in layers if isinstance(m, nn.Conv2d)]
        self.fc1, self.fc2 = (m for m in layers if isinstance(m, nn.Linear))
        self.convolution = convolution
        self.blocks = [make_block(conv, convolution, f"block {i}", self.dtype)
                       for i, conv in enumerate(self.convs[1:], start=2)]
        self.timer: Timer = UNTIMED
        self._buffers: dict[int, dict[str, torch.Tensor]] = {}
        # read once: the OpenMP wait policy is fixed when torch is loaded
        self._sleeping_threads = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"

    def warm_up(self, forward_only: bool = False) -> None:
        """Compile the kernels (or load them from Numba's cache) on a two-image batch, and use
        as many threads as torch does. The gradients it leaves are overwritten by the next step;
        ``forward_only`` (an engine that only evaluates): the forward's kernels, no gradients.
        Starting Numba's OpenMP pool (its first set_num_threads or parallel launch) resets the
        shared libgomp's thread count (1 -> all cores, seen here), so torch's is restored after."""
        threads = torch.get_num_threads()
        x = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
        with torch_threads(threads):
            numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
            if forward_only:
                self.logits(x)
            else:
                self.step(x, torch.zeros(2, dtype=torch.int64))
        self.forget(2)

    def _first(self, batch: int) -> dict[str, torch.Tensor]:
        """Block 1's buffers for this batch size, allocated once (at most two sizes per epoch)."""
        if batch not in self._buffers:
            first = self.convs[0].out_channels
            pooled = (IMAGE_SIZE - 2) // 2
            self._buffers[batch] = {
                "out": torch.empty(batch, pooled, pooled, first, dtype=self.dtype),
                "arg": torch.empty(batch, pooled, pooled, first, dtype=torch.int8),
                "dw": torch.empty(batch, 9, first),          # per-image sums
                "dbias": torch.empty(batch, first),
            }
        return self._buffers[batch]

    def _forward(self, x: torch.Tensor) -> _Forward:
        """The forward pass on x (B, 1, 28, 28) in [0, 1], keeping what the backward reads."""
        k, dtype = self.kernels, self.dtype
        batch = x.shape[0]
        images = x.reshape(batch, IMAGE_SIZE, IMAGE_SIZE).contiguous().numpy()

        # block 1 reads the image directly: conv (one input channel, float32) + ReLU + pool
        conv, first = self.convs[0], self._first(batch)
        w = conv.weight.detach().reshape(-1, 9).t().contiguous()    # (9, O)
        self.timer.run("block 1: conv + pool + ReLU", k.first_block_forward, images, w.numpy(),
                       conv.bias.detach().numpy(), raw(first["out"]), first["arg"].numpy())
        h = first["out"]
        for block in self.blocks:                  # blocks 2..: conv -> pool + ReLU
            h = block.forward(h)
        # nn.Flatten reads (C, S, S); the first dense weight's columns are put in the map's own
        # (S, S, C) order instead, in the copy that casts it: the map is flattened as it lies,
        # and its gradient comes back in that order, with no copy of either
        flat = h.reshape(batch, -1)
        w1, b1 = self._first_dense_weight(h), self.fc1.bias.to(dtype)
        w2, b2 = self.fc2.weight.to(dtype), self.fc2.bias.to(dtype)
        hidden = self.timer.run("dense: forward matmuls", torch.addmm, b1, flat, w1.t()).relu_()
        logits = self.timer.run("dense: forward matmuls", torch.addmm, b2, hidden, w2.t()).float()
        return _Forward(images, first, h, flat, hidden, w1, w2, logits)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The forward alone, for evaluation: float32 logits (B, classes) for x (B, 1, 28, 28)
        in [0, 1], with step()'s numerics. 4-6x faster than the model's own forward in bf16
        autocast here (10,000 test images: the seed cnn 0.30 s against 1.21 s, sprint 0.04 s
        against 0.26 s), which spends its time in ReLU and max-pool passes over the
        full-size maps. Not thread-safe: the buffers are the engine's."""
        return self._forward(x).logits

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward on one batch: x (B, 1, 28, 28) in [0, 1], y (B,) int64.

        Returns the mean cross-entropy (float32 scalar) and the logits (B, classes), and leaves
        each parameter's gradient in ``.grad`` (overwritten, not accumulated).
        """
        batch = x.shape[0]
        f = self._forward(x)
        logits, hidden, flat, h = f.logits, f.hidden, f.flat, f.h
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)

        # its gradient: (softmax - target) / B, target = one-hot smoothed towards uniform
        d_logits = logits.softmax(1)
        d_logits.scatter_add_(1, y.view(-1, 1), torch.full((batch, 1), label_smoothing - 1.0))
        if label_smoothing:
            d_logits.sub_(label_smoothing / logits.shape[1])
        d_logits = d_logits.div_(batch).to(self.dtype)

        set_grad(self.fc2.bias, d_logits.sum(0, dtype=torch.float32))
        dense_backward = "dense: backward matmuls"
        set_grad(self.fc2.weight, self.timer.run(dense_backward, torch.mm, d_logits.t(), hidden))
        d_hidden = torch.ops.aten.threshold_backward(                               # relu
            self.timer.run(dense_backward, torch.mm, d_logits, f.w2), hidden, 0)
        set_grad(self.fc1.bias, d_hidden.sum(0, dtype=torch.float32))
        dw1 = self.timer.run(dense_backward, torch.mm, d_hidden.t(), flat)
        set_grad(self.fc1.weight, dw1.view(-1, *h.shape[1:]), permute=(0, 2, 3, 1),
                 view=self._dense_nchw(h))
        grad = self.timer.run(dense_backward, torch.mm, d_hidden, f.w1).float().view(h.shape)
        for block in reversed(self.blocks):
            grad = block.backward(grad)
        conv, first = self.convs[0], f.first
        self.timer.run("block 1: backward", kernels.first_block_backward, f.images,
                       grad.contiguous().numpy(), first["arg"].numpy(), first["dw"].numpy(),
                       first["dbias"].numpy())
        set_grad(conv.bias, first["dbias"].sum(0))
        set_grad(conv.weight, first["dw"].sum(0).t().reshape(conv.weight.shape))
        return loss, logits

    def _first_dense_weight(self, h: torch.Tensor) -> torch.Tensor:
        """The first dense weight in the step's dtype, its columns in the (S, S, C) order of
        the last block's pooled map h (B, S, S, C): one copy, or none where it already is."""
        w = self.fc1.weight.detach().view(self._dense_nchw(h)).permute(0, 2, 3, 1)
        if not (w.dtype == self.dtype and w.is_contiguous()):
            w = torch.empty(w.shape, dtype=self.dtype).copy_(w)
        return w.view(self.fc1.out_features, -1)

    def _dense_nchw(self, h: torch.Tensor) -> tuple[int, int, int, int]:
        """The first dense weight seen as (hidden, C, S, S): its columns in nn.Flatten's order,
        for the last block's pooled map h (B, S, S, C)."""
        return (self.fc1.out_features, h.shape[3], h.shape[1], h.shape[2])

    def time_with(self, timer: Timer | None) -> None:
        """Time each kernel and matmul of the step with ``timer`` (mnistlab.fused.timing), or
        none (None): what `mnistlab profile` reads."""
        self.timer = timer if timer is not None else UNTIMED
        for block in self.blocks:
            block.timer = self.timer

    def forget(self, batch: int) -> None:
        """Drop the buffers for one batch size (a warm-up's)."""
        self._buffers.pop(batch, None)
        for block in self.blocks:
            block.forget(batch)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``, on one thread where idle OpenMP threads sleep: each of the ten
        small tensors then pays a thread wake-up, and fused Adam runs 3x faster on one thread
        than on two (0.19 against 0.64 ms here). With spinning threads two are faster."""
        if not self._sleeping_threads:
            optimizer.step()
            return
        with torch_threads(1):
            optimizer.step()

