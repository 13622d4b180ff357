"""ActivationTrace in JupyterLab: a batch of digits through the CNN, and a layer with NaN in it. Hover, click
positions and examples, switch "Along", set the selection from Python; check the kernel and what is drawn."""

from __future__ import annotations

import json
import re

from conftest import artifact_path, dark_theme, next_paint

NOTEBOOK = "activation_trace_test.ipynb"
CELLS = [
    """\
import json
import torch
from neurowidgets.datasets import digits
from neurowidgets.widgets.activation_trace import ActivationTrace

data = digits()
trace = ActivationTrace(data.model, "relu2", data.test_images[:3], selected_units=[2, 5])
trace""",
    """\
# A layer whose output has NaN and infinities: unit 1's bias is NaN (NaN everywhere); position 5 of the
# input is NaN (every unit NaN there: a gap in the lines); position 8 has an infinite feature (±inf).
torch.manual_seed(0)
linear = torch.nn.Linear(4, 6)
with torch.no_grad():
    linear.bias[1] = float("nan")
words = "the quick brown fox jumps over the lazy dog and runs away".split()
x = torch.randn(1, len(words), 4)
x[0, 5] = float("nan")
x[0, 8, 0] = float("inf")
nan_trace = ActivationTrace(torch.nn.Sequential(linear), "0", x, selected_units=[0, 1, 3], position_labels=[words])
nan_trace""",
    """\
# 512 positions × 10 units: the size the chart must stay fast for.
identity = torch.nn.Sequential(torch.nn.Identity())
big = ActivationTrace(identity, "0", torch.randn(1, 512, 16), selected_units=list(range(10)))
big""",
]

SERIES = [(0x4E, 0x79, 0xA7), (0xF2, 0x8E, 0x2B)]  # SERIES_COLOURS[0:2] of js/activation_trace.ts
HALF = 2e-3  # float16 on the wire


def geometry(canvas) -> dict[str, float]:
    return {k: float(canvas.get_attribute(f"data-{k}")) for k in ("count", "left", "step", "top", "bottom")}


def point(canvas, index: int) -> tuple[float, float]:
    """Page coordinates of x = ``index``, half-way down the plot."""
    g = geometry(canvas)
    box = canvas.bounding_box()
    return box["x"] + g["left"] + (index + 0.5) * g["step"], box["y"] + (g["top"] + g["bottom"]) / 2


def colour_counts(canvas, colours: list[tuple[int, int, int]], tolerance: int = 12) -> list[int]:
    """How many pixels of the canvas have each colour."""
    return canvas.evaluate(
        """(c, [colours, tol]) => {
            const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const counts = colours.map(() => 0);
            for (let i = 0; i < data.length; i += 4) {
                if (data[i + 3] < 250) continue;
                colours.forEach(([r, g, b], k) => {
                    const near = Math.abs(data[i] - r) <= tol && Math.abs(data[i + 1] - g) <= tol
                        && Math.abs(data[i + 2] - b) <= tol;
                    if (near) counts[k]++;
                });
            }
            return counts;
        }""",
        [colours, tolerance],
    )


def tooltip_values(tooltip) -> tuple[str, dict[int, str]]:
    """The tooltip's heading and its ``unit → value text`` lines."""
    lines = tooltip.inner_text().splitlines()
    units = {}
    for line in lines[1:]:
        match = re.fullmatch(r"unit (\d+): (.+?)(?: at \(\d+, \d+\))?", line.strip())
        assert match, lines
        units[int(match[1])] = match[2]
    return lines[0].strip(), units


def hover(page, canvas, tooltip, index: int) -> tuple[str, dict[int, str]]:
    page.mouse.move(*point(canvas, index))
    tooltip.wait_for(state="visible")
    heading = "example" if canvas.get_attribute("data-along") == "examples" else "position"
    page.wait_for_function("([el, h]) => el.textContent.startsWith(h)", arg=[tooltip.element_handle(), heading])
    return tooltip_values(tooltip)


def assert_close(text: str, expected: float) -> None:
    assert abs(float(text) - expected) <= HALF * max(1.0, abs(expected)), (text, expected)


def test_trace_hover_click_along_and_nan(lab):
    page = lab.page
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    lab.write_notebook(NOTEBOOK, CELLS)
    lab.open(NOTEBOOK)
    lab.run_all()

    widget = page.locator(".nw-trace").first
    canvas = widget.locator("canvas.nw-trace-canvas")
    tooltip = widget.locator(".nw-tooltip")
    canvas.scroll_into_view_if_needed()
    page.wait_for_function("c => c.dataset.units === '2,5'", arg=canvas.element_handle())
    names = widget.locator(".nw-trace-key-name")
    assert names.all_inner_texts() == ["unit 2", "unit 5"]
    assert geometry(canvas)["count"] == 64
    assert widget.get_by_role("combobox", name="Along").is_enabled()

    # Drawn, not blank: both series' colours are on the canvas, along a line.
    counts = colour_counts(canvas, SERIES)
    assert all(n > 100 for n in counts), counts

    # Hover: the tooltip lists every selected unit's value at that position, as the kernel has it.
    values = json.loads(lab.eval("print(json.dumps(trace.values[0][:, [2, 5]].astype(float).tolist()))"))
    for position in (0, 20, 63):
        heading, shown = hover(page, canvas, tooltip, position)
        assert heading == f"position ({position // 8}, {position % 8})"
        assert set(shown) == {2, 5}
        assert_close(shown[2], values[position][0])
        assert_close(shown[5], values[position][1])
    lab.screenshot(widget, "activation_trace/hover.png")

    # Click selects a position (a marker is drawn); clicking it again clears it.
    page.mouse.click(*point(canvas, 20))
    lab.poll("trace.position", "20")
    page.wait_for_function("c => c.dataset.marker === '20'", arg=canvas.element_handle())
    page.mouse.move(0, 0)
    lab.screenshot(widget, "activation_trace/position_selected.png")
    page.mouse.click(*point(canvas, 20))
    lab.poll("trace.position", "-1")
    page.wait_for_function("c => c.dataset.marker === '-1'", arg=canvas.element_handle())

    # Keyboard: the chart takes focus, arrows move the cursor, Enter selects.
    page.mouse.move(0, 0)
    canvas.focus()
    page.keyboard.press("ArrowRight")  # the cursor appears at position 0
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    lab.poll("trace.position", "1")

    # Across examples: x is the example, y each unit's max over positions; a click picks the example.
    widget.get_by_role("combobox", name="Along").select_option("examples")
    lab.poll("trace.along", "'examples'")
    page.wait_for_function(
        "c => c.dataset.count === '3' && c.dataset.along === 'examples'", arg=canvas.element_handle()
    )
    maxima = json.loads(lab.eval("print(json.dumps([trace.trace(u).astype(float).tolist() for u in (2, 5)]))"))
    heading, shown = hover(page, canvas, tooltip, 1)
    assert heading == "example 1"
    assert_close(shown[2], maxima[0][1])
    assert_close(shown[5], maxima[1][1])
    page.mouse.click(*point(canvas, 2))
    lab.poll("trace.example", "2")
    page.wait_for_function("c => c.dataset.marker === '2'", arg=canvas.element_handle())
    lab.screenshot(widget, "activation_trace/examples.png")
    widget.get_by_role("combobox", name="Along").select_option("positions")
    lab.poll("trace.along", "'positions'")

    # Python changes the selection: the legend and the chart follow, with no new values sent.
    lab.eval("trace.selected_units = [7]")
    page.wait_for_function("c => c.dataset.units === '7'", arg=canvas.element_handle())
    assert names.all_inner_texts() == ["unit 7"]
    # The legend's remove button deselects in the kernel; with no unit the hint shows.
    widget.get_by_role("button", name="remove unit 7").click()
    lab.poll("trace.selected_units", "[]")
    hint = widget.locator(".nw-trace-hint")
    hint.wait_for(state="visible")
    assert hint.inner_text() == "select units in the grid or set selected_units"
    assert not canvas.is_visible()
    lab.screenshot(widget, "activation_trace/no_units.png")
    lab.eval("trace.selected_units = [2, 5, 7]")
    page.wait_for_function("c => c.dataset.units === '2,5,7'", arg=canvas.element_handle())

    # NaN: drawn without a JS error, and said so in the tooltip; the lines have a gap at position 5.
    nan_widget = page.locator(".nw-trace").nth(1)
    nan_canvas = nan_widget.locator("canvas.nw-trace-canvas")
    nan_tooltip = nan_widget.locator(".nw-tooltip")
    nan_canvas.scroll_into_view_if_needed()
    page.wait_for_function("c => c.dataset.units === '0,1,3'", arg=nan_canvas.element_handle())
    nan_values = json.loads(lab.eval("print(json.dumps(nan_trace.values[0][:, [0, 3]].astype(float).tolist()))"))
    heading, shown = hover(page, nan_canvas, nan_tooltip, 2)
    assert heading == "position 2: brown"
    assert shown[1] == "NaN (not a number)"
    assert_close(shown[0], nan_values[2][0])
    assert_close(shown[3], nan_values[2][1])
    heading, shown = hover(page, nan_canvas, nan_tooltip, 5)
    assert heading == "position 5: over"
    assert shown == {0: "NaN (not a number)", 1: "NaN (not a number)", 3: "NaN (not a number)"}
    heading, shown = hover(page, nan_canvas, nan_tooltip, 8)
    assert heading == "position 8: dog"
    inf = json.loads(lab.eval("print(json.dumps(nan_trace.values[0, 8, [0, 3]].astype(float).tolist()))"))
    signs = [f"{value:+}" for value in inf]  # "+inf" or "-inf", as the tooltip writes them
    assert signs[0] in ("+inf", "-inf") and signs[1] in ("+inf", "-inf")
    assert shown == {0: signs[0], 1: "NaN (not a number)", 3: signs[1]}
    lab.screenshot(nan_widget, "activation_trace/nan.png")
    notes = nan_widget.locator(".nw-trace-key-note").all_inner_texts()
    assert notes == [f"(1 NaN, 1 {signs[0]})", "(all NaN)", f"(1 NaN, 1 {signs[1]})"]
    page.mouse.move(0, 0)

    # 512 positions × 10 units: a full redraw (here: emphasising a unit from the legend), measured.
    big_widget = page.locator(".nw-trace").nth(2)
    big_canvas = big_widget.locator("canvas.nw-trace-canvas")
    big_canvas.scroll_into_view_if_needed()
    page.wait_for_function("c => c.dataset.count === '512'", arg=big_canvas.element_handle())
    redraw_ms = big_canvas.evaluate(
        """c => {
            const item = c.closest('.nw-trace').querySelector('.nw-trace-key');
            const t0 = performance.now();
            for (let i = 0; i < 20; i++) {
                item.dispatchEvent(new MouseEvent('mouseenter'));
                item.dispatchEvent(new MouseEvent('mouseleave'));
            }
            return (performance.now() - t0) / 40;
        }"""
    )
    artifact_path("activation_trace/redraw_512x10.txt").write_text(
        f"full redraw, 512 positions x 10 units: {redraw_ms:.2f} ms\n"
    )
    heading, shown = hover(page, big_canvas, big_widget.locator(".nw-tooltip"), 300)
    assert heading == "position 300" and list(shown) == list(range(10))
    lab.screenshot(big_widget, "activation_trace/512_positions.png")

    # JupyterLab's dark theme: the chart redraws with the theme's colours.
    page.mouse.move(0, 0)
    with dark_theme(page):
        nan_canvas.scroll_into_view_if_needed()
        next_paint(page)  # Lab sets the attribute once the theme's stylesheet is loaded; the observer redraws
        lab.screenshot(nan_widget, "activation_trace/nan_dark.png")
        axis_text = nan_canvas.evaluate("""c => getComputedStyle(c).getPropertyValue('--jp-ui-font-color2').trim()""")
        assert axis_text and axis_text != "rgba(0, 0, 0, 0.54)", axis_text  # the dark theme's, not light's

    assert page_errors == [], page_errors
    assert not [line for line in page.console_log if line.startswith("[error]") and "activation_trace" in line]
