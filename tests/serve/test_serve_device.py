"""`mnistlab serve --device`: the served model on that device (in every worker); a device this
machine lacks is one error line before the port is taken."""

from __future__ import annotations

import socket

import pytest
import torch
from fastapi.testclient import TestClient

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401
from mnistlab.cli import main
from mnistlab.data import load_dataset
from mnistlab.errors import UserError
from mnistlab.serve import create_app, workers


def test_create_app_on_the_cpu_answers(trained_run):  # noqa: F811
    app = create_app(str(trained_run), device="cpu")
    assert app.state.predictor.device == torch.device("cpu")
    images, _ = load_dataset("mnist", "test")
    with TestClient(app) as client:
        r = client.post("/api/predict", content=png_bytes(render_mnist(images[0], scale=8)),
                        headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and 0 <= r.json()["digit"] <= 9


def test_each_worker_loads_on_the_device_it_is_given(trained_run, monkeypatch):  # noqa: F811
    monkeypatch.setenv(workers.ENV_SOURCE, str(trained_run))
    monkeypatch.setenv(workers.ENV_THREADS, str(torch.get_num_threads()))
    monkeypatch.setenv(workers.ENV_DEVICE, "cpu")
    assert workers.app_from_env().state.predictor.device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(workers.ENV_DEVICE, "cuda")
    with pytest.raises(UserError, match="--device cuda"):
        workers.app_from_env()


@pytest.mark.parametrize("extra", [[], ["--workers", "2"]])
def test_device_cuda_without_one_is_one_error_line_and_the_port_stays_free(
        trained_run, extra, capsys, monkeypatch):  # noqa: F811
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with socket.socket() as s:                     # a port free now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["serve", str(trained_run), "--port", str(port), "--device", "cuda",
                 *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "--device cuda" in err[0]
    with socket.socket() as s:                     # nobody took it
        s.bind(("127.0.0.1", port))
