"""A notebook exported to HTML shows every widget's last state with no kernel and no network (issue 14).

A notebook with a NeuronGrid, an explorer and two bokeh companions (LayerHealth, Distributions) runs in
a real kernel through nbclient, which keeps the widgets' state in the notebook's metadata as JupyterLab
does when it saves with widget state; the kernel's truth (values, selections, plotted data) is printed
by its last cell. `jupyter nbconvert --to neurowidgets` exports it (and nw.export_html, the same from
Python). Headless Chromium opens the file with every request but the file itself refused, and each
widget must be drawn from its saved state: the grids' colours and outlines, the explorer's card, the
bokeh plots with the kernel's data and selections; nothing fetched, no error in the console.
The same from JupyterLab: clicks made in the page, saved with widget state, exported, drawn as the
live page drew them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from bokeh_page import drawn_plots, source, wait_for_source
from colours import close, diverging
from conftest import PAGE_TIMEOUT, artifact_path, has_failed, save_failure_artifacts, wait_until
from grid_page import check_explorer_selection, click_unit, pixel

from neurowidgets.export import export_html, run_notebook

VIEW = "application/vnd.jupyter.widget-view+json"
# The kernel's truth, printed as JSON: what the exported page must show.
TRUTH = """\
for companion in (health, distributions):
    companion.wait(120)  # they follow the explorer in the background: the saved state is what they show
print(json.dumps({
    "grid": grid.values[0].max(axis=0).tolist(),
    "grid_selected": grid.selected_units,
    "explorer_selected": explorer.selected_units,
    "explorer_layer": explorer.layer,
    "health_layers": list(health.sources[DEAD].data["layer"]),
    "health_selections": health.selections,
}))"""
CELLS = [
    """\
import json
from IPython.display import display
import neurowidgets as nw
from neurowidgets.datasets import digits
from neurowidgets.figures import DEAD

data = digits()""",
    """\
grid = nw.NeuronGrid(data.model, "conv2", data.test_images[:1])
grid.selected_units = [5]
grid""",
    """\
explorer = nw.explore(data.model, data.test_images[:4], data=data.test_images, layer="relu2")
explorer.selected_units = [9]
explorer""",
    """\
health = nw.LayerHealth(explorer.scan, follow=explorer)
distributions = nw.Distributions(explorer.scan, follow=explorer)
display(health, distributions)""",
    """\
import ipywidgets  # a plain ipywidgets control: drawn by the same exported page

slider = ipywidgets.IntSlider(value=7, max=20, description="k")
slider""",
    TRUTH,
]


def count_views(notebook: Any) -> int:
    return sum(VIEW in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Any]:
    """The notebook run in a kernel (widget state kept), then exported twice: by nbconvert's command
    line and by nw.export_html."""
    folder = tmp_path_factory.mktemp("export")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    run_notebook(notebook, folder)
    saved = folder / "exported.ipynb"
    nbformat.write(notebook, saved)
    truth = json.loads(notebook.cells[-1].outputs[-1]["text"])
    truth["views"] = count_views(notebook)
    truth["slider"] = True
    # grid, explorer, LayerHealth, Distributions, slider; and the scan's progress bar unless it was cached
    assert truth["views"] >= 5

    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    anywidgets = [m for m in state.values() if m["model_name"] == "AnyModel"]
    assert len(anywidgets) >= 5, "the grid, the explorer (and its parts), two companions, BokehJS's carrier"

    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "neurowidgets", str(saved)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=folder)
    assert done.returncode == 0, done.stderr
    page = folder / "exported.html"
    assert page.exists(), done.stderr
    from_python = export_html(saved, folder / "from_python.html")
    return {"page": page, "from_python": from_python, "truth": truth, "notebook": saved}


class Offline:
    """A page in its own context with the network refused: every request is recorded, and aborted
    unless it is the file itself."""

    def __init__(self, browser: Any, path: Path):
        self.url = path.as_uri()
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, offline=True)
        self.context.set_default_timeout(PAGE_TIMEOUT * 1000)
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.route("**/*", lambda route: route.continue_() if route.request.url == self.url else route.abort())
        self.page = self.context.new_page()
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def open(self) -> Any:
        self.page.goto(self.url)
        self.page.wait_for_function("() => document.documentElement.dataset.widgetsRendered !== 'pending'")
        self.page.wait_for_load_state("load")
        return self.page


@pytest.fixture
def offline(browser, request):
    opened: list[Offline] = []

    def open_page(path: Path) -> Offline:
        opened.append(Offline(browser, path))
        return opened[-1]

    yield open_page
    if opened and has_failed(request.node):
        last = opened[-1]
        console = [f"[error] {text}" for text in last.errors] + [f"[request] {url}" for url in last.requests]
        save_failure_artifacts(request.node, last.page, console, [])
    for tab in opened:
        tab.context.close()


def check_drawn(page: Any, truth: dict[str, Any]) -> None:
    """Every widget of the exported notebook is drawn as the kernel left it."""
    html = page.locator("html")
    assert html.get_attribute("data-widgets-rendered") == "done"
    assert html.get_attribute("data-widgets-missing") == "0"
    assert html.get_attribute("data-widget-views") == str(truth["views"])

    # The NeuronGrid: each unit in the colour of its value, the selected unit outlined.
    grid = page.locator(".nw-grid:not(.nw-explorer .nw-grid)").first
    canvas = grid.locator("canvas.nw-grid-canvas")
    canvas.scroll_into_view_if_needed()
    page.wait_for_function("c => c.dataset.units === '16'", arg=canvas.element_handle())
    values = truth["grid"]
    limit = float(grid.locator(".nw-legend-ticks span").last.inner_text())  # the scale's limit, as drawn
    drawn = [pixel(canvas, unit) for unit in range(16)]
    for unit, value in enumerate(values):
        assert close(drawn[unit], diverging(value, limit)), (unit, value, limit, drawn[unit])
    assert len({tuple(p) for p in drawn}) > 4
    if "live_grid" in truth:  # what the live page drew before the notebook was saved
        assert drawn == truth["live_grid"]
    (selected,) = truth["grid_selected"]
    assert pixel(canvas, selected, dx=0.04) == [0, 0, 0], "the selected unit is outlined"
    assert pixel(canvas, (selected + 1) % 16, dx=0.04) != [0, 0, 0]

    # The explorer: its grid with the selected unit outlined, the unit's card.
    (unit,) = truth["explorer_selected"]
    check_explorer_selection(page, unit, truth["explorer_layer"])

    # The bokeh views: BokehJS from the saved state of the widget that carries it, each figure from its
    # own, with the changes the kernel made after showing it (the companions followed the explorer).
    plots = drawn_plots(page, 2)
    health, distributions = plots.nth(0), plots.nth(1)
    from neurowidgets.figures import DEAD

    dead = source(health, DEAD)
    assert dead["data"]["layer"] == truth["health_layers"]
    assert dead["indices"] == truth["health_selections"][DEAD], "the explorer's layer is highlighted"
    bins = source(distributions, "nw-dist-bins")["data"]
    assert bins["unit"] and set(bins["unit"]) == {unit}, "the histogram of the explorer's selected unit"

    if truth.get("slider"):  # a plain ipywidgets control (the html-manager's own controls, no CDN either)
        slider = page.locator(".widget-slider").first
        assert slider.locator(".widget-label").first.inner_text() == "k"
        assert slider.locator(".widget-readout").inner_text() == "7"


def test_exported_notebook_draws_every_widget_offline(offline, exported):
    tab = offline(exported["page"])
    page = tab.open()
    check_drawn(page, exported["truth"])
    assert tab.requests == [tab.url], "nothing fetched, nothing even tried, but the file itself"
    assert tab.errors == []
    size = exported["page"].stat().st_size
    print(f"exported page: {size / 1e6:.1f} MB")
    page.screenshot(path=str(artifact_path("export_html/page.png")), full_page=True)
    page.locator(".nw-explorer").first.screenshot(path=str(artifact_path("export_html/explorer.png")))
    page.locator(".nw-bokeh-plot").first.screenshot(path=str(artifact_path("export_html/layer_health.png")))

    # nw.export_html writes the same page from Python.
    tab = offline(exported["from_python"])
    check_drawn(tab.open(), exported["truth"])
    assert tab.requests == [tab.url]
    assert tab.errors == []


def test_a_notebook_saved_without_widget_state_is_exported_as_text(offline, exported, tmp_path):
    """Without widget state nbconvert shows each widget's plain-text form: so does the page, with a
    warning, without the renderer, still asking for nothing."""
    notebook = nbformat.read(exported["notebook"], as_version=4)
    del notebook.metadata["widgets"]
    with pytest.warns(UserWarning, match="saved without their state"):
        path = export_html(notebook, tmp_path / "stateless.html")
    assert path.stat().st_size < exported["page"].stat().st_size / 2
    tab = offline(path)
    page = tab.open()
    assert page.locator("html").get_attribute("data-widgets-rendered") is None
    assert page.locator("script[type='application/vnd.jupyter.widget-view+json']").count() == 0
    assert page.get_by_text("NeuronGrid object at").count() == 1
    assert tab.requests == [tab.url]
    assert tab.errors == []


def save_in_lab(page: Any, path: Path) -> dict:
    """File > Save in JupyterLab; returns the notebook as written (with its widget state)."""
    before = path.stat().st_mtime_ns
    page.locator(".lm-MenuBar-item", has_text="File").click()
    page.locator('li[data-command="docmanager:save"]').click()
    page.wait_for_function(
        "() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"
        "?.title?.className?.includes('jp-mod-dirty')"
    )

    def written() -> Any:  # the server may still be writing the file
        if path.stat().st_mtime_ns == before:
            return None
        try:
            return json.loads(path.read_bytes())
        except ValueError:
            return None

    return wait_until(written, f"{path.name} written by the server")


def test_a_notebook_saved_from_jupyterlab_exports_what_the_user_chose(lab_saving_widgets, offline, tmp_path):
    """The usual way: explore in JupyterLab (clicks made in the page, and what the companions drew in
    answer), save with widget state, export, open offline."""
    lab = lab_saving_widgets
    page, name = lab.page, "export_saved.ipynb"
    lab.run_notebook(name, CELLS[:4])
    grid = page.locator(".nw-grid:not(.nw-explorer .nw-grid)").first.locator("canvas.nw-grid-canvas")
    page.wait_for_function("c => c.dataset.units === '16'", arg=grid.element_handle())
    click_unit(page, grid, 3)
    lab.poll("grid.selected_units", "[3]")
    explorer = page.locator(".nw-explorer").first
    click_unit(page, explorer.locator("canvas.nw-grid-canvas"), 11)
    lab.poll("explorer.selected_units", "[11]")
    # Save once the companions' plots show unit 11 (they follow the explorer in the background).
    page.locator(".nw-bokeh-plot[data-ready='1']").nth(1).wait_for()
    wait_for_source(
        page.locator(".nw-bokeh-plot").nth(1),
        "nw-dist-bins",
        "s => s.data.unit.length > 0 && s.data.unit.every(u => u === 11)",
    )
    truth = json.loads(lab.eval(TRUTH))
    truth["live_grid"] = [pixel(grid, unit) for unit in range(16)]
    assert truth["grid_selected"] == [3] and truth["explorer_selected"] == [11]

    notebook = save_in_lab(page, lab.server.root / name)
    assert "application/vnd.jupyter.widget-state+json" in notebook["metadata"].get("widgets", {})
    truth["views"] = count_views(nbformat.from_dict(notebook))
    tab = offline(export_html(lab.server.root / name, tmp_path / "saved.html"))
    page = tab.open()
    check_drawn(page, truth)
    assert tab.requests == [tab.url]
    assert tab.errors == []
    page.locator(".nw-grid").first.screenshot(path=str(artifact_path("export_html/lab_saved_grid.png")))
