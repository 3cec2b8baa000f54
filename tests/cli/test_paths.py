"""Output and input paths that cannot work are one `error:` line (exit 2), not a traceback,
and nothing is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from app_helpers import trained_run  # noqa: F401  (a session fixture)
from mnistlab.cli import main

SMALL = ["--epochs", "1", "--limit", "200", "--test-limit", "200"]


@pytest.fixture
def afile(tmp_path: Path) -> Path:
    path = tmp_path / "afile"
    path.write_text("not a folder")
    return path


def one_error(capsys: pytest.CaptureFixture[str], *says: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    for text in says:
        assert text in lines[0], lines[0]
    return lines[0]


def test_train_out_under_a_file(afile, capsys):
    assert main(["train", "fc", *SMALL, "--out", str(afile / "run")]) == 2
    one_error(capsys, "cannot create the run folder", "Not a directory")
    assert afile.read_text() == "not a folder"


def test_train_out_in_proc(capsys):
    assert main(["train", "fc", *SMALL, "--out", "/proc/mnistlab-test/run"]) == 2
    one_error(capsys, "cannot create the run folder /proc/mnistlab-test/run")


def test_train_out_is_a_file(afile, capsys):
    assert main(["train", "fc", *SMALL, "--out", str(afile)]) == 2
    one_error(capsys, "is a file")


def test_runs_folder_is_a_file(afile, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(afile))
    assert main(["train", "fc", *SMALL]) == 2
    one_error(capsys, "cannot create a run folder under", "MNISTLAB_RUNS_DIR")
    assert main(["loop", "--steps", "2", "--limit", "200"]) == 2
    one_error(capsys, "cannot create a run folder under")


def test_loop_out_under_a_file(afile, capsys):
    assert main(["loop", "--steps", "2", "--limit", "200", "--out", str(afile / "x")]) == 2
    one_error(capsys, "cannot create the run folder")


@pytest.mark.parametrize("action", ["verify", "info"])
def test_data_cache_is_a_file(afile, monkeypatch, capsys, action):
    from mnistlab.data import _load

    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(afile))
    _load.cache_clear()
    assert main(["data", action]) == 2
    one_error(capsys, "cannot be read", "MNISTLAB_DATA_DIR")


def test_report_out_under_a_file(afile, capsys):
    assert main(["report", "--quick", "--out", str(afile / "r")]) == 2
    one_error(capsys, "cannot create the report folder")


def test_predict_debug_dir_is_a_file(trained_run, afile, tmp_path, capsys):  # noqa: F811
    from app_helpers import png_bytes, render_mnist
    from mnistlab.data import load_dataset

    picture = tmp_path / "digit.png"
    picture.write_bytes(png_bytes(render_mnist(load_dataset("mnist", "test")[0][0])))
    assert main(["predict", str(trained_run), str(picture), "--debug-dir", str(afile)]) == 2
    one_error(capsys, "--debug-dir", "is a file")
    assert main(["predict", str(trained_run), str(picture), "--debug-dir",
                 str(afile / "sub")]) == 2
    one_error(capsys, "cannot create the folder")


def test_predict_takes_a_run_under_home_written_with_a_tilde(trained_run, tmp_path,  # noqa: F811
                                                            monkeypatch, capsys):
    import shutil

    from app_helpers import png_bytes, render_mnist
    from mnistlab.data import load_dataset

    shutil.copytree(trained_run, tmp_path / "my-run")
    monkeypatch.setenv("HOME", str(tmp_path))             # "~/my-run", quoted past a shell
    picture = tmp_path / "digit.png"
    picture.write_bytes(png_bytes(render_mnist(load_dataset("mnist", "test")[0][0])))
    assert main(["predict", "~/my-run", str(picture)]) == 0
    assert str(tmp_path / "my-run") in capsys.readouterr().out


def test_export_out_cannot_be_written(trained_run, afile, tmp_path, capsys):  # noqa: F811
    assert main(["export", str(trained_run), "--out", str(afile / "m.onnx")]) == 2
    one_error(capsys, "is a file, not a folder", "--out FILE")
    assert main(["export", str(trained_run), "--out", str(tmp_path)]) == 2
    one_error(capsys, "is a folder; expected a file name")


def test_bad_model_settings_are_one_line(tmp_path, capsys):
    assert main(["summary", "fc", "--config", '{"hidden": -1}']) == 2
    one_error(capsys, "bad model config for 'fc'")
    out = tmp_path / "run"
    assert main(["train", "fc", *SMALL, "--model-config", '{"hidden": -1}', "--out",
                 str(out)]) == 2
    one_error(capsys, "bad model config for 'fc'")
    assert not out.exists()


def test_a_data_cache_that_cannot_be_written_fails_before_the_download(afile, monkeypatch,
                                                                      capsys):
    from mnistlab.data import carrier

    def no_download(*args, **kwargs):
        raise AssertionError("downloaded although the cache cannot be written")

    monkeypatch.setattr(carrier, "fetch_files", no_download)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(afile / "below"))
    assert main(["data", "fetch"]) == 2
    one_error(capsys, "cannot write the data cache", "Not a directory")
