"""Reading and clicking a NeuronGrid canvas in the page: one place for its cell geometry.

The canvas publishes its geometry as data attributes (data-cols, data-cell, data-units); cells are
laid out row-major in display order ("slots", which are unit indices unless the grid is ordered)."""

from __future__ import annotations

from conftest import wait_until_still

PIXEL_JS = """(c, [slot, dx, dy]) => {
    const cols = +c.dataset.cols, cell = +c.dataset.cell;
    const x = Math.floor((slot % cols) * cell + dx * cell);
    const y = Math.floor(Math.floor(slot / cols) * cell + dy * cell);
    return Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3));
}"""


def cell_centre(canvas, slot: int, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
    """Page coordinates of a point of a cell (fx, fy: fraction of the cell)."""
    cols = int(canvas.get_attribute("data-cols"))
    cell = int(canvas.get_attribute("data-cell"))
    box = canvas.bounding_box()
    return box["x"] + (slot % cols + fx) * cell, box["y"] + (slot // cols + fy) * cell


def pixel(canvas, slot: int, dx: float = 0.5, dy: float = 0.5) -> list[int]:
    """The RGB drawn at a point of a cell."""
    return canvas.evaluate(PIXEL_JS, [slot, dx, dy])


def click_unit(page, canvas, unit: int) -> None:
    canvas.scroll_into_view_if_needed()
    wait_until_still(canvas)  # the click lands where the cell is once the scroll has settled
    page.mouse.click(*cell_centre(canvas, unit))


def check_explorer_selection(page, unit: int, layer: str) -> None:
    """The page's first explorer shows unit ``unit`` of ``layer``: its card's title, and its grid drawn
    (not blank) with that unit outlined."""
    explorer = page.locator(".nw-explorer").first
    explorer.scroll_into_view_if_needed()
    title = explorer.locator(".nw-examples-title")
    title.wait_for(state="visible")
    assert title.inner_text() == f"Unit {unit} of {layer}"
    canvas = explorer.locator("canvas.nw-grid-canvas")
    canvas.scroll_into_view_if_needed()
    assert len({tuple(pixel(canvas, u)) for u in range(int(canvas.get_attribute("data-units")))}) > 4
    assert pixel(canvas, unit, dx=0.04) == [0, 0, 0], "the explorer's selected unit is outlined"
