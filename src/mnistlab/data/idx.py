"""The IDX file format of MNIST: a big-endian header, then raw uint8 bytes.

Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one
big-endian uint32 per dimension. Images are ``0x00000803`` with dims (N, 28, 28); labels are
``0x00000801`` with dim (N,).
"""

from __future__ import annotations

import struct

import numpy as np

UBYTE = 0x08


class IdxError(ValueError):
    """The bytes are not a well-formed IDX uint8 array."""


def encode(array: np.ndarray) -> bytes:
    """Encode a uint8 array of 1 to 255 dimensions as IDX bytes."""
    if array.dtype != np.uint8:
        raise IdxError(f"IDX encoding here supports uint8 only, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise IdxError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    header = struct.pack(">BBBB", 0, 0, UBYTE, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def decode(data: bytes, *, ndim: int | None = None) -> np.ndarray:
    """Decode IDX bytes into a uint8 array, checking magic, dimensions and length exactly."""
    if len(data) < 4:
        raise IdxError(f"too short for an IDX header ({len(data)} bytes)")
    zero1, zero2, dtype, nd = struct.unpack(">BBBB", data[:4])
    if zero1 or zero2 or dtype != UBYTE:
        want = f"0x{0x800 + ndim:08x}" if ndim else "0x000008NN"
        raise IdxError(f"bad magic number 0x{int.from_bytes(data[:4], 'big'):08x} "
                       f"(expected {want}): not an IDX uint8 file")
    if ndim is not None and nd != ndim:
        raise IdxError(f"expected {ndim} dimensions, found {nd} (magic 0x{0x800 + nd:08x})")
    if nd == 0:
        raise IdxError("an IDX array needs at least one dimension")
    head = 4 + 4 * nd
    if len(data) < head:
        raise IdxError(f"header truncated: {len(data)} bytes, need {head}")
    shape = struct.unpack(f">{nd}I", data[4:head])
    expected = head + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise IdxError(f"size {len(data)} bytes does not match dims {shape} "
                       f"(expected {expected} bytes): truncated or padded")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(shape)


def nbytes(shape: tuple[int, ...]) -> int:
    """Size in bytes of the IDX uint8 file holding an array of ``shape``."""
    return 4 + 4 * len(shape) + int(np.prod(shape, dtype=np.int64))
