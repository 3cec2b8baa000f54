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
