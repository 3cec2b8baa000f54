"""Screenshots of the lab's views for the docs, taken in headless Chromium (Playwright).

    python -m mnistlab.serve.screenshots docs/figures [--run RUN] [--sample 0]

Serves the runs found under the run roots (runs/, report/runs; point $MNISTLAB_RUNS_DIR
elsewhere for other runs) on 127.0.0.1, loads MNIST test digit ``--sample`` into the drawing
pad, and writes lab-compare.png, lab-inside.png, lab-runs.png and lab-phone.png (a 390 px wide
screen). Needs Chromium (``$MNISTLAB_CHROMIUM``, default /usr/bin/chromium) and Playwright, the
`dev` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mnistlab import runs
from mnistlab.errors import UserError
from mnistlab.serve.app import create_app
from mnistlab.serve.runner import running_server

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--no-default-browser-check"]
ANSWERED = ("[...document.querySelectorAll('.model-col .answer b')]"
            ".every(b => b.textContent !== '?')")


def take(out_dir: Path, run: str | None = None, sample: int = 0) -> list[Path]:
    """Write the four screenshots into ``out_dir``; returns their paths."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("screenshots need Playwright: pip install -e '.[dev]'") from None
    chromium = os.environ.get("MNISTLAB_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).is_file():
        raise UserError(f"no Chromium at {chromium}: apt-get install chromium, or set "
                        "MNISTLAB_CHROMIUM")
    out_dir.mkdir(parents=True, exist_ok=True)
    source = runs.resolve_run(run) if run else runs.best_run()
    written: list[Path] = []
    with running_server(create_app(source)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            for name, viewport, view in (("lab-compare", (1180, 900), "compare"),
                                         ("lab-inside", (1180, 1250), "inside"),
                                         ("lab-phone", (390, 1400), "compare")):
                context = browser.new_context(viewport={"width": viewport[0],
                                                        "height": viewport[1]},
                                              device_scale_factor=1)
                page = context.new_page()
                page.goto(f"{url}/lab#{view}")
                page.wait_for_function("document.querySelectorAll('#picker label').length > 0")
                page.evaluate(f"sampleIndex = {sample}")
                page.click("#sample")
                if view == "compare":
                    page.wait_for_function(ANSWERED, timeout=30000)
                else:
                    page.wait_for_selector(".block canvas", timeout=30000)
                page.wait_for_timeout(500)   # the bars' transition ends
                written.append(out_dir / f"{name}.png")
                page.screenshot(path=str(written[-1]), full_page=True)
                context.close()
            context = browser.new_context(viewport={"width": 1180, "height": 1100})
            page = context.new_page()
            page.goto(f"{url}/lab#runs")
            page.wait_for_selector("#runs-table tbody tr[data-id]")
            first = page.locator("#runs-table tbody tr[data-id] button").first
            cnn = page.locator("#runs-table tbody tr[data-id]", has_text="(cnn)")
            (cnn.locator("button").first if cnn.count() else first).click()
            page.wait_for_selector("#confusion td", timeout=120000)
            written.append(out_dir / "lab-runs.png")
            page.screenshot(path=str(written[-1]), full_page=True)
            context.close()
        finally:
            browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mnistlab.serve.screenshots",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    ap.add_argument("--run", help="the app's own run (default: the best one)")
    ap.add_argument("--sample", type=int, default=0, help="MNIST test digit to show (0)")
    args = ap.parse_args(argv)
    try:
        for path in take(args.out_dir, args.run, args.sample):
            print(path)
    except UserError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
