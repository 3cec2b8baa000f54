"""The verified cache: re-hashing on every read, layout detection, and failures while writing
(full disk, unwritable folder, interruption) that never leave an accepted bad file."""

from __future__ import annotations

import errno
import json
import os
import pwd
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mnistlab import atomic
from mnistlab.data import _load, cache, fetch, load_dataset, verify
from mnistlab.errors import UserError

IMAGES = "train-images-idx3-ubyte"


@pytest.fixture
def filled(data_dir: Path, mnist_raw: dict[str, bytes]) -> Path:
    """A complete cache, as if fetched from a local folder (not the registry)."""
    cache.publish("mnist", mnist_raw, source="local", origin="test fixture")
    return data_dir / "mnist"


def flip_one_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_cache_from_another_source_is_verified_the_same_way(filled: Path) -> None:
    manifest = json.loads((filled / cache.MANIFEST).read_text())
    assert manifest["source"] == "local" and manifest["layout_version"] == cache.LAYOUT_VERSION
    assert verify("mnist") == []
    x, y = load_dataset("mnist", "train", download=False)
    assert x.shape == (60_000, 28, 28) and y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert not x.flags.writeable


def test_one_flipped_byte_is_caught_on_verify_and_load(filled: Path, mnist_raw: dict[str, bytes],
                                                       tmp_path: Path) -> None:
    flip_one_byte(filled / IMAGES, 16 + 28 * 28 * 100 + 300)  # a pixel of image 100
    problems = verify("mnist")
    assert len(problems) == 1 and IMAGES in problems[0] and "SHA-256" in problems[0]
    assert "--force" in problems[0]
    with pytest.raises(UserError, match=IMAGES):
        load_dataset("mnist", "train", download=False)
    assert cache.info("mnist")["verified"] is False
    # `fetch --from` a good folder repairs it (no --force needed).
    src = tmp_path / "src"
    src.mkdir()
    for fname, data in mnist_raw.items():
        (src / fname).write_bytes(data)
    assert fetch("mnist", from_path=src)["fetched"] is True
    assert verify("mnist") == []


def test_other_layout_is_detected_not_misread(filled: Path) -> None:
    atomic.write_json(filled / cache.MANIFEST, {"layout_version": 99, "dataset": "mnist"})
    with pytest.raises(UserError, match=r"layout 99.*--force"):
        load_dataset("mnist", "test", download=False)
    assert "layout 99" in verify("mnist")[0]
    (filled / cache.MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="unreadable"):
        load_dataset("mnist", "test", download=False)


def test_in_memory_cache_follows_the_data_dir(filled: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    load_dataset("mnist", "test", download=False)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="not in the cache"):
        load_dataset("mnist", "test", download=False)
    assert _load.cache_info().currsize == 1


def test_interrupted_publish_leaves_no_accepted_cache(data_dir: Path, mnist_raw: dict[str, bytes],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    real = cache._write_verified
    calls = []

    def interrupted(path, data, expected):  # Ctrl-C while writing the third file
        calls.append(path)
        if len(calls) == 3:
            with atomic.atomic_path(path) as tmp:
                tmp.write_bytes(data[: len(data) // 2])
                raise KeyboardInterrupt
        real(path, data, expected)

    monkeypatch.setattr(cache, "_write_verified", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cache.publish("mnist", mnist_raw, source="local", origin="test")
    folder = data_dir / "mnist"
    names = sorted(p.name for p in folder.iterdir())
    assert not any(n.endswith(".tmp") for n in names), names  # no half-written temp file
    assert cache.MANIFEST not in names and not cache.is_complete("mnist")
    with pytest.raises(UserError, match="not in the cache"):
        load_dataset("mnist", "train", download=False)


def test_full_disk_is_one_line_and_leaves_nothing(data_dir: Path, mnist_raw: dict[str, bytes],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int) -> None:  # the kernel reports ENOSPC when the data is flushed
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(UserError, match=r"No space left on device.*free some space") as err:
        cache.publish("mnist", mnist_raw, source="local", origin="test")
    assert "MNISTLAB_DATA_DIR" in str(err.value)
    assert list((data_dir / "mnist").iterdir()) == []


def test_unusable_cache_folder(tmp_path: Path, mnist_raw: dict[str, bytes],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(blocker))
    with pytest.raises(UserError, match="cannot write the data cache"):
        cache.publish("mnist", mnist_raw, source="local", origin="test")


def _as_unprivileged(fn: Callable[[], str], timeout: float = 60.0) -> str:
    """``fn()`` in this process (not root), or as root in a forked child that first drops to
    the nobody user, since root writes into read-only folders anyway; its answer either way.

    Forked, not a fresh interpreter: the child needs no readable checkout or virtual
    environment (a checkout in root's home is not readable by nobody), only the data in
    memory and a folder it can reach."""
    if os.geteuid() != 0:
        return fn()
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write_end, fn().encode())
            code = 0
        except BaseException as exc:  # reported to the parent, which asserts
            os.write(write_end, f"child failed: {exc!r}".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the unprivileged child took over {timeout:.0f} s")
        time.sleep(0.05)
    with os.fdopen(read_end, "rb") as f:
        return f.read().decode()


def test_read_only_cache_folder(data_dir: Path, mnist_raw: dict[str, bytes],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        # The nobody user must reach the folder: pytest's own base folder is private to root.
        data_dir = Path(tempfile.mkdtemp(prefix="mnistlab-ro-")) / "data-cache"
        data_dir.parent.chmod(0o755)
        monkeypatch.setenv("MNISTLAB_DATA_DIR", str(data_dir))
    data_dir.mkdir()
    data_dir.chmod(0o555)

    def publish() -> str:
        try:
            cache.publish("mnist", mnist_raw, source="local", origin="test")
        except UserError as exc:
            return str(exc)
        return "published"

    try:
        message = _as_unprivileged(publish)
    finally:
        data_dir.chmod(0o755)
    try:
        assert re.search("make it writable", message), message
        assert list(data_dir.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            shutil.rmtree(data_dir.parent)


def test_read_only_error_message(data_dir: Path, mnist_raw: dict[str, bytes],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Runs as root too: a read-only file system refuses the temp file itself.
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", read_only)
    with pytest.raises(UserError, match=r"Read-only file system.*make it writable"):
        cache.publish("mnist", mnist_raw, source="local", origin="test")


def test_atomic_files_get_normal_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o027)
    try:
        atomic.write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o640


def test_labels_decode_counts(filled: Path) -> None:
    _, y = load_dataset("mnist", "test", download=False)
    assert np.bincount(y, minlength=10).tolist() == [980, 1135, 1032, 1010, 982, 892, 958,
                                                     1028, 974, 1009]
