"""`fetch --from`: every accepted layout gives the canonical cache; every bad file is refused
with one line and leaves nothing in the cache that a later run accepts."""

from __future__ import annotations

import dataclasses
import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from mnistlab.data import cache, fetch, idx, load_dataset, sources, verify
from mnistlab.data.specs import DATASETS, FASHION_MNIST, FILES, MNIST, SystemSource
from mnistlab.errors import UserError

LABELS = "t10k-labels-idx1-ubyte"
IMAGES = "t10k-images-idx3-ubyte"


def write_raw(folder: Path, files: dict[str, bytes], *, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in files.items():
        if gz:
            (folder / f"{fname}.gz").write_bytes(gzip.compress(data, compresslevel=1))
        else:
            (folder / fname).write_bytes(data)
    return folder


def assert_nothing_published(data_dir: Path) -> None:
    folder = data_dir / "mnist"
    assert not cache.is_complete("mnist")
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())
    with pytest.raises(UserError):
        load_dataset("mnist", "test", download=False)


def test_raw_folder_fills_the_cache(data_dir: Path, mnist_raw: dict[str, bytes],
                                    tmp_path: Path) -> None:
    src = write_raw(tmp_path / "src", mnist_raw)
    result = fetch("mnist", from_path=src)
    assert result["fetched"] and result["source"] == "local"
    for fname, data in mnist_raw.items():
        assert (data_dir / "mnist" / fname).read_bytes() == data
    x, y = load_dataset("mnist", "test", download=False)
    assert x.shape == (10_000, 28, 28) and x.dtype == np.uint8
    assert y[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert verify("mnist") == []
    # A second fetch from the default source finds a complete, verified cache: no download.
    assert fetch("mnist")["fetched"] is False


def test_torchvision_raw_layout_with_gz(data_dir: Path, mnist_gz_dir: Path,
                                        tmp_path: Path) -> None:
    shutil.copytree(mnist_gz_dir, tmp_path / "root" / "MNIST" / "raw")
    fetch("mnist", from_path=tmp_path / "root")
    info = cache.info("mnist")
    assert info["verified"] and info["source"] == "local"
    assert info["splits"]["train"]["class_counts"] == [5923, 6742, 5958, 6131, 5842, 5421,
                                                       5918, 6265, 5851, 5949]
    for split, facts in MNIST.splits.items():
        assert info["splits"][split]["class_counts"] == list(facts.class_counts)
        assert info["splits"][split]["first_labels"] == list(facts.first_labels)


def test_keras_npz(data_dir: Path, mnist_raw: dict[str, bytes], tmp_path: Path) -> None:
    arrays = {f: idx.decode(mnist_raw[f]) for f in FILES.values()}
    npz = tmp_path / "mnist.npz"
    np.savez(npz, x_train=arrays["train-images-idx3-ubyte"],
             y_train=arrays["train-labels-idx1-ubyte"],
             x_test=arrays[IMAGES], y_test=arrays[LABELS])
    fetch("mnist", from_path=npz)
    assert verify("mnist") == []
    # The npz must hold uint8 like Keras's; anything else is refused before the cache.
    small = np.zeros((2, 28, 28), np.uint8)
    np.savez(npz, x_train=small.astype(np.float32), y_train=small[:, 0, 0],
             x_test=small, y_test=small[:, 0, 0])
    with pytest.raises(UserError, match="expected uint8"):
        sources.from_folder("mnist", npz)


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[: len(d) // 2], "truncated or padded"),
    (lambda d: d + b"\0", "truncated or padded"),
    (lambda d: b"\x00\x00\x08\x02" + d[4:], "expected 1 dimensions"),
    (lambda d: b"\x00\x00\x0d\x01" + d[4:], "bad magic"),
    (lambda d: d[:8] + bytes([(d[8] + 1) % 10]) + d[9:], "SHA-256"),
    (lambda d: d[:8] + b"\x0b" + d[9:], "out of range"),
    (lambda d: b"", "size 0 bytes"),
])
def test_bad_raw_file_is_refused(data_dir: Path, mnist_raw: dict[str, bytes], tmp_path: Path,
                                 damage, message: str) -> None:
    files = dict(mnist_raw)
    files[LABELS] = damage(files[LABELS])
    src = write_raw(tmp_path / "src", files)
    with pytest.raises(UserError, match=message) as err:
        fetch("mnist", from_path=src)
    assert LABELS in str(err.value) and "\n" not in str(err.value)
    assert_nothing_published(data_dir)


@pytest.mark.parametrize("damage, message", [
    (lambda g: g[: len(g) - 100], "corrupt or truncated gzip"),
    (lambda g: g[:20] + bytes(b ^ 0xFF for b in g[20:60]) + g[60:], "corrupt or truncated gzip"),
])
def test_bad_gz_is_refused(data_dir: Path, mnist_gz_dir: Path, tmp_path: Path,
                           damage, message: str) -> None:
    src = shutil.copytree(mnist_gz_dir, tmp_path / "src")
    path = src / f"{IMAGES}.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=message) as err:
        fetch("mnist", from_path=src)
    assert str(path) in str(err.value)
    assert_nothing_published(data_dir)


def test_another_dataset_is_refused(data_dir: Path, tmp_path: Path) -> None:
    folder = Path(FASHION_MNIST.system.folder)
    if not folder.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    with pytest.raises(UserError, match=r"SHA-256.*not the canonical mnist"):
        fetch("mnist", from_path=folder)
    assert_nothing_published(data_dir)


def test_missing_files_and_paths(data_dir: Path, mnist_raw: dict[str, bytes],
                                 tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        fetch("mnist", from_path=tmp_path / "nowhere")
    src = write_raw(tmp_path / "src", {f: d for f, d in mnist_raw.items() if f != IMAGES})
    with pytest.raises(UserError, match=f"{IMAGES} \\(raw or .gz\\) not found"):
        fetch("mnist", from_path=src)
    assert_nothing_published(data_dir)


def test_fashion_mnist_from_the_debian_package(data_dir: Path) -> None:
    if not Path(FASHION_MNIST.system.folder).is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    result = fetch("fashion-mnist")
    assert result["source"] == "system" and "dataset-fashion-mnist" in result["origin"]
    x, y = load_dataset("fashion-mnist", "test", download=False)
    assert x.shape == (10_000, 28, 28)
    assert np.bincount(y).tolist() == [1000] * 10
    _, y_train = load_dataset("fashion-mnist", "train", download=False)
    assert np.bincount(y_train).tolist() == list(FASHION_MNIST.splits["train"].class_counts)
    assert verify("fashion-mnist") == []
    assert len(DATASETS["fashion-mnist"].classes) == 10


def test_missing_system_package_names_it(data_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS, "fashion-mnist", dataclasses.replace(
        FASHION_MNIST, system=SystemSource("dataset-fashion-mnist", str(tmp_path / "absent"))))
    with pytest.raises(UserError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", "train")
