"""The fused step's later conv blocks (3x3 valid conv + bias -> ReLU -> 2x2 max-pool, NHWC, bf16
or float32 operands), in two interchangeable ways of doing the convolution:

    Im2colBlock     im2col -> one bf16 matmul -> pool + ReLU (kernels): 36 multiply-adds for a
                    pool window's four outputs, one large GEMM per matmul
    WinogradBlock   Winograd F(2x2, 3x3) (winograd): 16 multiply-adds for the same four outputs,
                    as 16 smaller batched GEMMs, with transforms around them

    block = WinogradBlock(conv)   # WinogradBlock(conv, dtype=torch.float32): the fp32 step
    out = block.forward(h)        # h (B, S, S, I) bf16 -> out (B, T, T, O) bf16, T = (S-2)//2
    dh = block.backward(grad)     # grad (B, T, T, O) float32 -> dh (B, S, S, I) float32;
                                  # fills conv.weight.grad and conv.bias.grad

Which is faster depends on the CPU: Winograd does 2.25x less matmul arithmetic but moves more
data through its transforms, so where the matmuls are cheap (AMX) that trade can lose.
In bf16 ``--engine winograd`` asks for it and ``--engine auto`` does not pick it
(docs/performance.md): Winograd's transforms round to bf16 once more than im2col does, so its
gradients sit a little further from float32's. Both run in either precision (``DTYPES``); in
fp32 Winograd's extra rounding is float32's, and ``--engine auto`` measures it with the others.

Only the conv outputs that the pool reads are computed (an odd-sized output's last row and column
are discarded by the pool), and buffers are allocated once per batch size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

from mnistlab.fused import kernels, winograd
from mnistlab.fused.timing import UNTIMED, Timer

BF16 = torch.bfloat16
CONVOLUTIONS = ("im2col", "winograd")
# a run's precision -> the dtype of the fused step's operands, and the kernels that read them
DTYPES = {"bf16": BF16, "fp32": torch.float32}
KERNELS = {BF16: kernels.BF16, torch.float32: kernels.FP32}


def bits(t: torch.Tensor) -> np.ndarray:
    """A bf16 tensor's storage as uint16, shared (no copy)."""
    return t.view(torch.int16).numpy().view(np.uint16)


def raw(t: torch.Tensor) -> np.ndarray:
    """What a kernel reads of ``t``, shared (no copy): a bf16 tensor's bits, else its values."""
    return bits(t) if t.dtype == BF16 else t.numpy()


def set_grad(param: torch.Tensor, value: torch.Tensor,
             permute: tuple[int, ...] | None = None, view: tuple[int, ...] | None = None
             ) -> None:
    """Overwrite ``param.grad`` with ``value`` (seen through ``view``, then ``permute``, of the
    gradient)."""
    if param.grad is None:
        param.grad = torch.empty_like(param)
    target = param.grad.view(*view) if view else param.grad
    target = target.permute(*permute) if permute else target
    target.copy_(value)


# the fewest rows of the weight gradient's sum that one thread takes on alone (below)
MIN_ROWS_PER_PART = 2048


def weight_gradient_parts(rows: int) -> int:
    """Into how many parts the weight gradient's sum over ``rows`` conv outputs is split.

    dW = dz^T patches is a small (O x 9I) result summed over many rows; oneDNN parallelises such
    a matmul over its output, which leaves 2 cores with little to share. Split over the rows into
    one batched matmul per thread (the parts' bf16 results added in float32), it took sprint's
    block 2 at batch 192 (19,200 rows) from 0.48 to 0.34 ms alone, and the whole step 1.2x
    faster; with a few hundred rows (the seed CNN's block 3) the batched form was 9x slower, so
    a part keeps at least MIN_ROWS_PER_PART rows. The split depends on the thread count and the
    shape only, never on a timing, so a run repeats exactly."""
    parts = min(torch.get_num_threads(), rows // MIN_ROWS_PER_PART)
    while parts > 1 and rows % parts:
        parts -= 1
    return max(parts, 1)


def _nhwc_weight(conv: nn.Conv2d) -> torch.Tensor:
    """(O, I, 3, 3) -> (O, 3, 3, I): a view, contiguous when the model is channels_last."""
    return conv.weight.detach().permute(0, 2, 3, 1)


Buffers = TypeVar("Buffers")


class _Block(Generic[Buffers]):
    """What both ways share: buffers per batch size, and the last forward's for the backward."""

    def __init__(self, conv: nn.Conv2d, name: str = "block", dtype: torch.dtype = BF16) -> None:
        self.conv = conv
        self.dtype = dtype
        self.kernels = KERNELS[dtype]
        self.name = name                # how mnistlab profile labels its parts: "block 2"
        self.timer: Timer = UNTIMED
        self._buffers: dict[int, Buffers] = {}
        self._last: Buffers | None = None

    def _run(self, part: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """fn(*args), timed as "<block>: <part>" when a timer is set."""
        if self.timer is UNTIMED:
            return fn(*args, **kwargs)
        return self.timer.run(f"{self.name}: {part}", fn, *args, **kwargs)

    def _allocate(self, batch: int, side: int) -> Buffers:
        raise NotImplementedError

    def _begin(self, h: torch.Tensor) -> Buffers:
        """The buffers for ``h``'s batch size (allocated at first use), kept for the backward."""
        batch, side = h.shape[0], h.shape[1]
        if batch not in self._buffers:
            self._buffers[batch] = self._allocate(batch, side)
        self._last = self._buffers[batch]
        return self._last

    def _forward_buffers(self) -> Buffers:
        assert self._last is not None, "backward before forward"
        return self._last

    def forget(self, batch: int) -> None:
        """Drop the buffers for one batch size (the warm-up's)."""
        self._buffers.pop(batch, None)
        self._last = None


@dataclass
class _Im2colBuffers:       # "bf16": the block's dtype
    patches: torch.Tensor   # (B, E, E, 9I) bf16, E = 2T: the conv outputs the pool reads
    z: torch.Tensor         # (B*E*E, O) bf16: conv outputs; reused for their gradient
    out: torch.Tensor       # (B, T, T, O) bf16
    arg: torch.Tensor       # (B, T, T, O) int8: the pool's winner, -1 where ReLU cut
    dbias: torch.Tensor     # (B, O) float32 per-image sums
    dw: torch.Tensor        # (O, 9I) bf16
    dh: torch.Tensor        # (B, S, S, I) float32


class Im2colBlock(_Block[_Im2colBuffers]):
    def __init__(self, conv: nn.Conv2d, name: str = "block", dtype: torch.dtype = BF16) -> None:
        super().__init__(conv, name, dtype)
        # the weight as an (O, 9I) matrix in im2col's (kh, kw, I) order, refreshed per step
        self.weight = torch.empty(conv.out_channels, 9 * conv.in_channels, dtype=dtype)

    def _allocate(self, batch: int, side: int) -> _Im2colBuffers:
        cin, cout, dtype = self.conv.in_channels, self.conv.out_channels, self.dtype
        even = (side - 2) // 2 * 2
        return _Im2colBuffers(
            patches=torch.empty(batch, even, even, 9 * cin, dtype=dtype),
            z=torch.empty(batch * even * even, cout, dtype=dtype),
            out=torch.empty(batch, even // 2, even // 2, cout, dtype=dtype),
            arg=torch.empty(batch, even // 2, even // 2, cout, dtype=torch.int8),
            dbias=torch.empty(batch, cout), dw=torch.empty(cout, 9 * cin, dtype=dtype),
            dh=torch.empty(batch, side, side, cin))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b = self._begin(h)
        conv, w = self.conv, self.weight
        w.view(conv.out_channels, 3, 3, -1).copy_(_nhwc_weight(conv))
        self._run("im2col", kernels.im2col3, raw(h), raw(b.patches))
        self._run("forward matmul", torch.addmm, conv.bias.detach().to(self.dtype),
                  b.patches.view(b.z.shape[0], -1), w.t(), out=b.z)
        self._run("pool + ReLU", self.kernels.pool_relu_forward,
                  raw(b.z.view(*b.patches.shape[:3], -1)), raw(b.out), b.arg.numpy())
        return b.out

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        b = self._forward_buffers()
        conv = self.conv
        dz = b.z                                        # z is dead once pooled
        self._run("pool + ReLU backward", self.kernels.pool_relu_backward,
                  grad.contiguous().numpy(), b.arg.numpy(),
                  raw(dz.view(*b.patches.shape[:3], -1)), b.dbias.numpy())
        set_grad(conv.bias, b.dbias.sum(0))
        patches = b.patches.view(dz.shape[0], -1)
        parts = weight_gradient_parts(dz.shape[0])
        if parts == 1:
            self._run("weight-gradient matmul", torch.mm, dz.t(), patches, out=b.dw)
            set_grad(conv.weight, b.dw.view(conv.out_channels, 3, 3, -1), permute=(0, 2, 3, 1))
        else:                       # (parts, O, 9I) partial sums, added in float32
            partial = self._run("weight-gradient matmul", torch.bmm,
                                dz.view(parts, -1, dz.shape[1]).transpose(1, 2),
                                patches.view(parts, -1, patches.shape[1]))
            set_grad(conv.weight, partial.sum(0, dtype=torch.float32).view(
                conv.out_channels, 3, 3, -1), permute=(0, 2, 3, 1))
        # the patches are dead once dw is made
        self._run("input-gradient matmul", torch.mm, dz, self.weight, out=patches)
        self._run("col2im", self.kernels.col2im3, raw(b.patches), b.dh.numpy())
        return b.dh


@dataclass
class _WinogradBuffers:     # "bf16": the block's dtype
    v: torch.Tensor         # (16, B, T, T, I) bf16: transformed input tiles; reused for dv
    m: torch.Tensor         # (16, B, T, T, O) bf16: their products; reused for dm
    out: torch.Tensor       # (B, T, T, O) bf16
    arg: torch.Tensor       # (B, T, T, O) int8
    dbias: torch.Tensor     # (B, O) float32 per-image sums
    du: torch.Tensor        # (16, O, I) bf16: the transformed weight's gradient
    dw: torch.Tensor        # (O, 3, 3, I) float32
    dh: torch.Tensor        # (B, S, S, I) float32


class WinogradBlock(_Block[_WinogradBuffers]):
    def __init__(self, conv: nn.Conv2d, name: str = "block", dtype: torch.dtype = BF16) -> None:
        super().__init__(conv, name, dtype)
        # G g G^T: the transformed weight, (16, O, I), refreshed per step
        self.u = torch.empty(16, conv.out_channels, conv.in_channels, dtype=dtype)
        self._output_backward = (winograd.output_backward if dtype == BF16
                                 else winograd.output_backward_f32)

    def _allocate(self, batch: int, side: int) -> _WinogradBuffers:
        cin, cout, dtype = self.conv.in_channels, self.conv.out_channels, self.dtype
        tiles = (side - 2) // 2                         # 2x2 conv-output tiles = pool windows
        return _WinogradBuffers(
            v=torch.empty(16, batch, tiles, tiles, cin, dtype=dtype),
            m=torch.empty(16, batch, tiles, tiles, cout, dtype=dtype),
            out=torch.empty(batch, tiles, tiles, cout, dtype=dtype),
            arg=torch.empty(batch, tiles, tiles, cout, dtype=torch.int8),
            dbias=torch.empty(batch, cout), du=torch.empty(16, cout, cin, dtype=dtype),
            dw=torch.empty(cout, 3, 3, cin), dh=torch.empty(batch, side, side, cin))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b = self._begin(h)
        conv, u = self.conv, self.u
        self._run("weight transform", winograd.weight_transform,
                  _nhwc_weight(conv).contiguous().numpy(), raw(u))
        self._run("input transform", winograd.input_transform, raw(h), raw(b.v))
        self._run("forward matmuls", torch.bmm, b.v.view(16, -1, conv.in_channels),
                  u.transpose(1, 2), out=b.m.view(16, -1, conv.out_channels))
        self._run("output transform + pool + ReLU", winograd.output_pool_relu, raw(b.m),
                  conv.bias.detach().numpy(), raw(b.out), b.arg.numpy())
        return b.out

    def backward(self, grad: torch.Tensor) -> torch.Tensor:
        b = self._forward_buffers()
        conv = self.conv
        dm = b.m.view(16, -1, conv.out_channels)        # m is dead once pooled
        v = b.v.view(16, -1, conv.in_channels)
        self._run("output transform backward", self._output_backward,
                  grad.contiguous().numpy(), b.arg.numpy(), raw(b.m), b.dbias.numpy())
        set_grad(conv.bias, b.dbias.sum(0))
        self._run("weight-gradient matmuls", torch.bmm, dm.transpose(1, 2), v, out=b.du)
        self._run("weight transform backward", winograd.weight_gradient, raw(b.du),
                  b.dw.numpy())
        set_grad(conv.weight, b.dw, permute=(0, 2, 3, 1))
        # v is dead once du is made
        self._run("input-gradient matmuls", torch.bmm, dm, self.u, out=v)
        self._run("input transform backward", winograd.input_backward, raw(b.v), b.dh.numpy())
        return b.dh


def make_block(conv: nn.Conv2d, convolution: str, name: str = "block",
               dtype: torch.dtype = BF16) -> Im2colBlock | WinogradBlock:
    if convolution not in CONVOLUTIONS:
        raise ValueError(f"convolution must be one of {CONVOLUTIONS}, not {convolution!r}")
    return (WinogradBlock if convolution == "winograd" else Im2colBlock)(conv, name, dtype)
