"""notebooks/explore_marimo.py in marimo 0.25 (`marimo run` and `marimo edit`), headless Chromium: the
explorer, LayerHealth and Distributions render; a grid click, a drag, a LayerHealth bar tap and a
Distributions bar tap reach the kernel, whose state is read from a file the notebook writes.

marimo applies each state write of the page twice (through the comm, then as the UI element's value):
taps travel as requests carrying the layer or the unit, so nothing moves back. Each check that nothing
moved back follows a later action whose answer the kernel gave after any replay of the earlier one."""

from __future__ import annotations

from pathlib import Path

import pytest
from bokeh_page import data_point, source, wait_for_source
from conftest import artifact_path, wait_until_still
from grid_page import click_unit
from marimo_page import marimo_server, poll_state, with_state_cell
from playwright.sync_api import TimeoutError as PlaywrightTimeout

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "explore_marimo.py"
WIDGETS = ["explorer", "health", "distributions"]
RUN_ALL_TRIES, RUN_ALL_WAIT = 6, 15_000  # ms
LOAD_TIMEOUT = 180_000  # ms: the first run trains the digits CNN (a few seconds) and scans


def cell_point(stage, row: int, col: int) -> tuple[float, float]:
    """Page coordinates of the centre of image pixel (row, col) of the overlay's 8×8 stage."""
    box = stage.bounding_box()
    return box["x"] + (col + 0.5) * box["width"] / 8, box["y"] + (row + 0.5) * box["height"] / 8


def lone_bar(bins: dict, unit: int) -> tuple[float, float]:
    """A data point inside one of ``unit``'s histogram bars that no other unit's bar covers."""
    rows = range(len(bins["unit"]))
    for i in sorted((i for i in rows if bins["unit"][i] == unit), key=lambda i: -bins["top"][i]):
        x, y = (bins["left"][i] + bins["right"][i]) / 2, 0.5 + 0.8 * (bins["top"][i] - 0.5)
        covered = any(
            bins["unit"][j] != unit and bins["left"][j] <= x <= bins["right"][j] and bins["top"][j] >= y for j in rows
        )
        if not covered:
            return x, y
    raise AssertionError(f"every bar of unit {unit} is covered by another unit's")


def run_all(page, state_file: Path) -> None:
    """Press marimo edit's "run all" (cells do not run on open there) until the cells run: a press
    before the page has connected to the kernel does nothing."""
    button = page.get_by_test_id("run-button").last
    for _ in range(RUN_ALL_TRIES):
        button.click()
        try:
            page.locator(".nw-root").first.wait_for(timeout=RUN_ALL_WAIT)
            return
        except PlaywrightTimeout:
            if state_file.exists():
                return
    raise AssertionError(f"marimo edit ran no cell after {RUN_ALL_TRIES} presses of run all")


@pytest.mark.parametrize("mode", ["run", "edit"])
def test_marimo_explorer_layer_health_and_distributions(page, tmp_path, mode):
    state_file = tmp_path / "state.json"
    notebook = with_state_cell(NOTEBOOK, tmp_path / "explore_marimo.py", WIDGETS, state_file)
    with marimo_server(mode, notebook, tmp_path / "marimo.log") as url:
        page.goto(url)
        if mode == "edit":
            run_all(page, state_file)
        grid = page.locator(".nw-explorer canvas.nw-grid-canvas")
        grid.wait_for(timeout=LOAD_TIMEOUT)
        hosts = page.locator(".nw-bokeh-host")
        hosts.nth(1).locator(".nw-bokeh-plot[data-ready='1']").wait_for(timeout=LOAD_TIMEOUT)
        health, dist = hosts.nth(0), hosts.nth(1)
        poll_state(state_file, lambda s: s["explorer"]["layer"] == "relu2", "the explorer on relu2")

        # Grid: a click selects a unit, a shift-click adds one.
        click_unit(page, grid, 3)
        poll_state(state_file, lambda s: s["explorer"]["selected_units"] == [3], "unit 3 selected")
        page.keyboard.down("Shift")
        click_unit(page, grid, 13)
        page.keyboard.up("Shift")
        poll_state(state_file, lambda s: s["distributions"]["selected_units"] == [3, 13], "units 3 and 13")

        # Distributions: a tap on unit 13's bars makes it first, and it stays first.
        dist.scroll_into_view_if_needed()
        wait_until_still(dist)
        wait_for_source(dist, "nw-dist-bins", "s => new Set(s.data.unit).size === 2")
        page.mouse.click(*data_point(dist, 0, *lone_bar(source(dist, "nw-dist-bins")["data"], 13)))
        poll_state(state_file, lambda s: s["explorer"]["selected_units"] == [13, 3], "unit 13 first")

        # Drag a patch over the digit: the kernel occludes it; unit 13 is still first.
        stage = page.locator(".nw-explorer .nw-overlay-stage")
        stage.scroll_into_view_if_needed()
        wait_until_still(stage)
        page.mouse.move(*cell_point(stage, 1, 1))
        page.mouse.down()
        page.mouse.move(*cell_point(stage, 4, 5), steps=6)
        page.mouse.up()
        state = poll_state(state_file, lambda s: s["explorer"]["patch"] == [1, 1, 5, 6], "the dragged patch")
        assert state["explorer"]["selected_units"] == [13, 3], "the bar tap was applied again"

        # LayerHealth: a tap on relu1's dead bar opens relu1 with its dead units, and it stays open.
        health.scroll_into_view_if_needed()
        wait_until_still(health)
        dead = source(health, "nw-health-dead")["data"]
        relu1 = dead["layer"].index("relu1")
        assert dead["dead_count"][relu1] > 0, "the lr=0.05 network has dead relu1 units"
        page.mouse.click(*data_point(health, 0, dead["dead"][relu1] / 2, ["relu1", -0.17]))
        # The layer and the selection are two trait changes (two dumps): wait for both.
        state = poll_state(
            state_file,
            lambda s: (
                s["explorer"]["layer"] == "relu1"
                and s["health"]["layer"] == "relu1"
                and s["explorer"]["selected_units"] == s["health"]["selected_units"] != []
            ),
            "relu1 open with the same dead units selected in the explorer and the health view",
        )
        dead_units = state["health"]["selected_units"]
        grid.and_(page.locator("[aria-label='8 units of layer relu1']")).wait_for()
        click_unit(page, grid, 7 if 7 not in dead_units else 6)
        state = poll_state(state_file, lambda s: len(s["explorer"]["selected_units"]) == 1, "a relu1 unit clicked")
        assert state["explorer"]["layer"] == "relu1", "the bar tap of relu2 was replayed"
        assert not any(s["error"] for s in state.values()), state

        page.mouse.move(5, 5)
        for name, target in (("explorer", page.locator(".nw-explorer")), ("health", health), ("distributions", dist)):
            target.scroll_into_view_if_needed()
            target.screenshot(path=str(artifact_path(f"marimo/{mode}_{name}.png")))
    errors = [m for m in page.console_log if "[pageerror]" in m]
    assert not errors, errors
