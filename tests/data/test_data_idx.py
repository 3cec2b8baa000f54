"""The IDX codec: exact round trips, and every malformed input refused."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from mnistlab.data import idx

uint8_arrays = arrays(np.uint8, array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6))


@settings(max_examples=200, deadline=None)
@given(uint8_arrays)
def test_round_trip(array: np.ndarray) -> None:
    data = idx.encode(array)
    assert len(data) == idx.nbytes(array.shape)
    back = idx.decode(data, ndim=array.ndim)
    assert back.dtype == np.uint8
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@settings(max_examples=100, deadline=None)
@given(uint8_arrays.filter(lambda a: a.size > 0), st.data())
def test_truncated_or_padded_is_refused(array: np.ndarray, data: st.DataObject) -> None:
    encoded = idx.encode(array)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    with pytest.raises(idx.IdxError):
        idx.decode(encoded[:cut], ndim=array.ndim)
    pad = data.draw(st.binary(min_size=1, max_size=8))
    with pytest.raises(idx.IdxError, match="truncated or padded"):
        idx.decode(encoded + pad, ndim=array.ndim)


def test_header_is_big_endian_mnist_layout() -> None:
    images = np.zeros((2, 28, 28), np.uint8)
    assert idx.encode(images)[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")
    assert idx.encode(np.array([7, 2], np.uint8)) == bytes.fromhex("00000801 00000002 0702")


@pytest.mark.parametrize("magic", ["00000c03", "01000803", "00000802"])
def test_wrong_magic_is_refused(magic: str) -> None:
    data = bytes.fromhex(magic) + idx.encode(np.zeros((1, 2, 2), np.uint8))[4:]
    with pytest.raises(idx.IdxError, match=r"magic|dimensions"):
        idx.decode(data, ndim=3)


def test_encode_refuses_other_dtypes() -> None:
    with pytest.raises(idx.IdxError, match="uint8"):
        idx.encode(np.zeros(3, np.float32))
