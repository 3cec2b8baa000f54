"""The lab in a real browser (Playwright driving Debian's Chromium, headless, off the network):
draw a stroke and see two models' bars, switch a model, open the feature maps and see them
drawn, open the runs page and a run's curve, watch a training run's curve grow, use it by
keyboard and on a phone-sized screen; no request leaves 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_browser import _off_host, browser  # noqa: F401  (browser: the shared fixture)

from app_helpers import trained_run  # noqa: F401
from lab_helpers import add_epochs, lab_roots  # noqa: F401
from mnistlab.serve import create_app
from mnistlab.serve.runner import running_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def server(lab_roots) -> Iterator[str]:  # noqa: F811
    with running_server(create_app(lab_roots / "fc-test")) as url:
        yield url


@pytest.fixture
def page(browser, server) -> Iterator[tuple[object, list[str]]]:  # noqa: F811
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    yield pg, requests
    context.close()


def draw_seven(pg) -> None:
    box = pg.locator("#pad").bounding_box()
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    pg.mouse.move(x0 + 0.25 * w, y0 + 0.2 * h)
    pg.mouse.down()
    pg.mouse.move(x0 + 0.75 * w, y0 + 0.2 * h, steps=12)
    pg.mouse.move(x0 + 0.42 * w, y0 + 0.85 * h, steps=16)
    pg.mouse.up()


ANSWERED = ("[...document.querySelectorAll('.model-col .answer b')]"
            ".every(b => b.textContent !== '?')")


def test_draw_and_compare_two_models_then_switch_one(page, server):
    pg, requests = page
    pg.goto(server + "/lab#compare")
    pg.wait_for_selector(".model-col[data-id='cnn-test']")
    assert pg.locator(".model-col").count() == 2          # the defaults: best FC, best CNN
    draw_seven(pg)
    pg.wait_for_function(ANSWERED, timeout=20000)
    pg.wait_for_timeout(400)
    for col in ("fc-test", "cnn-test"):
        widths = pg.eval_on_selector_all(f".model-col[data-id='{col}'] .fill",
                                         "els => els.map(e => parseFloat(e.style.width))")
        assert len(widths) == 10 and abs(sum(widths) - 100) < 1.5
    assert pg.inner_text("#verdict")
    assert pg.locator("#spread li").count() == 10

    # switch a model: drop the CNN, the column goes and the FC still answers
    pg.locator("#picker input[value='cnn-test']").uncheck()
    pg.wait_for_function("document.querySelectorAll('.model-col').length === 1")
    pg.wait_for_function(ANSWERED, timeout=20000)
    pg.locator("#picker input[value='cnn-test']").check()
    pg.wait_for_function("document.querySelectorAll('.model-col').length === 2")
    pg.wait_for_function(ANSWERED, timeout=20000)
    assert _off_host(requests) == []


def test_a_bad_upload_clears_the_last_answer(page, server, tmp_path):
    # the error showed, but the canvas and the columns still said what the 7 before it was
    pg, _ = page
    pg.goto(server + "/lab#compare")
    pg.wait_for_selector(".model-col[data-id='cnn-test']")
    draw_seven(pg)
    pg.wait_for_function(ANSWERED, timeout=20000)
    junk = tmp_path / "notes.png"
    junk.write_bytes(b"not a picture at all")
    pg.set_input_files("#upload", str(junk))
    pg.wait_for_function("document.getElementById('status').classList.contains('error')",
                         timeout=20000)
    assert pg.eval_on_selector_all(".model-col .answer b", "els => els.map(b => b.textContent)") \
        == ["?", "?"]
    ink = pg.evaluate("""() => { const c = document.getElementById('pad');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let dark = 0; for (let i = 0; i < d.length; i += 4) if (d[i] < 128) dark++;
        return dark; }""")
    assert ink == 0                                       # a blank pad, not the 7


def test_inside_the_cnn_draws_feature_maps_saliency_and_template(page, server):
    pg, requests = page
    pg.goto(server + "/lab#inside")
    pg.wait_for_function("document.getElementById('cnn-select').value === 'cnn-test'")
    draw_seven(pg)
    pg.wait_for_selector(".block[data-block='3'] canvas", timeout=20000)
    assert pg.locator(".block").count() == 3
    assert pg.locator(".block[data-block='1'] canvas").count() == 24     # the most active 24
    pg.click(".block[data-block='1'] .more")
    pg.wait_for_function("document.querySelectorAll(\".block[data-block='1'] canvas\").length"
                         " === 64")
    # the maps are drawn: some pixel of the first map is not black
    lit = pg.eval_on_selector(".block[data-block='1'] canvas", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return d.some((v, i) => i % 4 !== 3 && v > 0); }""")
    assert lit
    assert [pg.eval_on_selector(f"#{i}", "c => c.width") for i in ("saliency", "template")] \
        == [28, 28]
    assert "Occlusion" in pg.inner_text("#saliency-caption")
    pg.select_option("#saliency-method", "gradient")
    pg.wait_for_function("document.getElementById('saliency-caption').textContent"
                         ".startsWith('Input gradient')", timeout=20000)
    assert "fc-test" in pg.inner_text("#template-caption")
    assert _off_host(requests) == []


def test_runs_page_shows_a_runs_curve_and_confusion(page, server):
    pg, requests = page
    pg.goto(server + "/lab#runs")
    pg.wait_for_selector("#runs-table tr[data-id='cnn-test']")
    assert pg.locator("#runs-table tbody tr").count() == 3
    pg.click("#runs-table tr[data-id='cnn-test'] button")
    pg.wait_for_selector("#curve-acc polyline.train")
    assert pg.locator("#curve-acc circle.train").count() == 2            # two epochs
    assert pg.locator("#curve-loss polyline.test").count() == 1
    pg.wait_for_selector("#confusion td", timeout=60000)
    assert pg.locator("#confusion td").count() == 100
    assert _off_host(requests) == []


def test_a_training_runs_curve_grows(page, server, lab_roots):  # noqa: F811
    pg, _ = page
    add_epochs(lab_roots / "live-fc", 1)
    pg.goto(server + "/lab#runs")
    pg.click("#runs-table tr[data-id='live-fc'] button")
    pg.wait_for_function("document.querySelectorAll('#curve-acc circle.train').length === 1")
    assert "training" in pg.inner_text("#run-status")
    add_epochs(lab_roots / "live-fc", 3)                 # two more epochs land
    pg.wait_for_function("document.querySelectorAll('#curve-acc circle.train').length === 3",
                         timeout=15000)
    assert "epoch 3 of 5" in pg.inner_text("#run-status")


def test_keyboard_only(page, server):
    pg, _ = page
    pg.goto(server + "/lab")
    pg.wait_for_selector(".model-col[data-id='cnn-test']")
    pg.focus("#sample")
    pg.keyboard.press("Enter")                           # an MNIST test digit (a 7)
    pg.wait_for_function(ANSWERED, timeout=20000)
    assert pg.inner_text(".model-col[data-id='cnn-test'] .answer b") == "7"
    pg.focus("#pad")
    pg.keyboard.press("c")                               # clears
    assert pg.inner_text(".model-col[data-id='cnn-test'] .answer b") == "?"
    pg.focus(".tabs a[data-view='runs']")
    pg.keyboard.press("Enter")
    pg.wait_for_selector("#view-runs:not([hidden]) #runs-table tr[data-id='fc-test']")


def test_phone_sized_screen_with_a_finger(browser, server):  # noqa: F811
    context = browser.new_context(viewport={"width": 390, "height": 844}, has_touch=True,
                                  is_mobile=True)
    pg = context.new_page()
    try:
        pg.goto(server + "/lab")
        pg.wait_for_selector(".model-col[data-id='cnn-test']")
        # nothing wider than the screen
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390
        box = pg.locator("#pad").bounding_box()
        cdp = context.new_cdp_session(pg)
        x, y0 = box["x"] + box["width"] / 2, box["y"] + 0.15 * box["height"]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart",
                                              "touchPoints": [{"x": x, "y": y0}]})
        for i in range(1, 21):
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [
                {"x": x, "y": y0 + i * 0.035 * box["height"]}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        pg.wait_for_function(ANSWERED, timeout=20000)
    finally:
        context.close()
