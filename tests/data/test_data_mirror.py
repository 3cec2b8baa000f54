"""`--source mirror` against a loopback HTTP server (127.0.0.1 only; no real host is contacted).

The server has one folder per kind of mirror: good files, truncated files, another dataset's
files, a 404, and one that announces the full Content-Length but hangs up half-way.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from mnistlab.data import cache, fetch, load_dataset, mirror, verify
from mnistlab.data.specs import DATASETS, MNIST
from mnistlab.errors import UserError

LABELS = "t10k-labels-idx1-ubyte"


class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/hangup/"):  # full Content-Length, half the body, then close
            body = (Path(self.directory) / "good" / self.path.removeprefix("/hangup/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server(mnist_gz_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mirrors")
    (root / "good").symlink_to(mnist_gz_dir, target_is_directory=True)
    (root / "truncated").mkdir()
    (root / "wrong").mkdir()
    for gz in mnist_gz_dir.iterdir():
        data = gz.read_bytes()
        (root / "truncated" / gz.name).write_bytes(data[: len(data) * 3 // 4])
        # A well-formed gzip of a well-formed IDX file, but not MNIST's: labels shifted by one.
        raw = bytearray(gzip.decompress(data))
        if "labels" in gz.name:
            raw[8:] = bytes((b + 1) % 10 for b in raw[8:])
        else:
            raw[16] ^= 0xFF
        (root / "wrong" / gz.name).write_bytes(gzip.compress(bytes(raw), compresslevel=1))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_each_bad_mirror_is_skipped_for_the_next(server: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = [f"{server}/missing/", f"{server}/truncated/", f"{server}/wrong/", f"{server}/hangup/"]
    raw, url = mirror.fetch_file("mnist", LABELS, [*bad, f"{server}/good/"])
    assert url == f"{server}/good/{LABELS}.gz"
    assert cache.sha256(raw) == cache.spec("mnist").raw_sha256[LABELS]
    warnings = capsys.readouterr().err
    assert "404" in warnings
    assert "corrupt or truncated gzip" in warnings
    assert "SHA-256" in warnings
    assert "interrupted: got" in warnings


def test_all_mirrors_bad_is_one_line(server: str) -> None:
    with pytest.raises(UserError) as err:
        mirror.fetch_file("mnist", LABELS, [f"{server}/truncated/", f"{server}/wrong/"])
    message = str(err.value)
    assert "\n" not in message and "no mirror served a good" in message and "--from" in message


def test_mirror_fetch_end_to_end(server: str, data_dir: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(
        MNIST, mirrors=(f"{server}/wrong/", f"{server}/good/")))
    result = fetch("mnist", source="mirror")
    assert result["fetched"] and result["source"] == "mirror"
    assert result["origin"] == f"{server}/good/"
    assert verify("mnist") == []
    _, y = load_dataset("mnist", "train", download=False)
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y[:10].tolist() == list(MNIST.splits["train"].first_labels)
    # A verified cache is not downloaded again; a damaged one is, without --force.
    assert fetch("mnist", source="mirror")["fetched"] is False
    path = data_dir / "mnist" / LABELS
    path.write_bytes(path.read_bytes()[:-1])
    assert fetch("mnist", source="mirror")["fetched"] is True
    assert verify("mnist") == []


def test_failed_mirror_fetch_leaves_no_cache(server: str, data_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(
        MNIST, mirrors=(f"{server}/hangup/",)))
    with pytest.raises(UserError, match="interrupted"):
        fetch("mnist", source="mirror")
    assert not (data_dir / "mnist").exists()
