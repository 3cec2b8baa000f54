"""`mnistlab predict --device`: the run's model on that device, inputs moved there, answers on
the CPU; a device this machine lacks is one error line before any picture is read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from app_helpers import render_mnist, trained_run  # noqa: F401
from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.inference.predict import load_predictor, predict_proba


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> str:
    images, _ = load_dataset("mnist", "test")
    path = tmp_path_factory.mktemp("pictures") / "digit.png"
    render_mnist(images[0], scale=8).save(path)
    return str(path)


def test_device_cpu_predicts_as_no_flag(trained_run, picture, capsys):  # noqa: F811
    assert main(["predict", str(trained_run), picture, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["predict", str(trained_run), picture, "--device", "cpu", "--json"]) == 0
    on_cpu = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert on_cpu["predictions"] == plain["predictions"]


def test_the_predictor_keeps_its_model_on_its_device(trained_run):  # noqa: F811
    predictor = load_predictor(trained_run, device=torch.device("cpu"))
    assert predictor.device == torch.device("cpu")
    assert {p.device.type for p in predictor.model.parameters()} == {"cpu"}
    proba = predict_proba(predictor, np.zeros((2, 28, 28), dtype=np.float32))
    assert isinstance(proba, np.ndarray) and proba.shape == (2, 10)


def test_device_cuda_without_one_is_one_error_line(trained_run, picture, tmp_path,  # noqa: F811
                                                   capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    debug = tmp_path / "debug"
    assert main(["predict", str(trained_run), picture, "--device", "cuda",
                 "--debug-dir", str(debug)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--device cuda" in err[0]
    assert captured.out == "" and not debug.exists()


def test_evaluate_real_takes_the_device_too(trained_run, capsys, monkeypatch):  # noqa: F811
    assert main(["evaluate-real", str(trained_run), "--parts", "fonts", "--numbers", "0",
                 "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["parts"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["evaluate-real", str(trained_run), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device cuda" in err[0]
