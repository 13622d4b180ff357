"""The quickstart in Notebook 7 (`jupyter notebook`): Run All, click a grid unit, the kernel sees it."""

from __future__ import annotations

import re
import time
import urllib.parse

import pytest
from bokeh_page import canvas_ink, data_point
from conftest import (
    KERNEL_READY_TIMEOUT,
    artifact_path,
    kernel_client,
    kernel_eval,
    poll_kernel,
    wait_until_still,
    write_notebook,
)
from conftest import run_all as run_all_cells
from grid_page import click_unit


@pytest.fixture
def nb7(page, notebook_server):
    try:
        yield page, notebook_server
    finally:
        notebook_server.shutdown_sessions()


def run_all(page, server, name: str):
    """Open notebook ``name`` in Notebook 7 and Run All: returns a client of its kernel once every
    cell has run (and with the last one Notebook 7's scrolling to each running cell has stopped);
    a cell that raises fails the test at once, with its error."""
    page.goto(f"{server.url}/notebooks/{urllib.parse.quote(name)}")
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible")
    wait_for_idle_kernel(server)
    client = kernel_client(server, name)
    run_all_cells(page)
    return client


def wait_for_idle_kernel(server) -> None:
    # Notebook 7 has no "(ipykernel) | Idle" status bar: ask the server until the kernel is idle.
    deadline = time.monotonic() + KERNEL_READY_TIMEOUT
    while not any((s.get("kernel") or {}).get("execution_state") == "idle" for s in server.sessions()):
        assert time.monotonic() < deadline, f"no idle kernel: {server.sessions()}"
        time.sleep(0.2)


def activate_cell(page, widget) -> None:
    """Make the cell of ``widget`` the active one first: Notebook 7 may scroll an activated cell into
    view, which would move a grid between the press and the release of a click on it."""
    page.locator(".jp-Cell", has=widget).last.locator(".jp-InputPrompt").first.click()
    wait_until_still(widget)


def test_notebook7_quickstart_grid_click(nb7):
    page, server = nb7
    # Clicks wait until every cell has run, as Notebook 7 scrolls to each cell that runs.
    client = run_all(page, server, "quickstart.ipynb")

    grid = page.locator(".nw-grid").first
    canvas = grid.locator("canvas.nw-grid-canvas")
    canvas.wait_for(state="visible")
    page.wait_for_function("c => c.dataset.units === '16'", arg=canvas.element_handle())
    activate_cell(page, grid)
    click_unit(page, canvas, 5)
    poll_kernel(client, "grid.selected_units", "[5]")
    page.mouse.move(0, 0)
    grid.screenshot(path=str(artifact_path("notebook7/grid.png")))

    explorer = page.locator(".nw-explorer").first
    activate_cell(page, explorer)
    click_unit(page, explorer.locator("canvas.nw-grid-canvas"), 9)
    poll_kernel(client, "explorer.selected_units", "[9]")
    explorer.locator(".nw-examples-title", has_text="Unit 9 of relu2").wait_for()
    explorer.screenshot(path=str(artifact_path("notebook7/explorer.png")))


BOKEH_CELLS = [
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "hot = digits(lr=0.05)\n"
    'scan = nw.scan(hot.model, hot.test_images, ["relu1", "relu2"], k=4, progress=False, cache=False)\n'
    'explorer = nw.explore(hot.model, hot.test_images[:2], layer="relu1", scan=scan)\n'
    "health = nw.LayerHealth(scan, follow=explorer)\n"
    "health",
    "explorer",
]


def test_notebook7_bokeh_plot_offline_linked_to_the_explorer(nb7):
    """A bokeh plot in Notebook 7 with every non-local request refused, no output_notebook()."""
    page, server = nb7
    blocked: list[str] = []

    def refuse(route):
        blocked.append(route.request.url)
        route.abort()

    # Only remote requests are routed: intercepting Notebook 7's own requests keeps its kernel from starting.
    page.route(re.compile(r"^(?!(https?|wss?)://(127\.0\.0\.1|localhost)[:/]|data:|blob:)"), refuse)
    write_notebook(server, "bokeh_nb7.ipynb", BOKEH_CELLS)
    client = run_all(page, server, "bokeh_nb7.ipynb")

    host = page.locator(".nw-bokeh-host").first
    host.locator(".nw-bokeh-plot[data-ready='1']").wait_for()
    host.scroll_into_view_if_needed()
    ink = canvas_ink(host, 0)
    assert ink["ink"] > 2000 and ink["colours"] > 5, f"the bokeh canvas looks blank: {ink}"
    dead = float(kernel_eval(client, "print(health.table['dead'][1])"))
    page.mouse.click(*data_point(host, 0, dead / 2, ["relu2", -0.17]))
    poll_kernel(client, "explorer.layer", "'relu2'")
    poll_kernel(client, "explorer.selected_units == scan['relu2'].dead().tolist() != []", "True")
    page.mouse.move(0, 0)
    host.screenshot(path=str(artifact_path("notebook7/layer_health.png")))
    assert not blocked, blocked
