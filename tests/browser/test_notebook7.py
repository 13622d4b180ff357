"""The quickstart in Notebook 7 (`jupyter notebook`): Run All, click a grid unit, the kernel sees it."""

from __future__ import annotations

import re
import time
import urllib.parse

import pytest
from conftest import KERNEL_READY_TIMEOUT, RUN_ALL_TIMEOUT, artifact_path, kernel_client, poll_kernel
from grid_page import click_unit


@pytest.fixture
def nb7(page, notebook_server):
    try:
        yield page, notebook_server
    finally:
        notebook_server.shutdown_sessions()


def test_notebook7_quickstart_grid_click(nb7):
    page, server = nb7
    page.goto(f"{server.url}/notebooks/{urllib.parse.quote('quickstart.ipynb')}")
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible")
    # Notebook 7 has no "(ipykernel) | Idle" status bar: ask the server until the kernel is idle.
    deadline = time.monotonic() + KERNEL_READY_TIMEOUT
    while not any((s.get("kernel") or {}).get("execution_state") == "idle" for s in server.sessions()):
        assert time.monotonic() < deadline, f"no idle kernel: {server.sessions()}"
        time.sleep(0.2)
    client = kernel_client(server, "quickstart.ipynb")
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator('li[data-command="runmenu:run-all"]').click()
    poll_kernel(client, "print('explorer' in globals())", "True", timeout=RUN_ALL_TIMEOUT)

    grid = page.locator(".nw-grid").first
    canvas = grid.locator("canvas.nw-grid-canvas")
    canvas.wait_for(state="visible")
    page.wait_for_function("c => c.dataset.units === '16'", arg=canvas.element_handle())
    click_unit(page, canvas, 5)
    poll_kernel(client, "grid.selected_units", "[5]")
    page.mouse.move(0, 0)
    grid.screenshot(path=str(artifact_path("notebook7/grid.png")))

    explorer = page.locator(".nw-explorer").first
    explorer.scroll_into_view_if_needed()
    click_unit(page, explorer.locator("canvas.nw-grid-canvas"), 9)
    poll_kernel(client, "explorer.selected_units", "[9]")
    explorer.locator(".nw-examples-title", has_text="Unit 9 of relu2").wait_for()
    explorer.screenshot(path=str(artifact_path("notebook7/explorer.png")))
