"""nw.report opened as a plain file in headless Chromium with every network request refused: it asks
for nothing but itself, its bokeh plots draw the scan's numbers, its examples show, its text is text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bokeh_page import canvas_ink, source
from conftest import PAGE_TIMEOUT, artifact_path, has_failed, save_failure_artifacts

import neurowidgets as nw
from neurowidgets.core.images import ImageAdapter
from neurowidgets.reporting import histogram_root, report
from neurowidgets.widgets.distributions import BINS

HOSTILE = "<script>alert(1)</script>"
DIGIT_UNITS = {"relu1": [2], "relu2": [9], "relu3": [18]}

# The pixels of a drawn <img>, read back through a canvas (RGBA, row-major).
_IMAGE_PIXELS = """(img) => {
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const ctx = canvas.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data);
}"""


@pytest.fixture(scope="module")
def digits_report(digits, tmp_path_factory) -> tuple[Path, Any]:
    scan = nw.scan(digits.model, digits.test_images, list(DIGIT_UNITS), k=8, progress=False, cache=False)
    path = report(scan, tmp_path_factory.mktemp("report") / "digits.html", DIGIT_UNITS, data=digits.test_images)
    return path, scan


@pytest.fixture(scope="module")
def text_report(minilm, tmp_path_factory) -> Path:
    from pydoc_data.topics import topics

    model, tokenizer = minilm
    words = " ".join(topics[name] for name in sorted(topics)[:4]).split()
    texts = [HOSTILE] + [" ".join(words[i : i + 24]) for i in range(0, 24 * 15, 24)]
    layer = "encoder.layer.0.intermediate"
    scan = nw.scan(model, texts, [layer], tokenizer=tokenizer, k=4, progress=False, cache=False)
    # A unit whose top example is the hostile text, firing where the shown window holds all its tokens.
    window = [(0, p) for p in range(6, 12)]
    unit = next(u for u in range(scan[layer].num_units) if scan[layer].top_k(u)[0][1:] in window)
    path = tmp_path_factory.mktemp("report") / "text.html"
    return report(scan, path, {layer: [unit]}, data=texts, tokenizer=tokenizer)


class Offline:
    """A page in its own context with the network refused: every request is recorded, and aborted
    unless it is the report file itself."""

    def __init__(self, browser: Any, path: Path):
        self.url = path.as_uri()
        self.context = browser.new_context(viewport={"width": 1200, "height": 1000}, offline=True)
        self.context.set_default_timeout(PAGE_TIMEOUT * 1000)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.route("**/*", lambda route: route.continue_() if route.request.url == self.url else route.abort())
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def open(self, roots: int) -> Any:
        """Load the report and wait until BokehJS has drawn its ``roots`` root views; returns the body."""
        self.page.goto(self.url)
        self.page.wait_for_function(
            """(n) => {
                const doc = window.Bokeh && Bokeh.documents[0];
                if (!doc || !doc.is_idle) return false;
                const roots = doc.roots();
                return roots.length === n && roots.every((root) => Bokeh.index[root.id] !== undefined);
            }""",
            arg=roots,
        )
        return self.page.locator("body")


@pytest.fixture
def offline(browser, request):
    opened: list[Offline] = []

    def open_report(path: Path) -> Offline:
        opened.append(Offline(browser, path))
        return opened[-1]

    yield open_report
    if opened and has_failed(request.node):
        last = opened[-1]
        console = [f"[error] {text}" for text in last.errors] + [f"[request] {url}" for url in last.requests]
        save_failure_artifacts(request.node, last.page, console, [])
    for page in opened:
        page.context.close()


def test_the_digits_report_draws_offline(offline, digits, digits_report):
    path, scan = digits_report
    tab = offline(path)
    body = tab.open(roots=1 + 3)  # the health plot and one histogram per unit
    assert tab.requests == [tab.url]  # nothing fetched, nothing even tried, but the file itself
    assert tab.errors == []

    inks = [canvas_ink(body, plot) for plot in range(2 + 3)]  # the health row has two plots
    assert all(ink["ink"] > 2000 and ink["colours"] > 8 for ink in inks), inks
    for layer, units in DIGIT_UNITS.items():
        counts, _ = scan[layer].histogram(units[0])
        drawn = source(body, f"{histogram_root(layer, units[0])}:{BINS}")["data"]
        assert drawn["count"] == counts[counts > 0].tolist()  # what BokehJS holds is the scan's histogram

    images = tab.page.locator(".example img")
    assert images.count() == 3 * 8
    assert tab.page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth === 8)")
    first_index = scan["relu1"].top_k(2)[0][1]
    expected = ImageAdapter().to_pixels(digits.test_images[first_index : first_index + 1])[0]
    assert np.array_equal(np.array(images.first.evaluate(_IMAGE_PIXELS), np.uint8).reshape(8, 8, 4), expected)
    patches = tab.page.locator(".patch")
    assert patches.count() == 2 * 8  # relu1 and relu2 are 8×8 grids; relu3 has one position
    image, patch = images.first.bounding_box(), patches.first.bounding_box()
    assert patch["width"] == pytest.approx(image["width"] / 8, abs=1)
    assert image["x"] <= patch["x"] and patch["x"] + patch["width"] <= image["x"] + image["width"] + 1

    # The recorder does see a remote request, and refuses it, when the page makes one.
    with tab.page.expect_event("requestfailed") as refused:
        tab.page.evaluate("() => { new Image().src = 'https://example.com/probe.png'; }")
    assert refused.value.url == "https://example.com/probe.png" == tab.requests[-1]

    tab.page.screenshot(path=str(artifact_path("report/digits-top.png")))
    tab.page.locator(".unit").first.screenshot(path=str(artifact_path("report/digits-unit.png")))


def test_the_text_report_shows_dataset_text_as_text(offline, text_report):
    tab = offline(text_report)
    body = tab.open(roots=1 + 1)
    assert tab.requests == [tab.url]
    assert tab.errors == [] and tab.dialogs == []  # the dataset's <script> never ran
    assert canvas_ink(body, 2)["ink"] > 2000
    context = tab.page.locator(".context").first
    assert HOSTILE in context.text_content()
    assert tab.page.locator(".context script").count() == 0
    fire = context.locator(".token.fire")
    assert fire.count() == 1 and float(fire.get_attribute("data-value")) > 0
    tab.page.locator(".unit").first.screenshot(path=str(artifact_path("report/text-unit.png")))
