"""`mnistlab data fetch|verify|info`: one JSON object last with --json, one error line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mnistlab.cli import main
from mnistlab.data import cache

IMAGES = "t10k-images-idx3-ubyte"


@pytest.fixture
def src(mnist_raw: dict[str, bytes], tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for fname, data in mnist_raw.items():
        (folder / fname).write_bytes(data)
    return folder


def test_fetch_info_verify(data_dir: Path, src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fetch", "--from", str(src), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1])["fetched"] is True

    assert main(["data", "info", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert report["verified"] is True and report["source"] == "local"
    assert report["splits"]["test"]["count"] == 10_000
    assert report["splits"]["test"]["first_labels"] == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    files = report["splits"]["train"]["files"]
    assert files["images"]["sha256"] == cache.spec("mnist").raw_sha256["train-images-idx3-ubyte"]
    assert Path(files["images"]["path"]).parent == data_dir / "mnist"
    assert any("4 of 4 files match" in line for line in out)

    assert main(["data", "verify"]) == 0


def test_verify_names_the_flipped_file(data_dir: Path, src: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fetch", "--from", str(src)]) == 0
    path = data_dir / "mnist" / IMAGES
    data = bytearray(path.read_bytes())
    data[5000] ^= 0x80
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["data", "verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(path) in err[0]
    assert main(["data", "info", "--json"]) == 2
    captured = capsys.readouterr()
    closing = json.loads(captured.out.strip().splitlines()[-1])
    assert closing["verified"] is False and closing["exit_code"] == 2     # as every error
    assert "NOT VERIFIED" in captured.out
    assert main(["data", "verify", "--json"]) == 2
    closing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert closing["ok"] is False and closing["exit_code"] == 2 and str(path) in closing["error"]


def test_bad_input_is_one_line_exit_2(data_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", IMAGES,
                 "t10k-labels-idx1-ubyte"):
        (bad / name).write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x01\x07")
    proc = subprocess.run([sys.executable, "-m", "mnistlab", "data", "fetch", "--from", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert "train-images-idx3-ubyte" in lines[0]
    assert not (data_dir / "mnist").exists()


def test_info_without_a_cache_says_what_to_do(data_dir: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", "--dataset", "fashion-mnist"]) == 2
    assert "mnistlab data fetch --dataset fashion-mnist" in capsys.readouterr().err


def test_from_and_source_together_are_refused(data_dir: Path, src: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "fetch", "--from", str(src), "--source", "mirror"]) == 2
    assert "exclude each other" in capsys.readouterr().err
