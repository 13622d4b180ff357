"""The quickstart served by Voila (app mode), offline in headless Chromium: its
widgets render and a grid click reaches the kernel, whose state is read from a file that a cell appended
to the served copy writes on every change (Voila offers no way to ask the kernel from outside)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from urllib.parse import urlparse

import nbformat
from conftest import artifact_path
from grid_page import click_unit
from marimo_page import poll_state
from servers import serve

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
LOAD_TIMEOUT = 240_000  # ms: Voila runs the whole notebook before the page shows its widgets

DUMP_CELL = """
import json as _json, os as _os
def _dump(_change=None):
    with open({path!r} + ".tmp", "w") as _f:
        _json.dump({{"grid": list(grid.selected_units), "explorer": list(explorer.selected_units),
                    "errors": [w.error for w in (grid, explorer) if w.error]}}, _f)
    _os.replace({path!r} + ".tmp", {path!r})
for _w in (grid, explorer):
    _w.observe(_dump, names=["selected_units", "error"])
_dump()
"""


def served_copy(directory: Path, state_file: Path) -> Path:
    notebook = nbformat.read(QUICKSTART, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(DUMP_CELL.format(path=str(state_file))))
    path = directory / "quickstart.ipynb"
    nbformat.write(notebook, path)
    return path


def test_voila_serves_the_quickstart_and_answers_a_grid_click(page, tmp_path):
    state_file = tmp_path / "state.json"
    notebook = served_copy(tmp_path, state_file)
    log = tmp_path / "voila.log"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    blocked: list[str] = []

    def args(port: int) -> list[str]:
        voila = [sys.executable, "-m", "voila", str(notebook), "--no-browser", "--Voila.ip=127.0.0.1"]
        return [*voila, f"--port={port}", "--Voila.port_retries=0"]

    def only_local(route):
        if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with serve(args, "api/status", log, cwd=tmp_path, env=env) as url:
        page.route("**/*", only_local)
        page.goto(url, timeout=LOAD_TIMEOUT)
        grid = page.locator("canvas.nw-grid-canvas").first
        grid.wait_for(timeout=LOAD_TIMEOUT)
        page.locator(".nw-bokeh-plot[data-ready='1']").first.wait_for(timeout=LOAD_TIMEOUT)
        poll_state(state_file, lambda s: True, "the state cell run")

        click_unit(page, grid, 9)
        state = poll_state(state_file, lambda s: s["grid"] == [9], "unit 9 selected in the first grid")
        assert not state["errors"], state
        page.mouse.move(5, 5)
        grid.scroll_into_view_if_needed()
        page.locator(".nw-neuron-grid, .nw-root").first.screenshot(path=str(artifact_path("voila/grid.png")))
        page.screenshot(path=str(artifact_path("voila/page.png")))
        # Voila's own template asks a CDN for Font Awesome's CSS (icons only); nothing else leaves the machine.
        assert not [u for u in blocked if "fontawesome" not in u], blocked
    errors = [m for m in page.console_log if "[pageerror]" in m]
    assert not errors, errors
    assert json.loads(state_file.read_text())["grid"] == [9]
