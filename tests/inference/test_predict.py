"""`mnistlab predict` and its library: accuracy on pictures, JSON, debug images, run choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_helpers import phone_photo, png_bytes, render_mnist, trained_run  # noqa: F401
from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.errors import UserError
from mnistlab.inference.predict import load_predictor, predict_files, predict_proba
from mnistlab.perf.synth import roundtrip_accuracy


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> tuple[list[str], np.ndarray, np.ndarray]:
    """20 MNIST test digits as large dark-on-white PNGs, 6 as phone-photo JPEGs."""
    folder = tmp_path_factory.mktemp("pictures")
    images, labels = load_dataset("mnist", "test")
    paths = []
    for i in range(20):
        path = folder / f"digit{i:02d}.png"
        render_mnist(images[i], scale=8).save(path)
        paths.append(str(path))
    for i in range(20, 26):
        path = folder / f"photo{i:02d}.jpg"
        phone_photo(images[i], seed=i).save(path, quality=85)
        paths.append(str(path))
    return paths, images[:26], labels[:26].astype(int)


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_pictures_are_classified_as_well_as_the_raw_digits(trained_run, pictures):  # noqa: F811
    paths, images, labels = pictures
    predictor = load_predictor(trained_run)
    direct = predict_proba(predictor, images / 255.0).argmax(1)
    results = predict_files(predictor, paths, top=3)
    digits = np.array([r.digit for r in results])
    assert (digits == labels).mean() >= 0.85
    # Preprocessing round-trips: the picture and the raw digit agree almost always.
    assert (digits == direct).mean() >= 0.9
    first = results[0]
    assert len(first.top) == 3 and first.top[0][0] == first.digit
    assert abs(sum(first.probabilities) - 1) < 1e-6


def test_cli_json_in_input_order_with_debug_images(trained_run, pictures, tmp_path,  # noqa: F811
                                                   capsys):
    paths = pictures[0][:3]
    debug = tmp_path / "debug"
    code = main(["predict", str(trained_run), *paths, "--top", "2", "--json",
                 "--debug-dir", str(debug)])
    assert code == 0
    out = last_json(capsys)
    assert [p["file"] for p in out["predictions"]] == paths
    for p in out["predictions"]:
        assert set(p) >= {"file", "digit", "probability", "top"}
        assert len(p["top"]) == 2 and p["top"][0]["digit"] == p["digit"]
    written = sorted(debug.glob("*.png"))
    assert len(written) == 3
    assert Image.open(written[0]).size == (28, 28)


def test_cli_without_run_uses_the_best_run_and_says_so(trained_run, pictures, monkeypatch,  # noqa: F811
                                                       capsys):
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(Path(trained_run).parent))
    assert main(["predict", pictures[0][0]]) == 0
    out = capsys.readouterr().out
    assert "best available run" in out and Path(trained_run).name in out


def test_cli_with_no_run_at_all_says_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(tmp_path / "empty"))
    picture = tmp_path / "x.png"
    picture.write_bytes(png_bytes(Image.new("L", (50, 50), 255)))
    assert main(["predict", str(picture)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no trained run found") and "mnistlab train" in err


def test_cli_reports_bad_pictures_and_still_predicts_the_rest(trained_run, pictures,  # noqa: F811
                                                              tmp_path, capsys):
    blank = tmp_path / "blank.png"
    blank.write_bytes(png_bytes(Image.new("L", (100, 100), 255)))
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    code = main(["predict", str(trained_run), str(blank), pictures[0][0], str(text), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    assert "no ink found" in captured.err and "not an image" in captured.err
    preds = json.loads(captured.out.strip().splitlines()[-1])["predictions"]
    assert "error" in preds[0] and "digit" in preds[1] and "error" in preds[2]


def test_cli_argument_errors(trained_run, tmp_path, capsys):  # noqa: F811
    assert main(["predict", str(trained_run)]) == 2
    assert "no image given" in capsys.readouterr().err
    assert main(["predict", str(trained_run), str(tmp_path / "missing.png")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["predict", str(trained_run), "x.png", "--top", "0"]) == 2
    assert "--top" in capsys.readouterr().err
    with pytest.raises(UserError, match="not found"):
        load_predictor(Path(trained_run) / "nope")


def test_roundtrip_accuracy_of_synthetic_pictures(trained_run):  # noqa: F811
    r = roundtrip_accuracy(load_predictor(trained_run), n=12)
    assert r["images"] == 12 and r["direct_accuracy"] >= 0.8
    assert r["rendered_png_accuracy"] >= r["direct_accuracy"] - 0.1
    assert r["phone_photo_accuracy"] >= r["direct_accuracy"] - 0.1


def test_a_number_unlikely_all_right_is_unsure_though_each_digit_clears_the_bar():
    # nine digits read at 94% each are all right 57% of the time: printed "60.7% all right"
    # with no flag, while one digit at 60% is flagged
    from mnistlab.inference.predict import NumberPrediction, Prediction
    from mnistlab.inference.preprocess import Preprocessed

    pre = Preprocessed(image=np.zeros((28, 28), np.float32), inverted=False, bbox=(0, 0, 28, 28))

    def digits(p: float, n: int) -> list[Prediction]:
        return [Prediction("n.png", 3, p, [0.0] * 10, [(3, p)], pre, unsure=False)
                for _ in range(n)]

    many = NumberPrediction("n.png", digits(0.94, 9), (28, 252), unsure_below=0.613)   # 57%
    assert many.unsure and many.unsure_reason == "not confident in the whole number"
    assert many.to_json()["unsure"] is True
    few = NumberPrediction("n.png", digits(0.94, 3), (28, 84), unsure_below=0.613)     # 83%
    assert few.unsure is False and few.unsure_reason is None
