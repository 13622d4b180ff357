"""Distributions and CoActivation next to an explorer in JupyterLab: a click on a correlation cell
selects both units in the explorer and the histograms show them; a click in the explorer's grid moves
both plots, in the page. CoActivation's sample of another layer arrives from the kernel's background
work, its progress in the matrix's title."""

from __future__ import annotations

import json
import re

from bokeh_page import canvas_ink, data_point, source
from conftest import unhover, wait_until
from grid_page import click_unit

CELLS = [
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "from neurowidgets.widgets.distributions import Distributions\n"
    "from neurowidgets.widgets import coactivation\n"
    "from neurowidgets.widgets.coactivation import CoActivation\n"
    "import threading, time\n"
    "d = digits()\n"
    "def slow(module, args, output):  # the sample's forward passes (the background's) take their time\n"
    "    if threading.current_thread() is not threading.main_thread():\n"
    "        time.sleep(0.05)\n"
    "d.model.register_forward_hook(slow)\n"
    "coactivation.CHUNK_POSITIONS = 16  # 16 examples a chunk: progress to see\n"
    's = nw.scan(d.model, d.test_images, ["relu2", "relu3"], k=8, progress=False, cache=False)\n'
    'ex = nw.explore(d.model, d.test_images[:4], layer="relu3", data=d.test_images, scan=s)\n'
    "ex",
    "dist = Distributions(s, follow=ex)\ndist",
    "co = CoActivation(ex)\nco",
]


def isolated(xs: list[float], ys: list[float]) -> int:
    """The index of the point farthest from every other (in data units), so that a click hits it alone."""
    points = list(zip(xs, ys, strict=True))
    return max(
        range(len(points)),
        key=lambda i: min(abs(points[i][0] - x) + abs(points[i][1] - y) for j, (x, y) in enumerate(points) if j != i),
    )


_PLOT = """const plotIn = (host, plot) => {
    for (const root of Object.values(window.Bokeh.index)) {
        if (!host.contains(root.el)) continue;
        const found = [];
        const walk = (view) => {
            if (view.frame && view.canvas_view) found.push(view);
            for (const child of view.child_views ?? []) walk(child);
        };
        walk(root);
        return found[plot].model;
    }
    return null;
};"""


def title(host, plot: int) -> str:
    """The title of plot number ``plot`` inside ``host``, as BokehJS holds it (drawn on the canvas)."""
    return host.evaluate(f"(host, plot) => {{ {_PLOT} return plotIn(host, plot)?.title.text ?? null; }}", plot)


def record_titles(host, plot: int) -> None:
    """From now on, keep every text the title of plot ``plot`` takes (a short-lived one included) in
    ``host.titles``, read back with :func:`recorded_titles`."""
    host.evaluate(
        f"(host, plot) => {{ {_PLOT} const title = plotIn(host, plot).title; host.titles = [];"
        " title.properties.text.change.connect(() => host.titles.push(title.text)); }",
        plot,
    )


def recorded_titles(host) -> list[str]:
    return host.evaluate("host => host.titles")


def drawn_units(host, name: str) -> set[int]:
    return {int(u) for u in source(host, name)["data"]["unit"]}


def test_companions_follow_the_explorer_and_select_in_it(lab):
    page = lab.page
    lab.run_notebook("companions.ipynb", CELLS)
    hosts = page.locator(".nw-bokeh-host")
    for i in (0, 1):
        hosts.nth(i).locator(".nw-bokeh-plot[data-ready='1']").wait_for()
    dist, co = hosts.nth(0), hosts.nth(1)
    lab.eval("co.wait(timeout=60)")  # the sample's maxima, computed in the background
    first = json.loads(lab.eval("print(ex.selected_units)"))
    assert len(first) == 1
    wait_until(lambda: drawn_units(dist, "nw-dist-bins") == set(first), f"the histogram of unit {first}")
    for host, plot in ((dist, 0), (co, 0), (co, 1)):
        host.scroll_into_view_if_needed()
        ink = canvas_ink(host, plot)
        assert ink["ink"] > 3000 and ink["colours"] > 5, f"plot {plot} looks blank: {ink}"
    assert len(source(dist, "nw-dist-current")["data"]["x"]) == 1  # the current input's line

    # A correlation cell: both units selected in the explorer (kernel), both histograms drawn (page).
    units = json.loads(lab.eval("print(co.matrix_units)"))
    assert len(units) == 12
    a, b = units[7], units[2]
    co.scroll_into_view_if_needed()
    page.mouse.click(*data_point(co, 0, str(a), str(b)))
    lab.poll("ex.selected_units", str([a, b]))
    wait_until(lambda: drawn_units(dist, "nw-dist-bins") == {a, b}, f"the histograms of units {a}, {b}")
    pair = source(co, "nw-coact-pair")["data"]
    assert sorted(zip(pair["x"], pair["y"], strict=True)) == sorted([(str(a), str(b)), (str(b), str(a))])
    assert lab.eval("print(co.matrix_units)").strip() == str(units)  # the matrix kept its units
    assert len(source(co, "nw-coact-matrix")["data"]["r"]) == 144
    scatter = source(co, "nw-coact-scatter")["data"]
    expected = json.loads(lab.eval(f"print(co.activations()[:, {a}].tolist())"))
    assert max(abs(x - e) for x, e in zip(scatter["x"], expected, strict=True)) < 1e-4
    unhover(page)
    lab.screenshot(co, "companions/coactivation_cell.png")
    dist.scroll_into_view_if_needed()
    lab.screenshot(dist, "companions/distributions_two_units.png")

    # A unit outside the matrix clicked in the explorer's grid: both plots follow in the page.
    unit = next(u for u in range(64) if u not in units)
    grid = page.locator(".nw-explorer canvas.nw-grid-canvas")
    click_unit(page, grid, unit)
    lab.poll("ex.selected_units", str([unit]))
    wait_until(lambda: drawn_units(dist, "nw-dist-bins") == {unit}, f"the histogram of unit {unit}")
    wait_until(lambda: str(unit) in source(co, "nw-coact-pair")["data"]["x"], f"unit {unit}'s pair")
    assert unit in {int(u) for u in source(co, "nw-coact-matrix")["data"]["a"]}
    unhover(page)
    dist.scroll_into_view_if_needed()
    lab.screenshot(dist, "companions/distributions_grid_unit.png")
    co.scroll_into_view_if_needed()
    lab.screenshot(co, "companions/coactivation_grid_unit.png")

    # Tapping a point of the scatter, then a top example's triangle: each becomes the explorer's input.
    scatter = source(co, "nw-coact-scatter")["data"]
    row = isolated(scatter["x"], scatter["y"])
    co.scroll_into_view_if_needed()
    page.mouse.click(*data_point(co, 1, scatter["x"][row], scatter["y"][row]))
    lab.poll("ex.current_index", str(scatter["example"][row]))
    wait_until(lambda: source(co, "nw-coact-scatter")["indices"] == [row], "the tapped point marked")
    top = source(dist, "nw-dist-top")["data"]
    row = isolated(top["x"], [0.0] * len(top["x"]))
    dist.scroll_into_view_if_needed()
    page.mouse.click(*data_point(dist, 0, top["x"][row], top["y"][row]))
    lab.poll("ex.current_index", str(top["example"][row]))
    current = wait_until(lambda: source(dist, "nw-dist-current")["data"]["x"], "the current line")
    assert abs(current[0] - top["x"][row]) < 1e-3  # the dashed line moved onto the tapped triangle

    # A layer with dead (constant) units: their correlations are grey, "n/a".
    dead = int(lab.eval("print(s['relu2'].dead()[0])"))
    record_titles(co, 0)  # the progress may last a moment only: every title it takes is kept
    lab.eval(f'ex.layer = "relu2"; ex.selected_units = [{dead}, 3, 5]')
    progress = re.compile(r"relu2: sampling \d+/256 examples(, \d+\.\d s)?")
    wait_until(lambda: len(source(co, "nw-coact-matrix")["data"]["r"]) == 9, "a 3×3 matrix")
    assert any(progress.fullmatch(t) for t in recorded_titles(co)), recorded_titles(co)
    assert title(co, 0) == "relu2: correlation of unit maxima over 256 examples"
    texts = source(co, "nw-coact-matrix")["data"]["r_text"]
    assert texts.count("n/a (a constant unit)") == 5  # the dead unit's row and column
    wait_until(lambda: drawn_units(dist, "nw-dist-bins") == {dead, 3, 5}, "relu2's histograms")
    unhover(page)
    co.scroll_into_view_if_needed()
    lab.screenshot(co, "companions/coactivation_dead_unit.png")
    dist.scroll_into_view_if_needed()
    lab.screenshot(dist, "companions/distributions_relu2.png")
    errors = [m for m in page.console_log if "[pageerror]" in m]
    assert not errors, errors
    assert lab.eval("print(repr(dist.error), repr(co.error))").strip() == "'' ''"
