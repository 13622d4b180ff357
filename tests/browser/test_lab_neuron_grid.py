"""NeuronGrid in JupyterLab: run the quickstart, hover, click, shift-click, pick a layer; check the kernel
and the pixels."""

from __future__ import annotations

import json
import os
import shutil

from colours import close, diverging
from conftest import REPO
from grid_page import cell_centre, pixel
from playwright.sync_api import expect


def test_quickstart_grid_click_reaches_the_kernel(lab):
    page = lab.page
    lab.open("quickstart.ipynb")
    lab.run_all()
    widget = page.locator(".nw-grid").first
    canvas = widget.locator("canvas.nw-grid-canvas")
    canvas.scroll_into_view_if_needed()
    expect(canvas).to_have_attribute("data-units", "16")  # waits until the grid has drawn the layer

    # Drawn, not blank: every unit's centre has the colour of its kernel value on the scale.
    values = json.loads(lab.eval("import json; print(json.dumps(grid.values[0].max(axis=0).tolist()))"))
    limit = float(lab.eval("print(grid.colour_limit)"))  # the layer's largest |value|, every panel's scale
    for unit, value in enumerate(values):
        assert close(pixel(canvas, unit), diverging(value, limit)), (unit, value, pixel(canvas, unit))
    assert len({tuple(pixel(canvas, u)) for u in range(16)}) > 4

    # Hover: the tooltip names the unit and its value.
    page.mouse.move(*cell_centre(canvas, 5))
    tooltip = widget.locator(".nw-tooltip")
    tooltip.wait_for(state="visible")
    lines = tooltip.inner_text().splitlines()
    assert lines[0] == "unit 5"
    assert abs(float(lines[1].split(": ")[1]) - values[5]) <= 2e-3 * max(1, abs(values[5]))

    # Click selects, shift-click adds, shift-click again removes.
    page.mouse.click(*cell_centre(canvas, 5))
    lab.poll("grid.selected_units", "[5]")
    page.keyboard.down("Shift")
    page.mouse.click(*cell_centre(canvas, 9))
    page.mouse.click(*cell_centre(canvas, 12))
    page.mouse.click(*cell_centre(canvas, 5))
    page.keyboard.up("Shift")
    lab.poll("grid.selected_units", "[9, 12]")
    assert pixel(canvas, 9, dx=0.04, dy=0.5) == [0, 0, 0], "a selected cell is outlined"
    assert pixel(canvas, 5, dx=0.04, dy=0.5) != [0, 0, 0]
    page.mouse.move(0, 0)
    shot = lab.screenshot(widget, "neuron_grid/quickstart_selected.png")
    if os.environ.get("NEUROWIDGETS_UPDATE_SCREENSHOTS"):  # refresh the README's picture on request
        shutil.copy(shot, REPO / "docs" / "images" / "neuron_grid.png")

    # Python sets the selection: the outline moves in the page.
    lab.eval("grid.selected_units = [2]")
    page.wait_for_function(
        "c => c.getContext('2d').getImageData(Math.floor(2 * +c.dataset.cell + 1), 18, 1, 1).data[0] === 0",
        arg=canvas.element_handle(),
    )

    # The layer dropdown: the kernel switches layer and sends the new matrix.
    widget.get_by_role("combobox", name="Layer").select_option("fc1")
    lab.poll("grid.layer", "'fc1'")
    page.wait_for_function("c => c.dataset.units === '64'", arg=canvas.element_handle())
    lab.poll("grid.selected_units", "[2]")
    lab.screenshot(widget, "neuron_grid/fc1.png")

    # Keyboard: arrows move the focus ring from the last clicked unit (5), Enter selects.
    canvas.focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    lab.poll("grid.selected_units", "[6]")
