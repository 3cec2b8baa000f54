"""Winograd F(2x2, 3x3) for the fused engine's later conv blocks, fused with max-pool + ReLU.

A 3x3 valid convolution whose 2x2 output tiles are exactly the 2x2 max-pool windows that read
them (the engine computes only the even part of each conv output) is, per tile,

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A        d: the 4x4 input patch, g: the 3x3 kernel

(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). The 16 positions
of the 4x4 transformed tile are 16 independent matmuls over (tiles x in-channels) x
(in-channels x out-channels): 16 multiply-adds per 4 outputs instead of 36, so the three
matmuls of a block (forward, input gradient, weight gradient) do 2.25x less arithmetic than
im2col's. Tensors are NHWC; bf16 values travel as their 16-bit patterns, as in ``kernels``.

    input_transform(h, v)            h (B,S,S,C) -> v (16,B,T,T,C): B^T d B per tile
    output_pool_relu(m, b, out, arg) m (16,B,T,T,O) -> relu(max over the tile of
                                     A^T m A + b): out (B,T,T,O), arg the winner 0..3 or -1
    output_backward(g, arg, dm, db)  the gradient of that: dm = A dY A^T, per-image bias sums
    input_backward(dv, dh)           the gradient of input_transform (bf16 in, float32 out)
    weight_transform(w, u)           w (O,3,3,I) float32 -> u (16,O,I) bf16: G g G^T
    weight_gradient(du, dw)          du (16,O,I) bf16 -> dw (O,3,3,I) float32: its gradient

Tile (i, j) of image n holds outputs (2i..2i+1, 2j..2j+1); a transformed position is
``k = 4*r + s``. Viewed as (16, B*T*T, C) matrices, v and m are the matmuls' operands. Each
kernel parallelises over images (or output channels); every output element is written by one
thread, so results do not depend on the thread count. The inner loops run over channels on
plain float32 rows, so that they vectorise: this halved the transforms' time here.

Each kernel takes its transformed operands (v, m, u and their gradients) in bf16 bits or in
float32, and is compiled for each: the step in fp32 (CPUs without native bf16), where
Winograd's extra rounding is float32's, not bf16's. Rows are read and written through
``load_row``, ``load_view`` and ``store_row``, which widen and narrow bf16 and copy float32;
``output_backward_f32`` is output_backward for float32.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from mnistlab.fused.kernels import _bf16_bits, max_relu

_SIXTEEN = np.uint32(16)


@njit(inline="always")
def _bt(x0, x1, x2, x3):  # pragma: no cover - compiled
    """B^T x for one row or column of four."""
    return x0 - x2, x1 + x2, x2 - x1, x1 - x3


@njit(inline="always")
def _b(x0, x1, x2, x3):  # pragma: no cover - compiled
    """B x: the adjoint of ``_bt``."""
    return x0, x1 - x2 + x3, x2 + x1 - x0, -x3


@njit(inline="always")
def _at(x0, x1, x2, x3):  # pragma: no cover - compiled
    """A^T x: four transformed values to two outputs."""
    return x0 + x1 + x2, x1 - x2 - x3


@njit(inline="always")
def _g(x0, x1, x2):  # pragma: no cover - compiled
    """G x: three kernel taps to four transformed values."""
    return x0, 0.5 * (x0 + x1 + x2), 0.5 * (x0 - x1 + x2), x2


@njit(inline="always")
def _gt(x0, x1, x2, x3):  # pragma: no cover - compiled
    """G^T x: the adjoint of ``_g``."""
    return x0 + 0.5 * (x1 + x2), 0.5 * (x1 - x2), 0.5 * (x1 + x2) + x3


@njit(inline="always")
def _put4(o, k, c, x):  # pragma: no cover - compiled
    o[k, c], o[k + 1, c], o[k + 2, c], o[k + 3, c] = x[0], x[1], x[2], x[3]


@njit(inline="always")
def _widen_row(src, dst, bits, value):  # pragma: no cover - compiled
    """dst[c] = bf16 src[c] as float32 (``bits`` and ``value``: one scratch row, two views).
    Two plain loops rather than one through a view, so both vectorise."""
    for c in range(dst.shape[0]):
        bits[c] = np.uint32(src[c]) << _SIXTEEN
    for c in range(dst.shape[0]):
        dst[c] = value[c]


@njit(inline="always")
def _narrow_row(src, dst):  # pragma: no cover - compiled
    """dst[c] = the bf16 nearest the float32 whose bits are src[c]."""
    for c in range(dst.shape[0]):
        dst[c] = _bf16_bits(src[c])


def load_row(src, dst, bits, value):  # pragma: no cover - compiled only (overload below)
    """dst[c] = src[c] as float32: widened from bf16 bits (through ``bits`` and ``value``, one
    scratch row and its float32 view) or copied from float32."""
    raise NotImplementedError("compiled by Numba only")


@overload(load_row, inline="always")
def _load_row(src, dst, bits, value):  # pragma: no cover - compiled
    if src.dtype == types.uint16:
        return lambda src, dst, bits, value: _widen_row(src, dst, bits, value)

    def copy(src, dst, bits, value):
        for c in range(dst.shape[0]):
            dst[c] = src[c]
    return copy


def load_view(src, bits, value):  # pragma: no cover - compiled only (overload below)
    """One float32 row with two views (``bits``, ``value``) = src: bf16 shifted into its bits
    in one loop (what these kernels did before float32), or float32 copied."""
    raise NotImplementedError("compiled by Numba only")


@overload(load_view, inline="always")
def _load_view(src, bits, value):  # pragma: no cover - compiled
    if src.dtype == types.uint16:
        def widen(src, bits, value):
            for c in range(bits.shape[0]):
                bits[c] = np.uint32(src[c]) << _SIXTEEN
        return widen

    def copy(src, bits, value):
        for c in range(value.shape[0]):
            value[c] = src[c]
    return copy


def store_row(bits, value, dst):  # pragma: no cover - compiled only (overload below)
    """dst[c] = one float32 row (``bits`` and ``value``: its two views), narrowed to bf16 bits
    or copied as float32, as dst holds."""
    raise NotImplementedError("compiled by Numba only")


@overload(store_row, inline="always")
def _store_row(bits, value, dst):  # pragma: no cover - compiled
    if dst.dtype == types.uint16:
        return lambda bits, value, dst: _narrow_row(bits, dst)

    def copy(bits, value, dst):
        for c in range(dst.shape[0]):
            dst[c] = value[c]
    return copy


@njit(inline="always")
def _a(x, p):  # pragma: no cover - compiled
    """A^T[x][p], x in {0, 1}: the rows (1, 1, 1, 0) and (0, 1, -1, -1), branch-free in x."""
    if p == 0:
        return 1 - x
    if p == 1:
        return np.int32(1)
    if p == 2:
        return 1 - 2 * x
    return -x


@njit(parallel=True, fastmath=True, cache=True)
def input_transform(h, v):  # pragma: no cover - compiled
    batch, tiles, channels = v.shape[1], v.shape[2], v.shape[4]
    for n in prange(batch):
        d = np.empty((16, channels), np.float32)
        out = np.empty((16, channels), np.uint32)
        o = out.view(np.float32)
        bits = np.empty(channels, np.uint32)
        value = bits.view(np.float32)
        for i in range(tiles):
            for j in range(tiles):
                for r in range(4):
                    for s in range(4):
                        load_row(h[n, 2 * i + r, 2 * j + s], d[4 * r + s], bits, value)
                for s in range(4):                 # columns: B^T d, in place
                    for c in range(channels):
                        d[s, c], d[4 + s, c], d[8 + s, c], d[12 + s, c] = _bt(
                            d[s, c], d[4 + s, c], d[8 + s, c], d[12 + s, c])
                for p in range(4):                 # rows: (.) B
                    for c in range(channels):
                        _put4(o, 4 * p, c, _bt(d[4 * p, c], d[4 * p + 1, c], d[4 * p + 2, c],
                                               d[4 * p + 3, c]))
                for k in range(16):
                    store_row(out[k], o[k], v[k, n, i, j])


@njit(parallel=True, fastmath=True, cache=True)
def output_pool_relu(m, bias, out, arg):  # pragma: no cover - compiled
    batch, tiles, channels = out.shape[0], out.shape[1], out.shape[3]
    for n in prange(batch):
        raw = np.empty((16, channels), np.uint32)
        x = raw.view(np.float32)
        best_bits = np.empty(channels, np.uint32)
        best_value = best_bits.view(np.float32)
        for i in range(tiles):
            for j in range(tiles):
                for k in range(16):
                    load_view(m[k, n, i, j], raw[k], x[k])
                for c in range(channels):
                    # columns: A^T m (2 x 4), then rows: (.) A (2 x 2)
                    c0 = _at(x[0, c], x[4, c], x[8, c], x[12, c])
                    c1 = _at(x[1, c], x[5, c], x[9, c], x[13, c])
                    c2 = _at(x[2, c], x[6, c], x[10, c], x[14, c])
                    c3 = _at(x[3, c], x[7, c], x[11, c], x[15, c])
                    y00, y01 = _at(c0[0], c1[0], c2[0], c3[0])
                    y10, y11 = _at(c0[1], c1[1], c2[1], c3[1])
                    best_value[c], arg[n, i, j, c] = max_relu(y00, y01, y10, y11, bias[c])
                store_row(best_bits, best_value, out[n, i, j])


@njit(parallel=True, fastmath=True, cache=True)
def output_backward(g, arg, dm, dbias):  # pragma: no cover - compiled
    # g (B,T,T,O) float32; dm (16,B,T,T,O) bf16 bits; dbias (B,O) per-image sums.
    # The tile's gradient is g at its winner (row a, column b: winner 2a + b) and 0 elsewhere,
    # so dm = A dY A^T has dm[4p + q] = g A^T[a][p] A^T[b][q]: each value is +-g or 0, exactly
    # the bf16 of g with its sign flipped or cleared.
    batch, tiles, channels = g.shape[0], g.shape[1], g.shape[3]
    for n in prange(batch):
        grad_bits = np.empty(channels, np.uint32)
        grad = grad_bits.view(np.float32)
        narrow = np.empty(channels, np.uint16)
        row_of = np.empty(channels, np.int32)
        column_of = np.empty(channels, np.int32)
        dbias[n] = 0.0
        for i in range(tiles):
            for j in range(tiles):
                for c in range(channels):
                    a = np.int32(arg[n, i, j, c])
                    value = g[n, i, j, c] if a >= 0 else np.float32(0.0)
                    grad[c] = value
                    dbias[n, c] += value
                    a = max(a, 0)                   # no winner: g is 0, any pattern will do
                    row_of[c], column_of[c] = a >> 1, a & 1
                _narrow_row(grad_bits, narrow)
                for p in range(4):
                    for q in range(4):
                        target = dm[4 * p + q, n, i, j]
                        for c in range(channels):
                            f = _a(row_of[c], p) * _a(column_of[c], q)
                            sign = np.uint16(0x8000) if f < 0 else np.uint16(0)
                            target[c] = (narrow[c] ^ sign) if f != 0 else np.uint16(0)


@njit(parallel=True, fastmath=True, cache=True)
def input_backward(dv, dh):  # pragma: no cover - compiled
    # dv (16,B,T,T,C) bf16 bits -> dh (B,S,S,C) float32: the adjoint of B^T d B, B dv B^T,
    # added into the tile's 4x4 patch (neighbouring tiles overlap by two rows or columns)
    batch, tiles, channels = dv.shape[1], dv.shape[2], dv.shape[4]
    for n in prange(batch):
        x = np.empty((16, channels), np.float32)
        bits = np.empty(channels, np.uint32)
        value = bits.view(np.float32)
        dh[n] = 0.0
        for i in range(tiles):
            for j in range(tiles):
                for k in range(16):
                    load_row(dv[k, n, i, j], x[k], bits, value)
                for p in range(4):                  # rows: (.) B^T, in place
                    for c in range(channels):
                        x[4 * p, c], x[4 * p + 1, c], x[4 * p + 2, c], x[4 * p + 3, c] = _b(
                            x[4 * p, c], x[4 * p + 1, c], x[4 * p + 2, c], x[4 * p + 3, c])
                for s in range(4):                  # columns: B (.), into the patch
                    r0, r1 = dh[n, 2 * i, 2 * j + s], dh[n, 2 * i + 1, 2 * j + s]
                    r2, r3 = dh[n, 2 * i + 2, 2 * j + s], dh[n, 2 * i + 3, 2 * j + s]
                    for c in range(channels):
                        e = _b(x[s, c], x[4 + s, c], x[8 + s, c], x[12 + s, c])
                        r0[c] += e[0]
                        r1[c] += e[1]
                        r2[c] += e[2]
                        r3[c] += e[3]


@njit(parallel=True, fastmath=True, cache=True)
def weight_transform(w, u):  # pragma: no cover - compiled
    # w (O,3,3,I) float32 -> u (16,O,I) bf16 bits: G g G^T, columns then rows
    outs, ins = w.shape[0], w.shape[3]
    for o in prange(outs):
        out = np.empty((16, ins), np.uint32)
        t = out.view(np.float32)
        for c in range(ins):
            p = _g(w[o, 0, 0, c], w[o, 1, 0, c], w[o, 2, 0, c])
            q = _g(w[o, 0, 1, c], w[o, 1, 1, c], w[o, 2, 1, c])
            r_ = _g(w[o, 0, 2, c], w[o, 1, 2, c], w[o, 2, 2, c])
            _put4(t, 0, c, _g(p[0], q[0], r_[0]))
            _put4(t, 4, c, _g(p[1], q[1], r_[1]))
            _put4(t, 8, c, _g(p[2], q[2], r_[2]))
            _put4(t, 12, c, _g(p[3], q[3], r_[3]))
        for k in range(16):
            store_row(out[k], t[k], u[k, o])


@njit(parallel=True, fastmath=True, cache=True)
def weight_gradient(du, dw):  # pragma: no cover - compiled
    # du (16,O,I) bf16 bits -> dw (O,3,3,I) float32: G^T du G, the adjoint of weight_transform
    outs, ins = du.shape[1], du.shape[2]
    for o in prange(outs):
        raw = np.empty((16, ins), np.uint32)
        x = raw.view(np.float32)
        for k in range(16):
            load_view(du[k, o], raw[k], x[k])
        for c in range(ins):
            e0 = _gt(x[0, c], x[1, c], x[2, c], x[3, c])
            e1 = _gt(x[4, c], x[5, c], x[6, c], x[7, c])
            e2 = _gt(x[8, c], x[9, c], x[10, c], x[11, c])
            e3 = _gt(x[12, c], x[13, c], x[14, c], x[15, c])
            p = _gt(e0[0], e1[0], e2[0], e3[0])         # column 0, rows 0..2
            q = _gt(e0[1], e1[1], e2[1], e3[1])
            r_ = _gt(e0[2], e1[2], e2[2], e3[2])
            dw[o, 0, 0, c], dw[o, 1, 0, c], dw[o, 2, 0, c] = p[0], p[1], p[2]
            dw[o, 0, 1, c], dw[o, 1, 1, c], dw[o, 2, 1, c] = q[0], q[1], q[2]
            dw[o, 0, 2, c], dw[o, 1, 2, c], dw[o, 2, 2, c] = r_[0], r_[1], r_[2]


@njit(parallel=True, fastmath=True, cache=True)
def output_backward_f32(g, arg, dm, dbias):  # pragma: no cover - compiled
    # output_backward with dm (16,B,T,T,O) float32: dm[4p + q] = g A^T[a][p] A^T[b][q], the
    # factors (each -1, 0 or 1) laid out per channel first, so that the rows vectorise
    batch, tiles, channels = g.shape[0], g.shape[1], g.shape[3]
    for n in prange(batch):
        grad = np.empty(channels, np.float32)
        rows = np.empty((4, channels), np.float32)
        columns = np.empty((4, channels), np.float32)
        dbias[n] = 0.0
        for i in range(tiles):
            for j in range(tiles):
                for c in range(channels):
                    a = np.int32(arg[n, i, j, c])
                    value = g[n, i, j, c] if a >= 0 else np.float32(0.0)
                    grad[c] = value
                    dbias[n, c] += value
                    a = max(a, 0)
                    for p in range(4):
                        rows[p, c] = _a(a >> 1, p)
                        columns[p, c] = _a(a & 1, p)
                for p in range(4):
                    for q in range(4):
                        target = dm[4 * p + q, n, i, j]
                        for c in range(channels):
                            target[c] = grad[c] * rows[p, c] * columns[q, c]
