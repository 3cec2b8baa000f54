"""Pictures and files that once cost minutes, crashed or misled: many pieces of ink, a phone's
multi-picture JPEG, soft strokes on transparency, an ONNX file of the wrong shape, a damaged
calibration; and each refusal names its picture."""

from __future__ import annotations

import io
import json
import shutil
import socket
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from app_helpers import render_mnist, trained_run  # noqa: F401  (a session fixture)
from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.inference import number
from mnistlab.inference.number import MAX_PIECES, TooManyPieces, read_layout
from mnistlab.inference.preprocess import open_image, to_gray
from mnistlab.train.calibration import CALIBRATION

pytestmark = pytest.mark.timeout(120)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_a_picture_of_thousands_of_pieces_is_refused_at_once() -> None:
    grid = np.full((1024, 1024), 255, np.uint8)
    for y in range(8, 1016, 18):
        for x in range(8, 1016, 18):
            grid[y:y + 5, x:x + 5] = 0                      # 3,136 dots: a 3 KB PNG
    start = time.perf_counter()
    with pytest.raises(TooManyPieces, match="separate pieces of ink"):
        read_layout(to_gray(open_image(_png(grid))))
    assert time.perf_counter() - start < 5                  # was a minute and 3.5 GB
    bars = np.full((200, 40 * (MAX_PIECES - 10)), 255, np.uint8)
    for k in range(MAX_PIECES - 20):                        # under the cap: still read
        bars[80:120, 20 + 40 * k:32 + 40 * k] = 0
    assert len(read_layout(to_gray(open_image(_png(bars)))).digits) == MAX_PIECES - 20


def _restart_merge(parts: list[number._Part]) -> list[number._Part]:
    """The definition: merge the first pair (in order) that is one digit, start again."""
    merged = True
    while merged and len(parts) > 1:
        merged = False
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                if number._one_digit(parts[i], parts[j]):
                    parts[i] = parts[i].merged(parts.pop(j))
                    merged = True
                    break
            if merged:
                break
    return parts


boxes = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 200), st.integers(2, 40),
                           st.integers(2, 30)), min_size=1, max_size=14)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(boxes)
def test_merging_stacked_pieces_follows_its_definition(spec: list[tuple[int, ...]]) -> None:
    def parts() -> list[number._Part]:
        return [number._Part(t, lft, t + h, lft + w, np.ones((h, w), bool))
                for t, lft, h, w in spec]

    fast = number._merge_stacked(parts())
    slow = _restart_merge(parts())
    assert [(p.top, p.left, p.bottom, p.right) for p in fast] == \
        [(p.top, p.left, p.bottom, p.right) for p in slow]
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(fast, slow, strict=True))


def test_a_phone_jpeg_with_a_second_picture_is_read(trained_run: Path,  # noqa: F811
                                                    tmp_path: Path) -> None:
    images, _ = load_dataset("mnist", "test")
    photo = render_mnist(images[0], scale=10).convert("RGB")
    path = tmp_path / "phone.jpg"
    photo.save(path, format="MPO", save_all=True, append_images=[photo.resize((70, 70))])
    assert Image.open(path).format == "MPO"
    assert main(["predict", str(trained_run), str(path), "--json"]) == 0


def test_soft_light_strokes_on_transparency_are_ink(trained_run: Path,  # noqa: F811
                                                    tmp_path: Path) -> None:
    images, _ = load_dataset("mnist", "test")
    stroke = np.asarray(Image.fromarray(images[0]).resize((280, 280)), np.float32) / 255
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., :3] = 255                                     # white ink, never opaque
    rgba[..., 3] = (stroke * 0.45 * 255).astype(np.uint8)
    gray = to_gray(Image.fromarray(rgba, "RGBA"))
    assert gray[0, 0] == 0.0 and gray.max() > 0.4           # on black, as white ink needs
    path = tmp_path / "soft.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert main(["predict", str(trained_run), str(path)]) == 0


def test_each_refused_picture_is_named(trained_run: Path, tmp_path: Path,  # noqa: F811
                                       capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (200, 200), 255).save(blank)
    assert main(["predict", str(trained_run), str(blank), "--json"]) == 2
    captured = capsys.readouterr()
    assert f"error: {blank}: no ink found" in captured.err
    body = json.loads(captured.out.strip().splitlines()[-1])
    assert body["predictions"][0]["error"].startswith(f"{blank}: no ink found")


@pytest.mark.parametrize("temperature", [0, -0.47, "NaN", "missing", "not json"])
def test_a_damaged_calibration_is_one_line_naming_calibrate(
        trained_run: Path, tmp_path: Path, temperature: object,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    fields = {"temperature": temperature, "unsure_below": 0.9, "validation_images": 10,
              "validation_accuracy": 0.9, "nll_before": 1, "nll_after": 1, "ece_before": 0,
              "ece_after": 0, "unsure_share": 0.01, "errors_flagged": 0.5}
    if temperature == "missing":        # said "('temperature')" before: a bare KeyError
        del fields["temperature"]
    text = json.dumps(fields).replace('"NaN"', "NaN")
    # cut short: it said to re-run the training, where calibrate fits it in seconds
    (run / CALIBRATION).write_text(text[:20] if temperature == "not json" else text)
    picture = tmp_path / "seven.png"
    images, _ = load_dataset("mnist", "test")
    render_mnist(images[0], scale=10).save(picture)
    assert main(["predict", str(run), str(picture)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err and "Warning" not in err
    assert "mnistlab calibrate" in err
    assert ("no 'temperature'" if temperature == "missing" else
            "calibration file" if temperature == "not json" else "temperature") in err


def test_an_onnx_file_that_gives_other_than_ten_scores_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 784])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 784])
    graph = helper.make_graph([helper.make_node("Reshape", ["image", "shape"], ["logits"])],
                              "flat", [image], [out], initializer=[shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "flat.onnx"
    onnx.save(model, str(path))
    picture = tmp_path / "d.png"
    Image.new("L", (50, 50), 255).save(picture)
    assert main(["predict", "--onnx", str(path), str(picture)]) == 2
    assert "does not give (N, 10) scores" in capsys.readouterr().err


def test_evaluate_real_needs_a_part(trained_run: Path,  # noqa: F811
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate-real", str(trained_run), "--parts", ","]) == 2
    assert "names no part" in capsys.readouterr().err
    # --touching and --marks with no numbers to compose were ignored in silence
    for flag in ("--touching", "--marks"):
        assert main(["evaluate-real", str(trained_run), "--numbers", "0", flag]) == 2
        assert f"{flag} changes the composed numbers" in capsys.readouterr().err


def test_serve_with_workers_refuses_a_bad_run_before_starting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("uvicorn")
    with socket.socket() as probe:                          # a free port, given back at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    assert main(["serve", str(tmp_path / "no-such-run"), "--workers", "2", "--host",
                 "127.0.0.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert time.perf_counter() - start < 30


def test_a_folder_of_pictures_is_named_as_one(trained_run: Path, tmp_path: Path,  # noqa: F811
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNISTLAB_RUNS_DIR", str(trained_run.parent))  # the default run
    pictures = tmp_path / "scans"
    pictures.mkdir()
    images, _ = load_dataset("mnist", "test")
    render_mnist(images[0], scale=10).save(pictures / "a.png")
    for argv in ([str(trained_run), str(pictures)], [str(pictures), str(pictures / "a.png")],
                 [str(pictures / "a.png"), str(pictures)]):
        assert main(["predict", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "is a folder, not a picture" in err, argv


def test_unknown_paths_answer_in_the_api_shape(trained_run: Path) -> None:  # noqa: F811
    from fastapi.testclient import TestClient

    from mnistlab.serve import create_app

    with TestClient(create_app(trained_run)) as client:
        r = client.get("/no-such-page")
        assert r.status_code == 404 and r.json() == {"error": "not_found",
                                                     "detail": "Not Found"}
        r = client.get("/api/predict")
        assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
        assert r.headers["allow"] == "POST"


def test_an_export_beside_another_models_calibration_is_one_line(
        trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    pytest.importorskip("onnxscript")
    from mnistlab.train.calibration import calibration_from_logits, save_calibration
    from mnistlab.train.typicality import fit

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    other = fit(rng.normal(size=(500, 7)), labels, rng.normal(size=(200, 7)))  # 7 features
    logits = rng.normal(size=(500, 10))
    foreign = tmp_path / "another-run"
    foreign.mkdir()
    save_calibration(foreign, replace(calibration_from_logits(logits, labels),
                                      typicality=other))
    assert main(["export", str(trained_run), "--out", str(foreign / "fc.onnx")]) == 0
    picture = tmp_path / "seven.png"
    images, _ = load_dataset("mnist", "test")
    render_mnist(images[0], scale=10).save(picture)
    capsys.readouterr()
    assert main(["predict", "--onnx", str(foreign / "fc.onnx"), str(picture)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "fitted for another model" in err


def test_a_calibration_fitted_for_other_weights_is_refused_not_applied(
        trained_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    # two exports in one folder, one run's calibration copied beside them: the other model's
    # answers were judged by it and every digit flagged "unsure"
    pytest.importorskip("onnxscript")
    from mnistlab import runs
    from mnistlab.train.calibration import (
        calibration_from_logits,
        save_calibration,
        weights_fingerprint,
    )

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    fitted = calibration_from_logits(rng.normal(size=(500, 10)), labels)
    picture = tmp_path / "seven.png"
    images, _ = load_dataset("mnist", "test")
    render_mnist(images[0], scale=10).save(picture)
    own = weights_fingerprint(runs.load_model(trained_run))
    for sha, code in (("0" * 64, 2), (own, 0)):
        folder = tmp_path / sha[:8]
        folder.mkdir()
        save_calibration(folder, replace(fitted, model_sha256=sha))
        assert main(["export", str(trained_run), "--out", str(folder / "fc.onnx")]) == 0
        capsys.readouterr()
        assert main(["predict", "--onnx", str(folder / "fc.onnx"), str(picture), "--json"]) \
            == code
        shown = capsys.readouterr()
        if code:
            assert shown.err.count("error:") == 1 and "another model's weights" in shown.err
        else:                                           # its own: applied, flags and all
            assert json.loads(shown.out.splitlines()[-1])["predictions"][0]["unsure"] \
                is not None
    # the same for a run folder whose calibration is another model's
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    save_calibration(run, replace(fitted, model_sha256="0" * 64))
    assert main(["predict", str(run), str(picture)]) == 2
    assert "mnistlab calibrate" in capsys.readouterr().err
