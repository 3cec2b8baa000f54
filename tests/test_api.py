"""mnistlab.api: train() writes a run like `mnistlab train`, and Run gives back its files, its
evaluation, its predictions and its figure (small: 500 images, one epoch, one thread)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import mnistlab.api as lab
from mnistlab import runs
from mnistlab.data import load_dataset
from mnistlab.errors import UserError

SMALL = {"limit": 500, "test_limit": 200, "epochs": 1, "threads": 1}


@pytest.fixture(scope="module")
def fc_run(tmp_path_factory: pytest.TempPathFactory) -> lab.Run:
    return lab.train("fc", out=tmp_path_factory.mktemp("api") / "fc", verbose=False, **SMALL)


def test_train_writes_a_run_with_the_seed_preset(fc_run: lab.Run) -> None:
    assert (fc_run.path / runs.WEIGHTS).is_file()
    assert fc_run.config.train is not None
    assert fc_run.config.train.preset == "seed" and fc_run.config.train.lr == 0.1  # seed's fc
    assert fc_run.config.train.limit == 500
    assert [row.epoch for row in fc_run.history] == [1]
    assert fc_run.metrics.train_images == 500 and fc_run.metrics.test_images == 200
    assert "fc" in repr(fc_run) and "test_accuracy=" in repr(fc_run)


def test_verbose_prints_the_keras_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lab.train("fc", out=tmp_path / "run", verbose=True, **SMALL)
    out = capsys.readouterr().out
    assert "fc: 101,770 parameters, 500 training images" in out
    assert "Epoch 1/1  8/8" in out and "val_accuracy:" in out


def test_load_run_reads_the_same_run(fc_run: lab.Run) -> None:
    again = lab.load_run(fc_run.path)
    assert again.metrics == fc_run.metrics
    assert again.history == fc_run.history


def test_evaluate_matches_the_runs_own_metrics(fc_run: lab.Run) -> None:
    result = fc_run.evaluate(test_limit=200)
    assert result.test_images == 200 and result.steps == 7   # 200 images in batches of 32
    assert result.test_accuracy == pytest.approx(fc_run.metrics.test_accuracy)
    assert result.test_loss == pytest.approx(fc_run.metrics.test_loss, rel=1e-5)
    assert str(result).startswith("7/7  ")


def test_predict_takes_arrays_pil_images_and_png_bytes(fc_run: lab.Run, tmp_path: Path) -> None:
    images, _ = load_dataset("mnist", "test")
    from_uint8 = fc_run.predict(images[0])
    from_float = fc_run.predict(images[0] / 255.0)
    assert from_uint8.probabilities == pytest.approx(from_float.probabilities, abs=1e-6)
    assert sum(from_uint8.probabilities) == pytest.approx(1.0)
    assert from_uint8.digit == int(np.argmax(fc_run.probabilities(images[:1])[0]))
    # A picture: dark ink on white paper, larger than 28x28, through MNIST's preprocessing.
    picture = Image.fromarray(255 - np.kron(images[0], np.ones((4, 4), dtype=np.uint8)))
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    path = tmp_path / "digit.png"
    path.write_bytes(buf.getvalue())
    for source in (picture, buf.getvalue(), path, str(path)):
        prediction = fc_run.predict(source)
        assert prediction.pre.inverted                      # dark ink was made bright
        assert len(prediction.top) == 3 and 0 <= prediction.digit <= 9


def test_read_gives_a_digit_or_a_written_number(fc_run: lab.Run, tmp_path: Path) -> None:
    images, _ = load_dataset("mnist", "test")
    pair = np.concatenate([images[0], np.zeros((28, 12), np.uint8), images[1]], axis=1)
    picture = 255 - np.kron(pair, np.ones((6, 6), dtype=np.uint8))      # dark ink on white
    path = tmp_path / "number.png"
    Image.fromarray(picture).save(path)
    for source in (picture, Image.fromarray(picture), path, str(path), path.read_bytes()):
        reading = fc_run.read(source)
        assert isinstance(reading, lab.NumberPrediction) and len(reading.digits) == 2
        assert reading.number == "".join(str(d.digit) for d in reading.digits)
    one = fc_run.read(images[0])                                            # one MNIST digit
    assert one.digit == fc_run.predict(images[0]).digit
    assert one.number == str(one.digit)          # .number whatever the picture holds
    # the same picture, whatever its type: a PIL image or an array was squeezed into one
    # 28x28 and answered as one digit, where its file was refused
    for source in (picture, Image.fromarray(picture), path, path.read_bytes()):
        with pytest.raises(UserError, match=r"Run\.read"):
            fc_run.predict(source)


def test_predict_refuses_what_is_no_image(fc_run: lab.Run) -> None:
    with pytest.raises(UserError, match="one grayscale image"):
        fc_run.predict(np.zeros((2, 28, 28)))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        fc_run.predict(np.full((28, 28), 3.0))
    with pytest.raises(UserError, match="one grayscale image"):
        fc_run.read(np.zeros((2, 28, 28)))


def test_plot_returns_learning_curves(fc_run: lab.Run) -> None:
    fig = fc_run.plot()
    assert isinstance(fig, Figure)
    for ax in fig.axes:                                  # accuracy, loss
        assert {line.get_label() for line in ax.get_lines()} == {"FC train", "FC test"}


def test_train_refuses_bad_settings_before_writing(tmp_path: Path, fc_run: lab.Run) -> None:
    with pytest.raises(UserError, match="unknown training setting"):
        lab.train("fc", out=tmp_path / "a", verbose=False, epoch=1)
    with pytest.raises(UserError, match="already holds files"):
        lab.train("fc", out=fc_run.path, verbose=False, **SMALL)
    with pytest.raises(UserError, match="preset 'seed' has no recipe"):
        lab.train("speedrun", out=tmp_path / "b", verbose=False, **SMALL)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_calibrated_run_answers_as_the_cli_does(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from mnistlab.cli import main

    run = lab.train("fc", out=tmp_path / "cal", verbose=False, validation=2000,
                    **(SMALL | {"limit": 3000}))
    images, _ = load_dataset("mnist", "test")
    picture = tmp_path / "seven.png"
    Image.fromarray(255 - np.kron(images[0], np.ones((10, 10), np.uint8))).save(picture)
    got = run.predict(picture)
    assert got.unsure is not None                 # calibrated: flags are given
    assert main(["predict", str(run.path), str(picture), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"][0]
    assert cli["probabilities"] == pytest.approx(got.probabilities, abs=1e-6)
    assert cli["unsure"] == got.unsure and cli["unsure_reason"] == got.unsure_reason
    # a calibration fitted for other weights is refused here too, as `predict` refuses it
    saved = json.loads((run.path / "calibration.json").read_text())
    (run.path / "calibration.json").write_text(json.dumps(saved | {"model_sha256": "0" * 64}))
    with pytest.raises(UserError, match="another model's weights"):
        lab.load_run(run.path).predict(picture)


@pytest.mark.parametrize(("call", "match"), [
    (lambda r: r.evaluate(test_limit=-1), "test_limit"),
    (lambda r: r.evaluate(batch_size=0), "batch_size"),
    (lambda r: r.evaluate(test_limit=1.5), "test_limit"),
    (lambda r: r.probabilities(np.zeros((28, 28), np.uint8)), "batch of 28x28"),
    (lambda r: r.probabilities(np.full((2, 28, 28), 200.0, np.float32)), r"\[0, 1\]"),
    (lambda r: r.probabilities(np.full((2, 28, 28), np.nan)), r"\[0, 1\]"),
    (lambda r: r.predict(np.zeros((0, 0))), "shape"),
    (lambda r: r.predict(Image.new("L", (0, 0))), "nothing to read"),
    (lambda r: r.predict(None), "expected a file path"),
    (lambda r: r.predict(np.zeros((28, 28)), top=0), "top"),
    (lambda r: r.read(5), "expected a file path"),
])
def test_the_api_refuses_nonsense_in_one_line(fc_run: lab.Run, call, match: str) -> None:
    with pytest.raises(UserError, match=match):
        call(fc_run)


def test_the_api_takes_any_bytes_and_names_a_folder(fc_run: lab.Run, tmp_path: Path) -> None:
    images, _ = load_dataset("mnist", "test")
    buf = io.BytesIO()
    Image.fromarray(255 - np.kron(images[0], np.ones((8, 8), np.uint8))).save(buf, "PNG")
    assert fc_run.predict(bytearray(buf.getvalue())).digit == \
        fc_run.predict(buf.getvalue()).digit
    with pytest.raises(UserError, match="is a folder, not a picture"):
        fc_run.predict(tmp_path)
    assert "image=" not in repr(fc_run.predict(buf.getvalue()))   # no 28x28 dump


def test_train_out_must_be_a_new_or_empty_folder(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(UserError, match=r"out= .* is a file"):
        lab.train("fc", out=a_file, verbose=False, **SMALL)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="already holds files"):
        lab.train("fc", out=busy, verbose=False, **SMALL)
    assert a_file.read_text() == "mine" and (busy / "keep.txt").read_text() == "mine"
    from mnistlab import folders
    assert busy.resolve() not in folders._HELD     # refused: not kept from other processes
