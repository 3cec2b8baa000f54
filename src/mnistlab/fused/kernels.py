"""The memory-bound parts of a conv block, compiled by Numba: im2col, col2im, max-pool + ReLU.

The matmuls stay with PyTorch (oneDNN bf16); these kernels move and compare the data around
them in one pass each, with no zero-filled temporaries. Tensors are NHWC. bf16 tensors travel as
their raw 16-bit patterns (``uint16``): NumPy has no bf16, and a bf16 value is the upper half of
the float32 with the same bits, so widening is a shift and narrowing rounds to nearest even.

    im2col3(h, p)          h (B,H,W,C) -> p (B,OH,OW,9C): p[n,i,j,k*C + c] = h[n,i+kr,j+ks,c]
    col2im3(dp, dh)        the gradient of im2col3 (bf16 in, float32 out)
    pool_relu_forward(z, out, arg)
                           out = relu(max of each 2x2 window); arg = the winner 0..3, or -1
                           where the max is <= 0
    pool_relu_backward(g, arg, dz, dbias)
                           routes g to the winners (bf16 out); per-image sums for the bias
    first_block_forward(x, w, b, out, arg)
                           relu(max-pool(conv3x3(x) + b)) from single-channel float32 images
    first_block_backward(x, g, arg, dw, db)
                           its weight and bias gradients, per image

The same in float32 (the fused step in fp32, on CPUs without native bf16): ``col2im3_f32``,
``pool_relu_forward_f32``, ``pool_relu_backward_f32`` and ``first_block_forward_f32`` read and
write float32 arrays; ``im2col3`` (a copy) and ``first_block_backward`` (float32 in and out)
serve both. ``BF16`` and ``FP32`` name each precision's set.

``k = 3*kr + ks`` runs over the 3x3 window, so a patch row matches a conv weight stored
(O, kh, kw, I): the layout of a channels_last ``nn.Conv2d`` weight.
Each kernel parallelises over the batch (``prange``); every output element is written by one
thread, and sums are per image, so results do not depend on the thread count.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit, prange

_HALF = np.uint32(0x7FFF)
_SIXTEEN = np.uint32(16)
_ONE = np.uint32(1)


@njit(inline="always")
def _bf16_bits(u):  # pragma: no cover - compiled
    """The bf16 nearest (ties to even) to the float32 whose bits are ``u``, as 16 bits."""
    return np.uint16((u + _HALF + ((u >> _SIXTEEN) & _ONE)) >> _SIXTEEN)


@njit(parallel=True, cache=True)
def im2col3(h, p):  # pragma: no cover - compiled
    batch, oh, ow = p.shape[0], p.shape[1], p.shape[2]
    channels = h.shape[3]
    for n in prange(batch):
        for i in range(oh):
            for j in range(ow):
                for k in range(9):
                    kr, ks = k // 3, k % 3
                    base = k * channels
                    for c in range(channels):
                        p[n, i, j, base + c] = h[n, i + kr, j + ks, c]


@njit(parallel=True, fastmath=True, cache=True)
def col2im3(dp, dh):  # pragma: no cover - compiled
    batch, oh, ow, width = dp.shape[0], dp.shape[1], dp.shape[2], dp.shape[3]
    channels = dh.shape[3]
    for n in prange(batch):
        row = np.empty(width, np.uint32)
        value = row.view(np.float32)
        dh[n] = 0.0
        for i in range(oh):
            for j in range(ow):
                for t in range(width):
                    row[t] = np.uint32(dp[n, i, j, t]) << _SIXTEEN
                for k in range(9):
                    kr, ks = k // 3, k % 3
                    base = k * channels
                    for c in range(channels):
                        dh[n, i + kr, j + ks, c] += value[base + c]


@njit(parallel=True, cache=True)
def pool_relu_forward(z, out, arg):  # pragma: no cover - compiled
    batch, oh, ow, channels = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
    for n in prange(batch):
        window = np.empty((4, channels), np.uint32)
        value = window.view(np.float32)
        for i in range(oh):
            for j in range(ow):
                for q in range(4):
                    for c in range(channels):
                        window[q, c] = np.uint32(z[n, 2 * i + q // 2, 2 * j + q % 2, c]) << _SIXTEEN
                for c in range(channels):
                    best, winner = value[0, c], 0
                    for q in range(1, 4):           # strict >: the first maximum wins, as in torch
                        if value[q, c] > best:
                            best, winner = value[q, c], q
                    if best > 0:
                        out[n, i, j, c] = np.uint16(window[winner, c] >> _SIXTEEN)
                        arg[n, i, j, c] = winner
                    else:                           # relu: no gradient flows back through here
                        out[n, i, j, c] = 0
                        arg[n, i, j, c] = -1


@njit(parallel=True, cache=True)
def pool_relu_backward(g, arg, dz, dbias):  # pragma: no cover - compiled
    batch, oh, ow, channels = g.shape[0], g.shape[1], g.shape[2], g.shape[3]
    for n in prange(batch):
        grad = np.empty(channels, np.float32)
        grad_bits = grad.view(np.uint32)
        dbias[n] = 0.0
        for i in range(oh):
            for j in range(ow):
                for c in range(channels):
                    grad[c] = g[n, i, j, c]
                    if arg[n, i, j, c] >= 0:
                        dbias[n, c] += grad[c]
                for c in range(channels):           # float32 -> bf16
                    grad_bits[c] = _bf16_bits(grad_bits[c])
                for q in range(4):
                    r, s = 2 * i + q // 2, 2 * j + q % 2
                    for c in range(channels):
                        dz[n, r, s, c] = np.uint16(grad_bits[c]) if arg[n, i, j, c] == q else 0


@njit(inline="always")
def max_relu(y0, y1, y2, y3, bias):  # pragma: no cover - compiled
    """relu(max(y0..y3) + bias) of a 2x2 pool window and which input won: 0..3 (strict >: the
    first maximum, as torch), or -1 where the ReLU cut and no gradient flows back. The bias is
    added after the max: max(v + b) = max(v) + b."""
    best, winner = y0, np.int8(0)
    if y1 > best:
        best, winner = y1, np.int8(1)
    if y2 > best:
        best, winner = y2, np.int8(2)
    if y3 > best:
        best, winner = y3, np.int8(3)
    best += bias
    if best > 0:
        return best, winner
    return best - best, np.int8(-1)                # 0.0 of best's type


@njit(inline="always")
def _window(x, n, r, s):  # pragma: no cover - compiled
    """The 3x3 pixels of image ``n`` with top-left corner (r, s), row by row."""
    return (x[n, r, s], x[n, r, s + 1], x[n, r, s + 2],
            x[n, r + 1, s], x[n, r + 1, s + 1], x[n, r + 1, s + 2],
            x[n, r + 2, s], x[n, r + 2, s + 1], x[n, r + 2, s + 2])


@njit(inline="always")
def _dot9(t, w, c):  # pragma: no cover - compiled
    return (t[0] * w[0, c] + t[1] * w[1, c] + t[2] * w[2, c] + t[3] * w[3, c] + t[4] * w[4, c]
            + t[5] * w[5, c] + t[6] * w[6, c] + t[7] * w[7, c] + t[8] * w[8, c])


@njit(parallel=True, fastmath=True, cache=True)
def first_block_forward(x, w, b, out, arg):  # pragma: no cover - compiled
    # x (B,28,28) f32 images, w (9,C) f32, b (C,) f32 -> out (B,13,13,C) bf16 bits, arg as above.
    # Per pooled pixel: the four windows' taps stay in registers, and each channel's four conv
    # outputs are compared as they are made (max(v + b) = max(v) + b).
    batch, oh, ow, channels = out.shape[0], out.shape[1], out.shape[2], w.shape[1]
    for n in prange(batch):
        best_bits = np.empty(channels, np.uint32)
        best_value = best_bits.view(np.float32)
        for i in range(oh):
            for j in range(ow):
                t0 = _window(x, n, 2 * i, 2 * j)
                t1 = _window(x, n, 2 * i, 2 * j + 1)
                t2 = _window(x, n, 2 * i + 1, 2 * j)
                t3 = _window(x, n, 2 * i + 1, 2 * j + 1)
                for c in range(channels):
                    best_value[c], arg[n, i, j, c] = max_relu(
                        _dot9(t0, w, c), _dot9(t1, w, c), _dot9(t2, w, c), _dot9(t3, w, c), b[c])
                for c in range(channels):           # float32 -> bf16
                    out[n, i, j, c] = _bf16_bits(best_bits[c])


@njit(parallel=True, fastmath=True, cache=True)
def first_block_backward(x, g, arg, dw, db):  # pragma: no cover - compiled
    # g (B,13,13,C) f32 -> dw (B,9,C), db (B,C): per-image sums (the caller adds them up)
    batch, oh, ow, channels = g.shape[0], g.shape[1], g.shape[2], g.shape[3]
    for n in prange(batch):
        dwn, dbn = dw[n], db[n]
        dwn[:] = 0.0
        dbn[:] = 0.0
        for i in range(oh):
            for j in range(ow):
                t0 = _window(x, n, 2 * i, 2 * j)
                t1 = _window(x, n, 2 * i, 2 * j + 1)
                t2 = _window(x, n, 2 * i + 1, 2 * j)
                t3 = _window(x, n, 2 * i + 1, 2 * j + 1)
                for c in range(channels):           # the gradient goes to the window that won
                    a = arg[n, i, j, c]
                    v = g[n, i, j, c] if a >= 0 else np.float32(0.0)
                    g0 = v if a == 0 else np.float32(0.0)
                    g1 = v if a == 1 else np.float32(0.0)
                    g2 = v if a == 2 else np.float32(0.0)
                    g3 = v if a == 3 else np.float32(0.0)
                    dbn[c] += v
                    for k in range(9):
                        dwn[k, c] += g0 * t0[k] + g1 * t1[k] + g2 * t2[k] + g3 * t3[k]


@njit(parallel=True, fastmath=True, cache=True)
def first_block_forward_f32(x, w, b, out, arg):  # pragma: no cover - compiled
    # first_block_forward with a float32 out (B,13,13,C)
    batch, oh, ow, channels = out.shape[0], out.shape[1], out.shape[2], w.shape[1]
    for n in prange(batch):
        for i in range(oh):
            for j in range(ow):
                t0 = _window(x, n, 2 * i, 2 * j)
                t1 = _window(x, n, 2 * i, 2 * j + 1)
                t2 = _window(x, n, 2 * i + 1, 2 * j)
                t3 = _window(x, n, 2 * i + 1, 2 * j + 1)
                for c in range(channels):
                    out[n, i, j, c], arg[n, i, j, c] = max_relu(
                        _dot9(t0, w, c), _dot9(t1, w, c), _dot9(t2, w, c), _dot9(t3, w, c), b[c])


@njit(parallel=True, fastmath=True, cache=True)
def col2im3_f32(dp, dh):  # pragma: no cover - compiled
    batch, oh, ow = dp.shape[0], dp.shape[1], dp.shape[2]
    channels = dh.shape[3]
    for n in prange(batch):
        dh[n] = 0.0
        for i in range(oh):
            for j in range(ow):
                for k in range(9):
                    kr, ks = k // 3, k % 3
                    base = k * channels
                    for c in range(channels):
                        dh[n, i + kr, j + ks, c] += dp[n, i, j, base + c]


@njit(parallel=True, cache=True)
def pool_relu_forward_f32(z, out, arg):  # pragma: no cover - compiled
    batch, oh, ow, channels = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
    zero = np.float32(0.0)                          # the bias is in z already (addmm's)
    for n in prange(batch):
        for i in range(oh):
            for j in range(ow):
                for c in range(channels):
                    out[n, i, j, c], arg[n, i, j, c] = max_relu(
                        z[n, 2 * i, 2 * j, c], z[n, 2 * i, 2 * j + 1, c],
                        z[n, 2 * i + 1, 2 * j, c], z[n, 2 * i + 1, 2 * j + 1, c], zero)


@njit(parallel=True, cache=True)
def pool_relu_backward_f32(g, arg, dz, dbias):  # pragma: no cover - compiled
    batch, oh, ow, channels = g.shape[0], g.shape[1], g.shape[2], g.shape[3]
    zero = np.float32(0.0)
    for n in prange(batch):
        dbias[n] = 0.0
        for i in range(oh):
            for j in range(ow):
                for c in range(channels):
                    if arg[n, i, j, c] >= 0:
                        dbias[n, c] += g[n, i, j, c]
                for q in range(4):
                    r, s = 2 * i + q // 2, 2 * j + q % 2
                    for c in range(channels):
                        dz[n, r, s, c] = g[n, i, j, c] if arg[n, i, j, c] == q else zero


class Set(NamedTuple):
    """The kernels that differ between the precisions."""

    first_block_forward: Any
    pool_relu_forward: Any
    pool_relu_backward: Any
    col2im3: Any


BF16 = Set(first_block_forward, pool_relu_forward, pool_relu_backward, col2im3)
FP32 = Set(first_block_forward_f32, pool_relu_forward_f32, pool_relu_backward_f32, col2im3_f32)
