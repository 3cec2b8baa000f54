"""A restricted unpickler: numpy array reconstruction and nothing else.

The registry carrier's ``mnist.pkl.gz`` is a third-party pickle; a plain ``pickle.load`` would
run whatever callable it names. This one resolves only the handful of globals numpy needs to
rebuild an ``ndarray`` and refuses every other, so a hostile pickle fails instead of running.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # Protocol 5 rebuilds arrays from a buffer.
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    # Protocol 2 pickles written by Python 3 carry bytes as _codecs.encode(str, "latin1"):
    # a pure function (the codec is looked up inside the encodings package only).
    ("_codecs", "encode"),
}


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asked for a global outside the allow-list."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise RefusedPickle(f"refused to load global {module}.{name} from an untrusted pickle")
        return super().find_class(module, name)


def loads(data: bytes) -> Any:
    """Unpickle ``data`` (protocol 2 Python-2 pickles included) allowing numpy arrays only."""
    return NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
