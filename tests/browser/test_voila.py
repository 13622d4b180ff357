"""The quickstart served by Voila (app mode), offline in headless Chromium: its
widgets render and a grid click reaches the kernel, whose state is read from a file that a cell appended
to the served copy writes on every change (Voila offers no way to ask the kernel from outside)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import nbformat
from conftest import artifact_path
from grid_page import click_unit
from marimo_page import poll_state

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "quickstart.ipynb"
START_TIMEOUT = 60
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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_voila_serves_the_quickstart_and_answers_a_grid_click(page, tmp_path):
    state_file = tmp_path / "state.json"
    notebook = served_copy(tmp_path, state_file)
    port = free_port()
    log = tmp_path / "voila.log"
    args = [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt")}
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, env=env)
    blocked: list[str] = []

    def only_local(route):
        if urlparse(route.request.url).hostname == "127.0.0.1" or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(url + "api/status", timeout=2)
                break
            except OSError as error:
                if getattr(error, "code", None) or process.poll() is not None or time.monotonic() > deadline:
                    if getattr(error, "code", None):
                        break  # the server answers (an error page is an answer)
                    raise AssertionError(f"voila did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.3)
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
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
    errors = [m for m in page.console_log if "[pageerror]" in m]
    assert not errors, errors
    assert json.loads(state_file.read_text())["grid"] == [9]
