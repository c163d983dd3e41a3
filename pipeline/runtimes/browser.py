"""The browser cell of the runtime matrix: the web bundle's own page in headless Chromium.

The bundle folder is served on 127.0.0.1 only (an ephemeral port), Debian's Chromium is driven by
playwright-python through `executable_path` (Playwright's own browser download does not work offline), and
the page itself does the work a person's browser would: its verify() (run as it starts) checks the manifest,
hashes every file and runs the golden inputs and pictures with onnxruntime-web on WebAssembly, then real MNIST
test digits are drawn on its canvas with the mouse and the label the page shows is read back.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipeline.deploy.infer import digit_pixels

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this network refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PAD_SCALE = 10  # the page's 280x280 pad is ten times MNIST's 28x28
READY = "window.digitApp && (window.digitApp.ready || window.digitApp.error)"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                                                ".mjs": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """A static server for `folder` on 127.0.0.1 (an ephemeral port); yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def open_page(url: str, ready: str = READY) -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 720})
            page.goto(url)
            page.wait_for_function(ready, timeout=60_000)
            error = page.evaluate("window.digitApp?.error || null")
            if error:
                raise RuntimeError(f"the page could not start: {error}")
            yield page
        finally:
            browser.close()


def draw(page, digit: np.ndarray) -> str:
    """Draw an MNIST digit on the pad, row by row along its ink, with the mouse; return the label shown."""
    page.click("#clear")
    box = page.locator("#pad").bounding_box()
    before = page.evaluate("window.digitApp.predictions")
    strokes = 0
    for row, line in enumerate(digit > 127):
        columns = np.flatnonzero(line)
        for run in np.split(columns, np.flatnonzero(np.diff(columns) > 1) + 1) if len(columns) else []:
            y = box["y"] + (row + 0.5) * PAD_SCALE
            page.mouse.move(box["x"] + (run[0] + 0.5) * PAD_SCALE, y)
            page.mouse.down()
            page.mouse.move(box["x"] + (run[-1] + 0.5) * PAD_SCALE, y, steps=2)
            page.mouse.up()
            strokes += 1
    page.wait_for_function(f"window.digitApp.predictions >= {before + strokes}")
    return page.inner_text("#label")


def golden_digits(bundle: Path) -> list[tuple[np.ndarray, str]]:
    """The bundle's golden pictures as infer.py prepares them (28x28), with their recorded labels."""
    import json

    pictures = json.loads((bundle / "manifest.json").read_text())["golden"]["pictures"]
    return [(digit_pixels(bundle / picture["file"]), picture["label"]) for picture in pictures]


def check_page(bundle: Path, digits: list[tuple[np.ndarray, str]], screenshot: Path | None = None) -> dict:
    """The page's own verify() report, Chromium's version, and the labels it shows for drawn digits (and how
    many of them it flagged "Not a digit?")."""
    with serve(bundle) as url, open_page(url + "index.html") as page:
        verdict = page.evaluate("window.digitApp.verdict")  # the page's own check, made as it started
        if verdict["exit"] != 0:
            raise RuntimeError(verdict["message"])
        report = verdict["report"]
        shown, flags = [], []
        for pixels, _ in digits:
            shown.append(draw(page, pixels))
            flags.append(page.inner_text("#flag"))
        if screenshot is not None:
            page.screenshot(path=str(screenshot))
        browser = page.context.browser.version
    correct = sum(label == expected for label, (_, expected) in zip(shown, digits, strict=True))
    return {**report, "browser": f"Chromium {browser}", "drawn": {"digits": len(digits), "read_correctly": correct,
                                                                  "labels": shown,
                                                                  "flagged_not_a_digit": sum(map(bool, flags))}}


def time_on_wasm(candidates: list[tuple[str, Path, dict]], selection,
                 runtime_files: list[Path]) -> dict[str, list[float]]:
    """Per-round median batch-1 latency (ms) of each (label, model, session options) on onnxruntime-web in
    Chromium: runtimes/wasm_timing/ served with the candidates and onnxruntime-web's `runtime_files`."""
    import shutil
    import tempfile

    harness = Path(__file__).resolve().parent / "wasm_timing"
    page_files = [*harness.iterdir(), Path(__file__).resolve().parents[1] / "deploy" / "golden.mjs"]
    with tempfile.TemporaryDirectory(prefix="wasm-timing-") as scratch:
        folder = Path(scratch)
        for source in (*page_files, *runtime_files):
            shutil.copy(source, folder / source.name)
        specs = []
        for i, (label, model, session) in enumerate(candidates):
            shutil.copy(model, folder / f"candidate_{i}.onnx")
            specs.append({"label": label, "file": f"candidate_{i}.onnx", "session": session})
        with serve(folder) as url, open_page(url + "index.html", ready="window.timingReady") as page:
            return page.evaluate("([c, r, p]) => timeCandidates(c, r, p, 20)",
                                 [specs, selection.rounds, selection.per_round])


def render(folder: Path, page_path: str, screenshot: Path, ready: str, width: int = 1200,
           probe: str | None = None) -> dict:
    """Open `page_path` served from `folder` in a `width`-px window with every request off 127.0.0.1 refused,
    wait for `ready`, save a full-page screenshot; return what a reader would notice: refused requests, console
    errors, page width, and what the `probe` expression (JavaScript, run in the page) returns."""
    from playwright.sync_api import sync_playwright

    refused, errors = [], []
    with serve(folder) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.route(lambda target: not target.startswith(url),
                       lambda route: (refused.append(route.request.url), route.abort()))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url + page_path)
            page.wait_for_function(ready, timeout=30_000)
            page.screenshot(path=str(screenshot), full_page=True)
            scroll_width = page.evaluate("document.documentElement.scrollWidth")
            probed = page.evaluate(probe) if probe else None
        finally:
            browser.close()
    return {"refused": refused, "errors": errors, "scroll_width": scroll_width, "probe": probed}
