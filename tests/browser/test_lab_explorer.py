"""The explorer in JupyterLab: one click in the grid drives every view; a click on a top example
changes the input of all of them."""

from __future__ import annotations

import json
import re

from grid_page import click_unit
from playwright.sync_api import expect


def test_quickstart_explorer_links_every_view(lab):
    page = lab.page
    lab.open("quickstart.ipynb")
    lab.run_all()
    explorer = page.locator(".nw-explorer").first
    explorer.scroll_into_view_if_needed()
    grid = explorer.locator("canvas.nw-grid-canvas")
    unit = int(lab.eval("explorer.selected_units[0]"))
    # expect(...) waits: the views may draw what the kernel sent after its last cell has run.
    expect(explorer.locator(".nw-examples-title")).to_have_text(f"Unit {unit} of relu2")

    # Click unit 9 in the grid: the card, the trace legend and the overlay's unit follow.
    click_unit(page, grid, 9)
    lab.poll("explorer.selected_units", "[9]")
    explorer.locator(".nw-examples-title", has_text="Unit 9 of relu2").wait_for()
    expect(explorer.get_by_role("spinbutton", name="Unit")).to_have_value("9")  # the overlay shows unit 9
    expect(explorer.locator(".nw-panel-trace")).to_contain_text("unit 9")
    top = json.loads(lab.eval("import json; print(json.dumps(explorer.card['groups'][0]['examples'][:3]))"))
    expect(explorer.locator(".nw-example-caption").first).to_have_text(re.compile(rf"#{top[0]['index']}$"))
    lab.screenshot(explorer, "explorer/unit9.png")

    # Click the second top example: it becomes the current input of every view.
    explorer.locator(".nw-example").nth(1).click()
    lab.poll("explorer.current_index", str(top[1]["index"]))
    lab.poll("explorer.values.shape[0]", "1")
    expected = lab.eval(
        "import numpy as np; print(float(np.abs(explorer.values[0] - nw.Probe(data.model).run("
        f"data.test_images[{top[1]['index']}:{top[1]['index'] + 1}], ['relu2'])['relu2'].values[0].numpy()).max()))"
    )
    assert float(expected) < 1e-2
    explorer.locator(".nw-example.nw-current").wait_for()
    lab.screenshot(explorer, "explorer/example_opened.png")
