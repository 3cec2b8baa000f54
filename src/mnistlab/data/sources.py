"""Local sources: a folder of IDX files (raw or ``.gz``), Keras's ``mnist.npz``, and the
folder a distribution package installs (Debian's ``dataset-fashion-mnist``).

Each source returns the four raw IDX files as bytes, keyed by canonical name; the cache
checks them (structure and pinned SHA-256) before publishing anything.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np

from mnistlab.data import cache, idx
from mnistlab.data.specs import DATASETS, KERAS_MNIST_NPZ, spec
from mnistlab.errors import UserError

# Sub-folders where the files may sit: the mirrors' flat layout, torchvision's <Name>/raw.
LAYOUTS = (".", "raw", *(f"{ds.torchvision_folder}/raw" for ds in DATASETS.values()
                         if ds.torchvision_folder))
GZIP_MAGIC = b"\x1f\x8b"
KERAS_NPZ = KERAS_MNIST_NPZ.file   # the npz file name the hints give and a folder may hold
# Keras's array names, by (split, kind)
NPZ_KEYS = {("train", "images"): "x_train", ("train", "labels"): "y_train",
            ("test", "images"): "x_test", ("test", "labels"): "y_test"}


def gunzip(data: bytes, max_bytes: int) -> bytes:
    """Decompress ``data``, refusing more than ``max_bytes`` of output (a gzip bomb, the wrong
    file) and raising ``cache.BadFile`` on a corrupt or truncated stream."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            out = f.read(max_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise cache.BadFile(f"corrupt or truncated gzip data ({exc})") from None
    if len(out) > max_bytes:
        raise cache.BadFile(f"decompresses to more than the expected {max_bytes} bytes")
    return out


def read_idx_file(path: Path, size: int) -> bytes:
    """A raw IDX file's bytes (``size`` expected), decompressing when the file is gzip,
    whatever its name. A raw file of the wrong size is refused before it is read."""
    with path.open("rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    if gzipped:
        return gunzip(path.read_bytes(), size)
    actual = path.stat().st_size
    if actual != size:
        raise cache.BadFile(f"size {actual} bytes, expected {size}: truncated or padded")
    return path.read_bytes()


def _candidates(root: Path, fname: str) -> list[Path]:
    # "train-images.idx3-ubyte" is how some archives name the same file.
    names = (fname, fname + ".gz", fname.replace("-idx", ".idx"),
             fname.replace("-idx", ".idx") + ".gz")
    return [root / sub / n for sub in LAYOUTS for n in names]


def find_idx_file(root: Path, fname: str) -> Path | None:
    return next((p for p in _candidates(root, fname) if p.is_file()), None)


def from_folder(name: str, root: Path) -> dict[str, bytes]:
    """The four raw IDX files from ``root`` (flat, ``raw/`` or ``MNIST/raw`` layout, raw or
    ``.gz``), or from ``root`` being / holding Keras's ``mnist.npz``."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"{root} does not exist; pass a folder holding the four MNIST IDX files "
                        f"(raw or .gz) or Keras's {KERAS_NPZ}")
    if root.is_file():
        if root.suffix == ".npz":
            return from_npz(name, root)
        raise UserError(f"{root} is a file; pass the folder holding the four IDX files "
                        f"(raw or .gz), or Keras's {KERAS_NPZ}")
    ds = spec(name)
    found = {fname: find_idx_file(root, fname) for fname in ds.file_names}
    if not any(found.values()) and (root / KERAS_NPZ).is_file():
        return from_npz(name, root / KERAS_NPZ)
    missing = [f for f, p in found.items() if p is None]
    if missing:
        where = ", ".join(str(root / sub) for sub in LAYOUTS if (root / sub).is_dir())
        raise UserError(f"{', '.join(missing)} (raw or .gz) not found in {where}; expected the "
                        f"four canonical {name} IDX files (mirrors' or torchvision's MNIST/raw "
                        f"layout) or Keras's {KERAS_NPZ}")
    files = {}
    for fname, path in found.items():
        try:
            files[fname] = read_idx_file(path, cache.expected_nbytes(ds, fname))
        except cache.BadFile as exc:
            raise UserError(f"{path}: {exc}; replace it with the canonical file") from None
        except OSError as exc:
            raise UserError(f"{path} cannot be read ({exc.strerror})") from None
    return files


def from_npz(name: str, path: Path) -> dict[str, bytes]:
    """Keras's ``mnist.npz`` (x_train, y_train, x_test, y_test), re-encoded as IDX bytes.

    Loaded with ``allow_pickle=False``; the IDX hashes decide, whatever the npz's own hash.
    """
    ds = spec(name)
    if ds.keras_npz is None:
        accepted = ", ".join(n for n, d in DATASETS.items() if d.keras_npz is not None)
        raise UserError(f"{path}: an npz file is accepted for {accepted} only (Keras's "
                        f"{KERAS_NPZ}); pass the folder of {name} IDX files instead")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {ds.file_name(split, kind): npz[key]
                      for (split, kind), key in NPZ_KEYS.items()}
    except KeyError as exc:
        raise UserError(f"{path}: no array {exc} inside; expected Keras's {KERAS_NPZ} with "
                        "x_train, y_train, x_test, y_test") from None
    except (OSError, ValueError, EOFError) as exc:
        raise UserError(f"{path} is not a readable npz file ({exc}); expected Keras's "
                        f"{KERAS_NPZ}") from None
    files = {}
    for fname, array in arrays.items():
        if array.dtype != np.uint8:
            raise UserError(f"{path}: {fname} is {array.dtype}, expected uint8 as in Keras's "
                            f"{ds.keras_npz.file} (SHA-256 {ds.keras_npz.sha256[:16]}...)")
        files[fname] = idx.encode(array)
    return files


def from_system(name: str) -> tuple[dict[str, bytes], str]:
    """The files a distribution package installed (Debian: ``dataset-fashion-mnist``), and a
    description of where they came from."""
    system = spec(name).system
    if system is None:
        raise UserError(f"{name} has no system package source; use the default source, "
                        "--source mirror or --from DIR")
    folder, package = system.folder, system.package
    if not Path(folder).is_dir():
        raise UserError(f"{folder} not found: install Debian's package {package} "
                        f"(`sudo apt-get install {package}`), or run `mnistlab data fetch "
                        f"--dataset {name} --from DIR` with the four {name} IDX files")
    return from_folder(name, Path(folder)), f"{folder} (Debian package {package})"
