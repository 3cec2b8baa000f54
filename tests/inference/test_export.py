"""ONNX export: dynamic batch, parity with PyTorch, the CLI, and `predict --onnx`."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401
from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.inference.export import PARITY_TOLERANCE, check_onnx, export_onnx, export_run
from mnistlab.inference.predict import OnnxPredictor, load_predictor, predict_image
from mnistlab.models import build_model


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("onnx") / "fc.onnx"
    return export_run(trained_run, out)


def test_parity_on_1000_test_images(exported):
    assert exported["n"] == 1000
    assert exported["max_abs_diff"] <= PARITY_TOLERANCE
    assert exported["onnx_accuracy"] == exported["torch_accuracy"] > 0.85
    assert exported["ok"] and exported["agree"] == 1.0


def test_batch_dimension_is_dynamic(exported):
    session = ort.InferenceSession(exported["onnx_path"], providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "image" and not isinstance(inp.shape[0], int)
    assert [o.name for o in session.get_outputs()] == ["logits", "features"]
    for n in (1, 7, 300):
        logits, features = session.run(None, {"image": np.zeros((n, 1, 28, 28), np.float32)})
        assert logits.shape == (n, 10) and features.shape[0] == n


def test_cnn_exports_with_parity(tmp_path):
    # Convolutions and pooling go through the exporter too (untrained weights suffice).
    model = build_model("cnn").eval()
    path = export_onnx(model, tmp_path / "cnn.onnx")
    x = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
    r = check_onnx(model, path, x, np.zeros(64, dtype=np.int64), batch_size=24)
    assert r["max_abs_diff"] <= PARITY_TOLERANCE and r["agree"] == 1.0


def test_cli_export_json(trained_run, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "m.onnx"
    assert main(["export", str(trained_run), "--format", "onnx", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"max_abs_diff", "torch_accuracy", "onnx_accuracy"} <= set(result)
    assert out.is_file() and result["max_abs_diff"] <= PARITY_TOLERANCE


def test_predict_with_onnx_matches_torch(trained_run, exported, tmp_path, capsys):  # noqa: F811
    images, _ = load_dataset("mnist", "test")
    picture = tmp_path / "d.png"
    picture.write_bytes(png_bytes(render_mnist(images[3])))
    by_torch = predict_image(load_predictor(trained_run), picture)
    by_onnx = predict_image(OnnxPredictor(exported["onnx_path"]), picture)
    assert by_onnx.digit == by_torch.digit
    assert abs(by_onnx.probability - by_torch.probability) < 1e-5
    assert main(["predict", "--onnx", exported["onnx_path"], str(picture), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["predictions"][0]
    assert pred["digit"] == by_torch.digit


def test_bad_onnx_file_is_a_user_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    picture = tmp_path / "p.png"
    picture.write_bytes(b"")
    assert main(["predict", "--onnx", str(bad), str(picture)]) == 2
    assert "not a readable ONNX model" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "no-run")]) == 2
    assert "not found" in capsys.readouterr().err
