"""The lab's JSON API (FastAPI TestClient): runs found under the run roots, compare, inside the
CNN (feature maps, saliency, FC template), confusion, live history, the report, bad input."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401
from lab_helpers import add_epochs, lab_roots  # noqa: F401
from mnistlab import runs
from mnistlab.serve import create_app, explain
from mnistlab.serve.catalog import default_models, find_runs

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(lab_roots):  # noqa: F811
    with TestClient(create_app(lab_roots / "fc-test")) as c:
        yield c


def post(client, url: str, data: bytes, **params):
    return client.post(url, content=data, params=params, headers={"Content-Type": "image/png"})


def assert_error(r, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == code and body["detail"]


def test_runs_lists_finished_and_training_runs_with_defaults(client):
    r = client.get("/api/lab/runs")
    assert r.status_code == 200, r.text
    body = r.json()
    by_id = {run["id"]: run for run in body["runs"]}
    assert set(by_id) == {"fc-test", "cnn-test", "live-fc"}
    assert by_id["fc-test"]["family"] == "fc" and by_id["cnn-test"]["family"] == "cnn"
    assert by_id["cnn-test"]["status"] == "finished" and by_id["live-fc"]["status"] == "training"
    assert by_id["cnn-test"]["preset"] == "seed" and by_id["cnn-test"]["epochs_done"] == 2
    assert 0.5 < by_id["cnn-test"]["test_accuracy"] <= 1
    assert by_id["cnn-test"]["created"] == "2025-01-02T03:04:05Z"
    assert by_id["cnn-test"]["train_seconds"] > 0
    assert by_id["live-fc"]["test_accuracy"] is None
    assert "path" not in by_id["fc-test"]           # no server paths in the API
    assert body["defaults"] == ["fc-test", "cnn-test"]
    assert body["report"] is True


def test_default_models_prefer_a_robust_run(lab_roots):  # noqa: F811
    found = find_runs()
    robust = next(r for r in found if r.id == "cnn-test")
    found.append(dataclasses.replace(robust, id="robust-x", preset="robust", test_accuracy=0.1))
    assert [r.id for r in default_models(found)] == ["fc-test", "cnn-test", "robust-x"]


def test_compare_gives_each_models_ten_probabilities(client, seven):
    r = post(client, "/api/lab/compare", seven, models=["fc-test", "cnn-test"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert [m["id"] for m in body["models"]] == ["fc-test", "cnn-test"]
    for m in body["models"]:
        assert len(m["probabilities"]) == 10
        assert abs(sum(m["probabilities"]) - 1) < 1e-6
        assert m["digit"] == int(np.argmax(m["probabilities"])) == 7
    d = body["disagreement"]
    assert d["agree"] is True and d["digits"] == [7, 7]
    assert 0 <= d["max_total_variation"] <= 1 and len(d["spread"]) == 10
    assert np.array(body["image_28"]).shape == (28, 28)


def test_compare_without_models_uses_the_defaults(client, seven):
    body = post(client, "/api/lab/compare", seven).json()
    assert [m["id"] for m in body["models"]] == ["fc-test", "cnn-test"]


def test_disagreement_measures():
    a, b = np.eye(10)[3], np.eye(10)[8]
    d = explain.disagreement([a, b])
    assert not d.agree and d.digits == [3, 8] and d.max_total_variation == pytest.approx(1.0)
    assert d.spread[3] == 1 and d.spread[0] == 0
    assert explain.disagreement([a, a]).max_total_variation == 0


def test_inside_gives_feature_maps_saliency_and_the_fc_template(client, seven, lab_roots):  # noqa: F811
    r = post(client, "/api/lab/inside", seven, cnn="cnn-test", fc="fc-test")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["cnn"]["id"] == "cnn-test" and abs(sum(body["cnn"]["probabilities"]) - 1) < 1e-6
    # The seed CNN: 64, 128, 256 channels; 28 -> 13 -> 5 -> 1 after each (conv3x3, pool2).
    assert [(b["channels"], b["height"], b["width"]) for b in body["blocks"]] == [
        (64, 13, 13), (128, 5, 5), (256, 1, 1)]
    for b in body["blocks"]:
        assert len(b["maps"]) == b["channels"]
        assert len({m["channel"] for m in b["maps"]}) == b["channels"]
        means = [m["mean"] for m in b["maps"]]
        assert means == sorted(means, reverse=True)     # the most active first
        assert np.array(b["maps"][0]["values"]).shape == (b["height"], b["width"])
        assert min(np.array(m["values"]).min() for m in b["maps"]) >= 0   # after ReLU
    sal = body["saliency"]
    assert sal["method"] == "occlusion" and sal["target"] == body["cnn"]["digit"]
    assert np.array(sal["values"]).shape == (28, 28)
    t = body["fc_template"]
    assert body["fc"]["id"] == "fc-test" and t["digit"] == body["fc"]["digit"]
    values = np.array(t["values"])
    assert values.shape == (28, 28) and t["scale"] == pytest.approx(np.abs(values).max(), 1e-3)
    # W2[c] @ W1, from the run's own weights.
    tensors, _ = runs.read_safetensors(lab_roots / "fc-test" / runs.WEIGHTS)
    w1, w2 = tensors["1.weight"].double(), tensors["3.weight"].double()
    expect = (w2[t["digit"]] @ w1).reshape(28, 28).numpy()
    assert np.allclose(values, expect, atol=1e-4)


def test_inside_with_gradient_saliency_and_top_maps(client, seven):
    body = post(client, "/api/lab/inside", seven, saliency="gradient", top=5).json()
    assert body["saliency"]["method"] == "gradient"
    s = np.array(body["saliency"]["values"])
    assert s.shape == (28, 28) and s.min() >= 0 and s.max() == pytest.approx(1.0)
    assert [len(b["maps"]) for b in body["blocks"]] == [5, 5, 5]
    assert [b["channels"] for b in body["blocks"]] == [64, 128, 256]


def test_occlusion_saliency_is_positive_on_the_ink_that_makes_the_answer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)).eval()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[4, :392] = 1.0     # class 4 likes ink in the top half
    image = np.zeros((28, 28), np.float32)
    image[5:9, 10:14] = 1.0                # ink in the top half
    s = explain.occlusion_saliency(model, image, 4)
    assert s[6, 11] > 0 and s[20, 20] == 0


def test_fc_template_endpoint_and_a_cnn_refused(client):
    r = client.get("/api/lab/fc-template/fc-test", params={"digit": 3})
    assert r.status_code == 200 and np.array(r.json()["values"]).shape == (28, 28)
    assert_error(client.get("/api/lab/fc-template/cnn-test", params={"digit": 3}),
                 422, "not_an_fc")
    assert_error(client.get("/api/lab/fc-template/fc-test", params={"digit": 12}),
                 422, "bad_request")


def test_feature_maps_for_the_other_cnn_layouts():
    from mnistlab.models import build_model

    image = np.random.default_rng(0).random((28, 28)).astype(np.float32)
    for name in ("speedrun", "best"):
        blocks = explain.feature_maps(build_model(name).eval(), image)
        assert [b.channels for b in blocks] == ([16, 32, 64] if name == "speedrun"
                                                else [32, 64, 128])
        assert [b.height for b in blocks] == [14, 7, 3]
    # no pooling: each stage ends in a stride-2 conv, which is where a block ends
    blocks = explain.feature_maps(build_model("strided").eval(), image)
    assert [(b.channels, b.height, b.width) for b in blocks] == [(32, 12, 12), (64, 4, 4)]


def test_run_detail_history_and_confusion(client):
    r = client.get("/api/lab/runs/cnn-test")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["run"]["id"] == "cnn-test" and body["train"]["epochs"] == 2
    assert [row["epoch"] for row in body["history"]["rows"]] == [1, 2]
    c = client.get("/api/lab/runs/fc-test/confusion").json()
    m = np.array(c["matrix"])
    assert m.shape == (10, 10) and m.sum() == c["images"] == 10_000
    assert c["accuracy"] == pytest.approx(np.trace(m) / m.sum())
    assert c["accuracy"] > 0.9


def test_png_figures(client):
    for url in ("/api/lab/runs/cnn-test/curves.png", "/api/lab/runs/fc-test/confusion.png"):
        r = client.get(url)
        assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n", url


def test_a_training_runs_history_grows(client, lab_roots):  # noqa: F811
    first = client.get("/api/lab/runs/live-fc/history").json()
    assert first["status"] == "training" and first["epochs_done"] == 1
    assert first["epochs_planned"] == 5
    add_epochs(lab_roots / "live-fc", 3)
    later = client.get("/api/lab/runs/live-fc/history").json()
    assert later["epochs_done"] == 3 and len(later["rows"]) == 3
    assert_error(client.get("/api/lab/runs/live-fc/confusion"), 409, "no_weights")


def test_report_is_served_and_confined(client):
    r = client.get("/report")
    assert r.status_code == 200 and "The report" in r.text
    assert_error(client.get("/report/figures/missing.png"), 404, "not_found")
    assert_error(client.get("/report/..%2F..%2Fetc%2Fpasswd"), 404, "not_found")


def test_lab_page_and_its_assets_are_local(client):
    html = client.get("/lab").text
    assert "/static/lab.js" in html and "/static/lab.css" in html
    assert "http://" not in html and "https://" not in html
    assert "/static/pad.js" in html                   # the drawing pad both pages share
    for asset in ("/static/pad.js", "/static/lab.js", "/static/lab.css"):
        body = client.get(asset).text
        assert "http://" not in body and "https://" not in body, asset


def test_sample_digit(client):
    r = client.get("/api/lab/sample", params={"index": 0})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_docs_list_the_lab_api(client):
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/api/lab/runs", "/api/lab/compare", "/api/lab/inside",
              "/api/lab/runs/{run_id}/history", "/api/lab/fc-template/{run_id}"):
        assert p in paths


@pytest.mark.parametrize(("url", "params", "status", "code"), [
    ("/api/lab/compare", {"models": ["nope"]}, 404, "unknown_run"),
    ("/api/lab/compare", {"models": ["fc-test", "fc-test"]}, 400, "bad_models"),
    ("/api/lab/compare", {"models": ["live-fc"]}, 409, "no_weights"),
    ("/api/lab/inside", {"cnn": "fc-test"}, 422, "not_a_cnn"),
    ("/api/lab/inside", {"saliency": "magic"}, 422, "bad_request"),
    ("/api/lab/inside", {"top": 0}, 422, "bad_request"),
])
def test_bad_parameters_give_4xx_json(client, seven, url, params, status, code):
    assert_error(post(client, url, seven, **params), status, code)


def test_bad_bodies_give_4xx_json(client):
    from PIL import Image

    assert_error(post(client, "/api/lab/compare", b""), 400, "empty_body")
    assert_error(post(client, "/api/lab/compare", b"not an image"), 400, "not_an_image")
    blank = png_bytes(Image.new("L", (64, 64), 255))
    assert_error(post(client, "/api/lab/inside", blank), 422, "no_ink")
    r = client.post("/api/lab/compare", content=b"x", headers={"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_type")
    big = b"\x89PNG" + b"\0" * (3 * 1024 * 1024)
    assert_error(post(client, "/api/lab/compare", big), 413, "too_large")
    assert_error(client.get("/api/lab/runs/nope"), 404, "unknown_run")
    # the server keeps answering
    assert client.get("/api/lab/runs").status_code == 200


def test_runs_are_listed_newest_first_by_when_they_were_made(tmp_path):
    # a run copied in later keeps its own date, and its place: by the file's time it was
    # listed above runs made after it
    root = tmp_path / "runs"
    for name, created in (("older-copied-last", "2026-01-01T00:00:00Z"),
                          ("newer", "2026-06-01T00:00:00Z"),
                          ("oldest", "2025-01-01T00:00:00Z")):
        (root / name).mkdir(parents=True)
        (root / name / runs.CONFIG).write_text(json.dumps({"model": "fc", "created": created}))
    os.utime(root / "newer" / runs.CONFIG, (1, 1))               # touched long ago
    found = find_runs([root])
    assert [r.name for r in found] == ["newer", "older-copied-last", "oldest"]
