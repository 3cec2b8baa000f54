"""The draw-a-digit page in a real browser: Playwright driving Debian's Chromium (headless,
kept off the network) against the app on 127.0.0.1. Draws with the mouse, uploads a file,
clears, opens the API docs, and checks that no request left 127.0.0.1.

Skipped locally when Chromium or Playwright is missing; under CI (CI=true) they must exist.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from app_helpers import png_bytes, render_mnist, trained_run  # noqa: F401
from mnistlab.data import load_dataset
from mnistlab.serve import create_app
from mnistlab.serve.runner import running_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
# No background traffic of its own: no QUIC probes, updates, sync, first-run pings.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check", "--metrics-recording-only"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require_browser() -> None:
    missing = []
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        missing.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright for Python (pip install -e '.[dev]')")
    if missing:
        if IN_CI:
            pytest.fail("browser test needs " + " and ".join(missing))
        pytest.skip("browser test needs " + " and ".join(missing))


@pytest.fixture(scope="module")
def server(trained_run) -> Iterator[str]:  # noqa: F811
    with running_server(create_app(trained_run)) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server) -> Iterator[tuple[object, list[str]]]:
    context = browser.new_context(viewport={"width": 900, "height": 700})
    pg = context.new_page()
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    yield pg, requests
    context.close()


def _off_host(requests: list[str]) -> list[str]:
    return [u for u in requests
            if urlparse(u).scheme not in ("data", "blob") and urlparse(u).hostname != "127.0.0.1"]


def test_draw_a_digit_shows_prediction_bars_and_the_28x28(page, server, tmp_path):
    pg, requests = page
    pg.goto(server + "/")
    pg.wait_for_function("document.getElementById('model').textContent.startsWith('model:')")
    assert pg.locator("#bars .bar").count() == 10

    box = pg.locator("#pad").bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    # A "7": the top bar, then the long diagonal, drawn as one stroke in small steps.
    pg.mouse.move(x0 + 0.25 * w, y0 + 0.2 * h)
    pg.mouse.down()
    pg.mouse.move(x0 + 0.75 * w, y0 + 0.2 * h, steps=12)
    pg.mouse.move(x0 + 0.42 * w, y0 + 0.85 * h, steps=16)
    pg.mouse.up()

    pg.wait_for_function("document.getElementById('digit').textContent !== '?'", timeout=15000)
    pg.wait_for_timeout(400)  # the last, debounced answer lands
    digit = pg.inner_text("#digit")
    assert digit == "7"
    assert pg.inner_text("#probability").endswith("%")
    widths = pg.eval_on_selector_all("#bars .fill",
                                     "els => els.map(e => parseFloat(e.style.width))")
    assert len(widths) == 10 and abs(sum(widths) - 100) < 1.5
    assert pg.locator("#bars .bar.best .label").inner_text() == digit
    assert pg.get_attribute("#seen", "src").startswith("data:image/png;base64,")
    natural = pg.eval_on_selector("#seen", "img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [28, 28]
    pg.screenshot(path=str(tmp_path / "page.png"))

    pg.click("#clear")
    assert pg.inner_text("#digit") == "?"
    assert any(u.endswith("/api/predict") for u in requests)
    assert _off_host(requests) == []


def test_draw_with_a_finger(browser, server):
    # Touch input through Chromium's DevTools protocol: the page sees pointer events of type
    # "touch", as on a phone.
    context = browser.new_context(viewport={"width": 400, "height": 860}, has_touch=True,
                                  is_mobile=True)
    pg = context.new_page()
    try:
        pg.goto(server + "/")
        box = pg.locator("#pad").bounding_box()
        cdp = context.new_cdp_session(pg)
        x, y0 = box["x"] + box["width"] / 2, box["y"] + 0.15 * box["height"]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart",
                                              "touchPoints": [{"x": x, "y": y0}]})
        for i in range(1, 21):  # a "1": straight down
            y = y0 + i * 0.035 * box["height"]
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove",
                                                  "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        pg.wait_for_function("document.getElementById('digit').textContent !== '?'",
                             timeout=15000)
        assert pg.inner_text("#digit") == "1"
    finally:
        context.close()


def test_upload_a_picture(page, server, tmp_path):
    pg, requests = page
    images, labels = load_dataset("mnist", "test")
    picture = tmp_path / "digit.png"
    picture.write_bytes(png_bytes(render_mnist(images[1], scale=6)))
    pg.goto(server + "/")
    pg.set_input_files("#upload", str(picture))
    pg.wait_for_function("document.getElementById('digit').textContent !== '?'", timeout=15000)
    assert pg.inner_text("#digit") == str(int(labels[1]))
    assert _off_host(requests) == []


def test_a_number_with_a_dash_shows_its_boxes(page, server, tmp_path):
    pg, requests = page
    images, _ = load_dataset("mnist", "test")
    gap = np.zeros((28, 16), np.uint8)
    gap[13:15, 2:14] = 255                       # a dash between two test digits
    picture = tmp_path / "number.png"
    picture.write_bytes(png_bytes(render_mnist(np.concatenate([images[0], gap, images[1]],
                                                              axis=1), scale=10)))
    pg.goto(server + "/")
    pg.set_input_files("#upload", str(picture))
    pg.wait_for_function("document.getElementById('digit').textContent.includes('-')",
                         timeout=15000)
    assert len(pg.inner_text("#digit")) == 3
    assert pg.locator("#boxes .box").count() == 3          # two digits and the mark
    assert pg.locator("#boxes .box.mark span").inner_text() == "-"
    status = pg.inner_text("#status")        # what reading changed, as under a single digit
    assert "2 digits read left to right" in status and "thin strokes widened by" in status
    assert _off_host(requests) == []


def test_blank_upload_shows_the_error(page, server, tmp_path):
    from PIL import Image

    pg, _ = page
    blank = tmp_path / "blank.png"
    blank.write_bytes(png_bytes(Image.new("L", (100, 100), 255)))
    pg.goto(server + "/")
    pg.set_input_files("#upload", str(blank))
    pg.wait_for_function("document.getElementById('status').textContent.includes('no ink')",
                         timeout=15000)
    assert pg.inner_text("#digit") == "?"


def test_api_docs_render_offline(page, server):
    pg, requests = page
    pg.goto(server + "/docs")
    pg.wait_for_selector('[data-path="/api/predict"]', timeout=20000)
    assert _off_host(requests) == []


def test_a_tap_leaves_a_dot(page, server):
    pg, _ = page
    pg.goto(server + "/")
    box = pg.locator("#pad").bounding_box()
    pg.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    dark = pg.evaluate("""() => {
        const c = document.getElementById('pad');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4) if (px[i] < 128) n++;
        return n; }""")
    assert dark > 300                         # a round dot of the brush's width (24 px)


def test_an_answer_to_a_cleared_drawing_is_never_shown(page, server):
    pg, _ = page
    pg.goto(server + "/")
    # every answer arrives late, as on a loaded machine: Clear comes first
    pg.evaluate("""() => { const f = window.fetch;
        window.fetch = (...a) => new Promise((r) => setTimeout(r, 600)).then(() => f(...a)); }""")
    box = pg.locator("#pad").bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    pg.mouse.move(x0 + 0.5 * w, y0 + 0.15 * h)
    pg.mouse.down()
    pg.mouse.move(x0 + 0.5 * w, y0 + 0.85 * h, steps=10)
    pg.mouse.up()
    pg.wait_for_timeout(200)                  # the request is out
    pg.click("#clear")
    pg.wait_for_timeout(1500)                 # its answer has come back
    assert pg.inner_text("#digit") == "?"
    assert pg.inner_text("#status") == "draw something"


def test_upload_is_reachable_from_the_keyboard(page, server):
    pg, _ = page
    pg.goto(server + "/")
    pg.focus("#clear")
    pg.keyboard.press("Tab")
    assert pg.evaluate("document.activeElement.id") == "upload-label"
    # the file input is asked to open its chooser (whether headless Chromium shows one
    # depends on the window's focus, which earlier tests' pages may hold)
    pg.evaluate("""() => document.getElementById('upload').addEventListener('click',
        (ev) => { window.chooserAsked = (window.chooserAsked || 0) + 1; ev.preventDefault(); })""")
    pg.keyboard.press("Enter")
    pg.keyboard.press(" ")
    assert pg.evaluate("window.chooserAsked") == 2


def test_boxes_lie_on_a_wide_uploaded_number(page, server, tmp_path):
    pg, _ = page
    images, _ = load_dataset("mnist", "test")
    picture = tmp_path / "wide.png"
    row = np.concatenate([images[0], np.zeros((28, 8), np.uint8), images[1]], axis=1)
    picture.write_bytes(png_bytes(render_mnist(row, scale=8)))
    pg.goto(server + "/")
    pg.set_input_files("#upload", str(picture))
    pg.wait_for_selector("#boxes .box", timeout=15000)
    pad = pg.locator("#pad").bounding_box()
    for b in pg.locator("#boxes .box").all():
        r = b.bounding_box()
        # the picture is wider than tall: shown in the pad's middle band, and so are its boxes
        assert pad["y"] + 0.2 * pad["height"] < r["y"] + r["height"] / 2 < \
            pad["y"] + 0.8 * pad["height"]
        assert pad["x"] <= r["x"] and r["x"] + r["width"] <= pad["x"] + pad["width"] + 1
    digit = pg.locator("#digit").bounding_box()
    assert pg.evaluate("document.getElementById('digit').scrollWidth") <= digit["width"] + 1
