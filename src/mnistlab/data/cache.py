"""The verified on-disk cache: ``<data_dir>/<dataset>/`` holding raw IDX files.

A file is published in the cache only after its bytes were hashed against the pinned SHA-256
(write to a temp file beside it, fsync, verify, rename). ``manifest.json`` records the cache
layout version, so a cache written by an incompatible layout is detected, not misread.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from mnistlab import atomic, paths
from mnistlab.data import idx
from mnistlab.data.checksums import DATASETS, FILES, DatasetSpec
from mnistlab.errors import UserError

LAYOUT_VERSION = 1
MANIFEST = "manifest.json"


def spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}") from None


def dataset_dir(name: str) -> Path:
    return paths.data_dir() / name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refetch_hint(name: str) -> str:
    return f"run `mnistlab data fetch --dataset {name} --force`"


def check_manifest(name: str) -> None:
    """Raise if the cache folder was written by a layout this version does not understand."""
    manifest = dataset_dir(name) / MANIFEST
    if not manifest.exists():
        return
    try:
        version = json.loads(manifest.read_text())["layout_version"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{manifest} is unreadable; {refetch_hint(name)}") from None
    if version != LAYOUT_VERSION:
        raise UserError(f"{manifest} has cache layout {version}, this mnistlab reads layout "
                        f"{LAYOUT_VERSION}; {refetch_hint(name)}")


def publish(name: str, arrays: dict[str, np.ndarray], source: str) -> list[Path]:
    """Encode, verify and atomically write each array; then write the manifest."""
    ds = spec(name)
    folder = dataset_dir(name)
    written = []
    for fname, array in arrays.items():
        data = idx.encode(array)
        verify_bytes(ds, fname, data)
        atomic.write_bytes(folder / fname, data)
        written.append(folder / fname)
    atomic.write_json(folder / MANIFEST, {"layout_version": LAYOUT_VERSION, "dataset": name,
                                          "source": source,
                                          "files": {f: sha256(idx.encode(a)) for f, a in arrays.items()}})
    return written


def verify_bytes(ds: DatasetSpec, fname: str, data: bytes) -> None:
    """Check one raw IDX file: the pinned hash where there is one, else structure."""
    expected = ds.raw_sha256.get(fname)
    if expected is not None:
        got = sha256(data)
        if got != expected:
            raise UserError(f"{fname}: SHA-256 {got[:16]}... does not match the canonical "
                            f"{expected[:16]}...; {refetch_hint(ds.name)}")
    array = idx.decode(data, ndim=3 if "images" in fname else 1)
    split = "train" if fname.startswith("train") else "test"
    if len(array) != ds.counts[split]:
        raise UserError(f"{fname}: {len(array)} items, expected {ds.counts[split]}; "
                        f"{refetch_hint(ds.name)}")


def is_complete(name: str) -> bool:
    folder = dataset_dir(name)
    return (folder / MANIFEST).exists() and all((folder / f).exists() for f in FILES.values())


def read_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and verify one split from the cache: (images uint8 [N,28,28], labels uint8 [N])."""
    ds = spec(name)
    check_manifest(name)
    folder = dataset_dir(name)
    out = []
    for kind in ("images", "labels"):
        fname = FILES[(split, kind)]
        path = folder / fname
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{path} is missing; run `mnistlab data fetch --dataset {name}`") from None
        try:
            verify_bytes(ds, fname, data)
            out.append(idx.decode(data, ndim=3 if kind == "images" else 1))
        except idx.IdxError as exc:
            raise UserError(f"{path}: {exc}; {refetch_hint(name)}") from None
    images, labels = out
    if len(images) != len(labels):
        raise UserError(f"{name} {split}: {len(images)} images but {len(labels)} labels; "
                        f"{refetch_hint(name)}")
    return images, labels
