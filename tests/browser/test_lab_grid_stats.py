"""NeuronGrid with a scan in JupyterLab: brush-select, colour by a scan statistic, order by value."""

from __future__ import annotations

import json
import math

from colours import close
from grid_page import cell_centre, pixel

# Viridis, the sequential stops of js/lib/colors.ts; flags as drawn for dead / saturated units.
VIRIDIS = [
    (68, 1, 84),
    (72, 36, 117),
    (65, 68, 135),
    (53, 95, 141),
    (42, 120, 142),
    (33, 145, 140),
    (34, 168, 132),
    (68, 191, 112),
    (122, 209, 81),
    (189, 223, 38),
    (253, 231, 37),
]
FLAG_ON = (255, 145, 0)
FLAG_OFF = (224, 224, 224)

CELLS = [
    "import json\n"
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "data = digits()\n"
    'result = nw.scan(data.model, data.test_images[:200], ["fc1", "conv2"], k=4, progress=False, cache=False)\n'
    'grid = nw.NeuronGrid(data.model, "fc1", data.test_images[:1], scan=result)\n'
    "grid",
]


def sequential(value: float, limit: float = 1.0, size: int = 256) -> tuple[int, int, int]:
    i = max(0, min(size - 1, round(value / limit * (size - 1))))
    s = i / (size - 1) * (len(VIRIDIS) - 1)
    lo = min(math.floor(s), len(VIRIDIS) - 2)
    f = s - lo
    return tuple(round(VIRIDIS[lo][c] * (1 - f) + VIRIDIS[lo + 1][c] * f) for c in range(3))


def drag(page, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=3)
    page.mouse.move(*end, steps=3)
    page.mouse.up()


def test_brush_colour_by_scan_statistics_and_order_by_value(lab):
    page = lab.page
    lab.run_notebook("grid_stats.ipynb", CELLS)
    widget = page.locator(".nw-grid").first
    canvas = widget.locator("canvas.nw-grid-canvas")
    canvas.scroll_into_view_if_needed()
    assert canvas.get_attribute("data-units") == "64"
    cols = int(canvas.get_attribute("data-cols"))
    assert cols == 20

    # Brush from inside slot 1 to inside slot cols + 3: the 2 × 3 block of covered cells.
    drag(page, cell_centre(canvas, 1, 0.3, 0.3), cell_centre(canvas, cols + 3, 0.6, 0.6))
    lab.poll("grid.selected_units", "[1, 2, 3, 21, 22, 23]")
    # With Shift, a second brush adds its units.
    page.keyboard.down("Shift")
    drag(page, cell_centre(canvas, 2 * cols + 5, 0.2, 0.2), cell_centre(canvas, 2 * cols + 6, 0.8, 0.5))
    page.keyboard.up("Shift")
    lab.poll("grid.selected_units", "[1, 2, 3, 21, 22, 23, 45, 46]")
    lab.screenshot(widget, "neuron_grid/brushed.png")
    # A click without a drag still selects one unit.
    page.mouse.click(*cell_centre(canvas, 7))
    lab.poll("grid.selected_units", "[7]")

    # Colour by the scan's density: every cell shows the sequential colour of its kernel density.
    colour_by = widget.get_by_role("combobox", name="Colour by")
    options = colour_by.locator("option").all_inner_texts()
    assert options == [
        "max over positions",
        "mean over positions",
        "mean (scan)",
        "max (scan)",
        "density (scan)",
        "dead units (scan)",
    ], options
    colour_by.select_option("scan:density")
    lab.poll("grid.reduce", "'scan:density'")
    density = json.loads(lab.eval('print(json.dumps(result["fc1"].density.tolist()))'))
    for unit in range(64):
        assert close(pixel(canvas, unit), sequential(density[unit]), tolerance=2), (unit, density[unit])
    page.mouse.move(0, 0)
    lab.screenshot(widget, "neuron_grid/density.png")

    # Dead units stand out in the flag colour, the others are grey.
    colour_by.select_option("scan:dead")
    dead = set(json.loads(lab.eval('print(json.dumps(result["fc1"].dead().tolist()))')))
    for unit in range(64):
        assert tuple(pixel(canvas, unit)) == (FLAG_ON if unit in dead else FLAG_OFF), unit

    # Order by value (max over positions): the max-valued unit comes first, and hover names it.
    colour_by.select_option("max")
    widget.get_by_role("combobox", name="Order").select_option("value")
    lab.poll("grid.order", "'value'")
    values = json.loads(lab.eval("print(json.dumps(grid.values[0].max(axis=0).tolist()))"))
    ranked = sorted(range(64), key=lambda u: (-values[u], u))
    page.mouse.move(*cell_centre(canvas, 0))
    tooltip = widget.locator(".nw-tooltip")
    tooltip.wait_for(state="visible")
    assert tooltip.inner_text().splitlines()[0] == f"unit {ranked[0]}"
    # Clicks, outlines and brushes map through the order.
    page.mouse.click(*cell_centre(canvas, 1))
    lab.poll("grid.selected_units", f"[{ranked[1]}]")
    assert pixel(canvas, 1) != [0, 0, 0]
    assert canvas.evaluate(
        "c => Array.from(c.getContext('2d').getImageData(+c.dataset.cell + 1, 18, 1, 1).data.slice(0, 3))"
    ) == [0, 0, 0], "the outline is drawn in the clicked unit's slot"
    drag(page, cell_centre(canvas, 0, 0.3, 0.3), cell_centre(canvas, 2, 0.6, 0.6))
    lab.poll("grid.selected_units", str(ranked[:3]))
    page.mouse.move(0, 0)
    lab.screenshot(widget, "neuron_grid/ordered.png")

    # Another layer that was not scanned: the statistics go, the colouring falls back.
    colour_by.select_option("scan:density")
    widget.get_by_role("combobox", name="Layer").select_option("conv1")
    lab.poll("grid.reduce", "'max'")
    page.wait_for_function("c => c.dataset.units === '8'", arg=canvas.element_handle())
    assert colour_by.locator("option").count() == 2
