"""The verified on-disk cache: ``<data_dir>/<dataset>/`` holding the four raw IDX files.

Every file is checked (structure, then the pinned SHA-256) before it is published, and again
whenever it is read: whichever source filled the cache, the same hashes decide. Publishing
writes each file to a temp file beside it, fsyncs and renames it, and writes ``manifest.json``
last, so an interrupted or failed fetch never leaves a cache that a later run accepts.
``manifest.json`` also records the layout version: a cache written by another layout is
detected, not misread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab import atomic, paths
from mnistlab.data import idx
from mnistlab.data.specs import IMAGE_SHAPE, KINDS, SPLITS, DatasetSpec, spec
from mnistlab.errors import UserError

LAYOUT_VERSION = 1
MANIFEST = "manifest.json"


class BadFile(ValueError):
    """One IDX file failed a check; the message says what was expected (no path, no advice)."""


def dataset_dir(name: str) -> Path:
    return paths.data_dir() / name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refetch_hint(name: str) -> str:
    return f"run `mnistlab data fetch --dataset {name} --force`"


def expected_nbytes(ds: DatasetSpec, fname: str) -> int:
    split, kind = ds.split_kind(fname)
    n = ds.counts[split]
    return idx.nbytes((n, *IMAGE_SHAPE) if kind == "images" else (n,))


def check_bytes(ds: DatasetSpec, fname: str, data: bytes) -> np.ndarray:
    """Decode one raw IDX file and check it: magic, dims, count, label range, then SHA-256.

    Returns the decoded uint8 array; raises ``BadFile`` saying what was wrong and expected.
    """
    split, kind = ds.split_kind(fname)
    n = ds.counts[split]
    try:
        array = idx.decode(data, ndim=3 if kind == "images" else 1)
    except idx.IdxError as exc:
        raise BadFile(str(exc)) from None
    want = (n, *IMAGE_SHAPE) if kind == "images" else (n,)
    if array.shape != want:
        raise BadFile(f"dims {array.shape}, expected {want}")
    if kind == "labels" and len(array) and int(array.max()) >= ds.num_classes:
        raise BadFile(f"label {int(array.max())} out of range, expected 0-{ds.num_classes - 1}")
    got = sha256(data)
    if got != ds.raw_sha256[fname]:
        raise BadFile(f"SHA-256 {got[:16]}... does not match the canonical "
                      f"{ds.raw_sha256[fname][:16]}...")
    return array


def publish(name: str, files: dict[str, bytes], *, source: str, origin: str) -> list[Path]:
    """Check all four raw IDX files, then write them atomically, then the manifest.

    Nothing is written unless every file passes, so a bad source changes nothing.
    """
    ds = spec(name)
    missing = [f for f in ds.file_names if f not in files]
    if missing:
        raise UserError(f"{origin}: {', '.join(missing)} missing; "
                        "expected the four canonical IDX files")
    for fname in ds.file_names:
        try:
            check_bytes(ds, fname, files[fname])
        except BadFile as exc:
            raise UserError(f"{fname} from {origin}: {exc}; not the canonical {name} file "
                            "(corrupt, truncated or another dataset): replace it, or run "
                            f"`mnistlab data fetch --dataset {name} --force` (default source); "
                            "the cache was not changed") from None
    folder = dataset_dir(name)
    written = []
    # Each file is replaced atomically by bytes that passed the checks, and the manifest comes
    # last: a failure part-way leaves canonical files and no new manifest, never a bad file.
    with _cache_writes(folder):
        for fname in ds.file_names:
            _write_verified(folder / fname, files[fname], ds.raw_sha256[fname])
            written.append(folder / fname)
        atomic.write_json(folder / MANIFEST, {
            "layout_version": LAYOUT_VERSION,
            "dataset": name,
            "source": source,
            "origin": origin,
            "fetched_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "files": ds.raw_sha256,
        })
    return written


def _write_verified(path: Path, data: bytes, expected_sha256: str) -> None:
    """Write to a temp file beside ``path``, fsync, re-read and hash it, then rename."""
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        got = sha256(tmp.read_bytes())
        if got != expected_sha256:  # the bytes on disk are not the bytes we checked
            raise UserError(f"{path}: wrote {len(data)} bytes but read back SHA-256 {got[:16]}..., "
                            f"expected {expected_sha256[:16]}...; check the disk, then "
                            f"{refetch_hint(path.parent.name)}")


def ready_for_writes(name: str) -> None:
    """UserError now if ``name``'s cache folder could not be created (MNISTLAB_DATA_DIR is a
    file, or read-only): before a download, not after it. Creates nothing."""
    folder = dataset_dir(name)
    existing = folder
    while not existing.exists():      # False too for a path below a regular file
        existing = existing.parent
    if not existing.is_dir():
        code = errno.ENOTDIR
    elif not os.access(existing, os.W_OK | os.X_OK):
        code = errno.EACCES
    else:
        return
    with _cache_writes(folder, create=False):
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def _cache_writes(folder: Path, *, create: bool = True) -> Iterator[None]:
    """Turn OS errors while writing the cache into one actionable line."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            what = "free some space"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            what = "make it writable"
        else:
            what = "fix the folder"
        raise UserError(f"cannot write the data cache {folder} ({exc.strerror}): {what}, "
                        "or set MNISTLAB_DATA_DIR to another folder") from None


def read_manifest(name: str) -> dict[str, Any] | None:
    """The manifest, or None when absent; raises if it is unreadable or another layout."""
    manifest = dataset_dir(name) / MANIFEST
    try:
        text = manifest.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:     # $MNISTLAB_DATA_DIR is a file, or the cache is unreadable
        raise UserError(f"{manifest} cannot be read ({exc.strerror or exc}); point "
                        "MNISTLAB_DATA_DIR at a folder you can read and write") from None
    try:
        data = json.loads(text)
        version = data["layout_version"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{manifest} is unreadable; {refetch_hint(name)}") from None
    if version != LAYOUT_VERSION:
        raise UserError(f"{manifest} has cache layout {version}, this mnistlab reads layout "
                        f"{LAYOUT_VERSION}; {refetch_hint(name)}")
    if data.get("dataset") != name:
        raise UserError(f"{manifest} describes {data.get('dataset')!r}, not {name!r}; "
                        f"{refetch_hint(name)}")
    return data


def check_manifest(name: str) -> None:
    read_manifest(name)


def is_complete(name: str) -> bool:
    """The manifest and the four files exist (their content is checked when read)."""
    folder = dataset_dir(name)
    return (folder / MANIFEST).exists() and all((folder / f).exists()
                                                 for f in spec(name).file_names)


def read_file(name: str, fname: str) -> np.ndarray:
    """Read and check one cached file; a missing or bad one raises a one-line UserError."""
    path = dataset_dir(name) / fname
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run `mnistlab data fetch --dataset {name}`") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not the file it should be; remove it and run "
                        f"`mnistlab data fetch --dataset {name}`") from None
    except OSError as exc:
        raise UserError(f"{path} cannot be read ({exc.strerror}); fix its permissions") from None
    try:
        return check_bytes(spec(name), fname, data)
    except BadFile as exc:
        raise UserError(f"{path}: {exc}; {refetch_hint(name)}") from None


def read_split(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and verify one split: (images uint8 [N, 28, 28], labels uint8 [N])."""
    ds = spec(name)
    if read_manifest(name) is None:
        raise UserError(f"{name} is not in the cache {dataset_dir(name)} (no {MANIFEST}); "
                        f"run `mnistlab data fetch --dataset {name}`")
    return (read_file(name, ds.file_name(split, "images")),
            read_file(name, ds.file_name(split, "labels")))


def verify(name: str) -> list[str]:
    """Re-hash the cached files; return one line per problem (empty when all is well)."""
    ds = spec(name)
    try:
        if read_manifest(name) is None:
            return [f"{dataset_dir(name) / MANIFEST} is missing: {name} is not fully fetched; "
                    f"run `mnistlab data fetch --dataset {name}`"]
    except UserError as exc:
        return [str(exc)]
    problems = []
    for fname in ds.file_names:
        try:
            read_file(name, fname)
        except UserError as exc:
            problems.append(str(exc))
    return problems


def info(name: str) -> dict[str, Any]:
    """Per split: count, per-class counts, and for each file its path, hash and verdict."""
    ds = spec(name)
    manifest = read_manifest(name)
    if manifest is None:
        # its files may be there without the record of where they came from (verify says so)
        what = (f"{name}'s {MANIFEST} is missing from the cache"
                if any(dataset_dir(name).glob("*-ubyte*"))
                else f"{name} is not in the cache")
        raise UserError(f"{what} ({dataset_dir(name)}); run `mnistlab data fetch --dataset "
                        f"{name}`")
    splits: dict[str, Any] = {}
    for split in SPLITS:
        files: dict[str, Any] = {}
        labels = None
        for kind in KINDS:
            fname = ds.file_name(split, kind)
            path = dataset_dir(name) / fname
            entry: dict[str, Any] = {"path": str(path), "expected_sha256": ds.raw_sha256[fname]}
            try:
                data = path.read_bytes()
            except OSError as exc:
                entry.update(sha256=None, verified=False, problem=exc.strerror)
            else:
                entry["sha256"] = sha256(data)
                try:
                    array = check_bytes(ds, fname, data)
                    entry.update(verified=True, problem=None)
                    if kind == "labels":
                        labels = array
                except BadFile as exc:
                    entry.update(verified=False, problem=str(exc))
            files[kind] = entry
        splits[split] = {
            "count": len(labels) if labels is not None else None,
            "class_counts": (np.bincount(labels, minlength=ds.num_classes).tolist()
                             if labels is not None else None),
            "first_labels": labels[:10].tolist() if labels is not None else None,
            "files": files,
        }
    return {
        "dataset": name,
        "classes": list(ds.classes),
        "license": ds.license_notice,
        "cache_dir": str(dataset_dir(name)),
        "source": manifest.get("source"),
        "origin": manifest.get("origin"),
        "fetched_at": manifest.get("fetched_at"),
        "layout_version": manifest["layout_version"],
        "verified": all(f["verified"] for s in splits.values() for f in s["files"].values()),
        "splits": splits,
    }
