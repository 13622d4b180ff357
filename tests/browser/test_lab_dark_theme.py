"""JupyterLab's dark theme: every view (explorer, LayerHealth, Distributions, CoActivation,
Interventions) is readable: each text's colour contrasts with the background it is drawn on (WCAG's
3:1 for the smallest contrast allowed here), and a screenshot of each view is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Lab

THEMES = "/lab/api/settings/@jupyterlab/apputils-extension:themes"
MIN_CONTRAST = 3.0

CELLS = [
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "d = digits(lr=0.05)\n"
    's = nw.scan(d.model, d.test_images, ["relu1", "relu2", "relu3"], k=8, progress=False, cache=False)\n'
    'ex = nw.explore(d.model, d.test_images[:4], layer="relu2", data=d.test_images, scan=s, selected_units=[3, 5])\n'
    "ex",
    "nw.LayerHealth(s, follow=ex)",
    "nw.Distributions(s, follow=ex)",
    "nw.CoActivation(ex)",
    "nw.Interventions(ex, labels=d.test_labels)",
]

# For each element with text of its own: its colour and the first opaque background behind it.
LOW_CONTRAST = """(root, minimum) => {
    const rgba = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
    const luminance = ([r, g, b]) => {
        const c = [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    };
    const background = (el) => {
        for (let node = el; node; node = node.parentElement) {
            const bg = rgba(getComputedStyle(node).backgroundColor);
            if (bg.length >= 3 && (bg.length === 3 || bg[3] > 0.5)) return bg;
        }
        return [255, 255, 255];
    };
    const bad = [];
    for (const el of root.querySelectorAll("*")) {
        const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
        if (!own || !el.getClientRects().length) continue;
        const fg = rgba(getComputedStyle(el).color), bg = background(el);
        const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
        const ratio = (a + 0.05) / (b + 0.05);
        const what = `${el.className || el.tagName} "${el.textContent.trim().slice(0, 30)}"`;
        if (ratio < minimum) bad.push(`${what}: ${ratio.toFixed(2)}`);
    }
    return bad;
}"""


@pytest.fixture
def dark_lab(page: Any, lab_server: Any) -> Iterator[Lab]:
    """`lab` with the JupyterLab Dark theme, set through Lab's settings API before the page loads and
    reset after (the shared server needs no twin)."""
    lab_server.api("PUT", THEMES, {"raw": json.dumps({"theme": "JupyterLab Dark"})})
    try:
        yield Lab(page, lab_server)
    finally:
        lab_server.api("PUT", THEMES, {"raw": "{}"})


def test_every_view_is_readable_in_the_dark_theme(dark_lab):
    page = dark_lab.page
    dark_lab.run_notebook("dark_theme.ipynb", CELLS)
    assert page.evaluate("document.body.dataset.jpThemeLight") == "false", "the dark theme is on"
    views = {
        "explorer": page.locator(".nw-explorer"),
        "layer_health": page.locator(".nw-bokeh-host").nth(0),
        "distributions": page.locator(".nw-bokeh-host").nth(1),
        "coactivation": page.locator(".nw-bokeh-host").nth(2),
        "interventions": page.locator(".nw-interventions"),
    }
    page.locator(".nw-bokeh-host").nth(2).locator(".nw-bokeh-plot[data-ready='1']").wait_for()
    page.locator(".nw-explorer .nw-example").first.wait_for()
    unreadable = {}
    for name, view in views.items():
        view.scroll_into_view_if_needed()
        dark_lab.screenshot(view, f"dark_theme/{name}.png")
        bad = view.evaluate(LOW_CONTRAST, MIN_CONTRAST)
        if bad:
            unreadable[name] = bad
    assert not unreadable, json.dumps(unreadable, indent=1)
