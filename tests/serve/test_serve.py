"""The web app's API: predictions, every kind of bad input (4xx JSON, server keeps serving),
offline docs, local-only assets, and concurrent clients on a real uvicorn."""

from __future__ import annotations

import re
import struct
import zlib

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401
from mnistlab.data import load_dataset
from mnistlab.inference.sheet import NOTES
from mnistlab.perf.serve_bench import http_load
from mnistlab.serve import create_app
from mnistlab.serve.app import MAX_UPLOAD_BYTES, STATIC
from mnistlab.serve.runner import running_server


@pytest.fixture(scope="module")
def app(trained_run):  # noqa: F811
    return create_app(trained_run)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def digit_png() -> tuple[bytes, int]:
    images, labels = load_dataset("mnist", "test")
    return png_bytes(render_mnist(images[0], scale=10)), int(labels[0])


def assert_error(response: httpx.Response, status: int, code: str, words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert words in body["detail"]


def test_raw_png_body_gives_probabilities_and_the_28x28(client, digit_png):
    data, label = digit_png
    r = client.post("/api/predict", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["digit"] == label
    assert len(body["probabilities"]) == 10 and abs(sum(body["probabilities"]) - 1) < 1e-6
    assert body["probability"] == max(body["probabilities"])
    image = np.array(body["image_28"])
    assert image.shape == (28, 28) and image.min() >= 0 and image.max() <= 1
    assert body["image_28_png"].startswith("data:image/png;base64,")
    assert body["inverted"] is True


def test_a_written_number_is_answered_in_its_own_shape(client):
    # Two test digits side by side: read as a number, not a 500 from the single-digit schema.
    images, _ = load_dataset("mnist", "test")
    pair = np.concatenate([images[0], np.zeros((28, 14), np.uint8), images[1]], axis=1)
    r = client.post("/api/predict", content=png_bytes(render_mnist(pair, scale=10)),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    # (the tests' tiny model may misread one; the shape is what is checked here)
    assert len(body["digits"]) == 2 and body["number"] == "".join(
        str(d["digit"]) for d in body["digits"])
    assert len(body["digits_28_png"]) == 2 and body["calibrated"] in (True, False)
    assert all(len(d["bbox"]) == 4 for d in body["digits"]) and body["marks"] == []


def test_a_mark_between_digits_is_in_the_number(client):
    images, _ = load_dataset("mnist", "test")
    gap = np.zeros((28, 16), np.uint8)
    gap[13:15, 2:14] = 255          # a dash at mid-height (render_mnist squeezes the row square)
    row = np.concatenate([images[0], gap, images[1]], axis=1)
    r = client.post("/api/predict", content=png_bytes(render_mnist(row, scale=10)),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    body = r.json()
    digits = [str(d["digit"]) for d in body["digits"]]
    assert body["number"] == f"{digits[0]}-{digits[1]}"
    (mark,) = body["marks"]
    assert mark["mark"] == "-" and mark["before"] == 1 and len(mark["bbox"]) == 4
    # the dash lies between the two digits' boxes (top, left, bottom, right)
    assert body["digits"][0]["bbox"][3] <= mark["bbox"][1] < mark["bbox"][3] <= \
        body["digits"][1]["bbox"][1]


def test_the_answer_says_what_was_left_out_of_the_picture(client):
    images, _ = load_dataset("mnist", "test")
    img = Image.fromarray(255 - images[0]).resize((280, 280)).convert("L")
    canvas = Image.new("L", (440, 440), 255)
    canvas.paste(img, (80, 80))
    ImageDraw.Draw(canvas).ellipse([20, 20, 420, 420], outline=0, width=10)   # circled
    r = client.post("/api/predict", content=png_bytes(canvas),
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert NOTES["added"] in r.json()["notes"]         # the page shows the notes


def test_multipart_upload_and_jpeg(client, digit_png):
    data, label = digit_png
    r = client.post("/api/predict", files={"file": ("d.png", data, "image/png")})
    assert r.status_code == 200 and r.json()["digit"] == label
    jpeg = png_bytes(Image.open(__import__("io").BytesIO(data)).convert("RGB"), "JPEG")
    r = client.post("/api/predict", content=jpeg, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["digit"] == label


def _bomb_png() -> bytes:
    data = bytearray(png_bytes(Image.new("L", (8, 8), 255)))
    data[16:24] = struct.pack(">II", 30_000, 30_000)           # the IHDR claims 900 MP
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_every_bad_input_is_a_4xx_json_error_and_the_server_keeps_serving(client, digit_png):
    png = {"Content-Type": "image/png"}
    assert_error(client.post("/api/predict", content=b"", headers=png), 400, "empty_body", "no")
    assert_error(client.post("/api/predict", content=b"hello", headers=png),
                 400, "not_an_image", "not an image")
    blank = png_bytes(Image.new("L", (280, 280), 255))
    assert_error(client.post("/api/predict", content=blank, headers=png),
                 422, "no_ink", "no ink found")
    big = b"\x89PNG" + bytes(MAX_UPLOAD_BYTES)
    assert_error(client.post("/api/predict", content=big, headers=png), 413, "too_large", "2,")
    assert_error(client.post("/api/predict", files={"file": ("b.png", big, "image/png")}),
                 413, "too_large", "larger")
    assert_error(client.post("/api/predict", content=_bomb_png(), headers=png),
                 413, "too_large", "too large")
    gif = png_bytes(Image.new("L", (50, 50), 255), "GIF")
    assert_error(client.post("/api/predict", content=gif, headers=png),
                 415, "unsupported_format", "GIF")
    assert_error(client.post("/api/predict", content=digit_png[0],
                             headers={"Content-Type": "text/plain"}),
                 415, "unsupported_type", "text/plain")
    assert_error(client.post("/api/predict", json={"image": "x"}),
                 415, "unsupported_type", "application/json")
    assert_error(client.post("/api/predict", files={"file": ("g.gif", gif, "image/gif")}),
                 415, "unsupported_type", "image/gif")
    assert_error(client.post("/api/predict", data={"other": "x"},
                             files={"picture": ("d.png", digit_png[0], "image/png")}),
                 400, "no_file", "'file'")
    # Chunked bodies (no Content-Length): counted as they arrive, or refused for forms.
    assert_error(client.post("/api/predict", content=iter([big[:MAX_UPLOAD_BYTES], b"x" * 10]),
                             headers=png), 413, "too_large", "larger")
    assert_error(client.post("/api/predict", content=iter([b"--x--\r\n"]),
                             headers={"Content-Type": "multipart/form-data; boundary=x"}),
                 411, "length_required", "Content-Length")
    assert client.get("/api/predict").status_code == 405
    # Still serving, and still right.
    ok = client.post("/api/predict", content=digit_png[0], headers=png)
    assert ok.status_code == 200 and ok.json()["digit"] == digit_png[1]


def test_health_docs_and_openapi_are_local(client):
    assert client.get("/healthz").json() == {"status": "ok", "model": "fc-test",
                                              "backend": "pytorch"}
    spec = client.get("/openapi.json").json()
    assert "/api/predict" in spec["paths"] and "/healthz" in spec["paths"]
    assert client.get("/redoc").status_code == 404  # ReDoc fetches its logo from a CDN
    for page in ("/docs",):
        html = client.get(page).text
        assert "cdn." not in html and "fonts.googleapis" not in html
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/") for a in assets), assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


def test_the_page_and_its_assets_name_no_other_host(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for name in ("pad.js", "app.js", "style.css"):
        assert f"/static/{name}" in page.text and client.get(f"/static/{name}").status_code == 200
    for path in STATIC.iterdir():
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path


def test_concurrent_clients_on_a_real_server(app, digit_png):
    data, label = digit_png
    with running_server(app) as url:
        assert url.startswith("http://127.0.0.1:")
        load = http_load(url, data, requests=24, clients=8)
        answer = httpx.post(url + "/api/predict", content=data,
                            headers={"Content-Type": "image/png"}, timeout=30)
    assert load["requests"] == 24 and load["errors"] == 0
    assert load["p99_ms"] >= load["p50_ms"] > 0
    assert answer.json()["digit"] == label


def test_cli_serve_refuses_a_taken_port_and_conflicting_models(trained_run, capsys):  # noqa: F811
    import socket

    from mnistlab.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(trained_run), "--port", str(port)]) == 2
    assert "choose another port" in capsys.readouterr().err
    # an address this machine does not have: the fix is the host, not the port
    assert main(["serve", str(trained_run), "--host", "999.1.1.1", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "give --host an address of this machine" in err and "--port" not in err
    assert main(["serve", str(trained_run), "--onnx", "m.onnx"]) == 2
    assert "not both" in capsys.readouterr().err
