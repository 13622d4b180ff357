"""ImageOverlay in JupyterLab: the map drawn in the kernel's colours, hover, click, drag-to-occlude
(draw, move, clip, Escape, Clear), the change view, a one-position layer, the pending state and a
kernel error."""

from __future__ import annotations

import json

from colours import close, diverging
from conftest import wait_until

NOTEBOOK = "image_overlay.ipynb"
CELLS = [
    "import json\n"
    "import torch\n"
    "import neurowidgets as nw\n"
    "from neurowidgets.core.images import occlude\n"
    "from neurowidgets.datasets import digits\n"
    "from neurowidgets.widgets.image_overlay import ImageOverlay\n"
    "data = digits()\n"
    "images = data.test_images[:4]",
    'overlay = ImageOverlay(data.model, "relu2", images, selected_units=[3])\noverlay',
    # Kernel-side checks the test calls.
    "def manual_error():\n"
    "    '''Largest |values - a manual probe run on the occluded current example|.'''\n"
    "    image = images[overlay.example : overlay.example + 1]\n"
    "    if overlay.patch:\n"
    "        image = occlude(image, overlay.patch, overlay.fill)\n"
    "    capture = nw.Probe(data.model).run(image, [overlay.layer])\n"
    "    manual = capture[overlay.layer].values[0].numpy()\n"
    "    probs = torch.softmax(capture.output, dim=1)[0]\n"
    "    p = overlay.prediction\n"
    "    return (float(abs(overlay.values[overlay.example] - manual).max()),\n"
    "            p['index'] == int(probs.argmax()), abs(p['probability'] - float(probs.max())) < 1e-5)",
]


def pixel_centre(stage, y: float, x: float) -> tuple[float, float]:
    """The page coordinates of the centre of image pixel (y, x) (fractional pixels allowed)."""
    box = stage.bounding_box()
    h, w = int(stage.get_attribute("data-height")), int(stage.get_attribute("data-width"))
    return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h


def canvas_pixels(canvas) -> list[list[int]]:
    """Every RGBA pixel of a canvas, row-major."""
    return canvas.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  const out = []; for (let i = 0; i < d.length; i += 4) out.push(Array.from(d.slice(i, i + 4)));
                  return out; }"""
    )


def kernel_json(lab, expr: str):
    return json.loads(lab.eval(f"print(json.dumps({expr}))"))


def unit_map(lab, unit: int = 3) -> tuple[list[float], list[float]]:
    """(current, baseline) of `unit` over the 64 positions of the current example, from the kernel."""
    return kernel_json(
        lab,
        f"[overlay.values[overlay.example][:, {unit}].tolist(), overlay.baseline[:, {unit}].tolist()]",
    )


def assert_map_colours(map_canvas, shown: list[float], limit: float) -> None:
    """Each position in the colour of the kernel's value, once the page has drawn it (the scale's limit
    spans the image without the patch too, so it does not tell when a patched map is drawn)."""

    def wrong() -> list:
        drawn = canvas_pixels(map_canvas)  # 8×8 overlay pixels, one per layer position here
        assert len(drawn) == len(shown) == 64
        return [
            (position, value, drawn[position])
            for position, value in enumerate(shown)
            if not close(drawn[position][:3], diverging(value, limit)) or drawn[position][3] != 255
        ]

    try:
        wait_until(lambda: not wrong(), "the map drawn in the kernel's values")
    except AssertionError:
        drawn_limit = map_canvas.get_attribute("data-limit")
        raise AssertionError(
            f"limit {limit} (page: {drawn_limit}); (position, value, drawn) not in its colours: {wrong()[:5]}"
        ) from None


def drag(page, stage, start, end, steps: int = 6) -> None:
    page.mouse.move(*pixel_centre(stage, *start))
    page.mouse.down()
    page.mouse.move(*pixel_centre(stage, *end), steps=steps)
    page.mouse.up()


def test_overlay_map_hover_click_and_drag_to_occlude(lab):
    page = lab.page
    lab.write_notebook(NOTEBOOK, CELLS)
    lab.open(NOTEBOOK)
    lab.run_all()
    widget = page.locator(".nw-overlay").first
    stage = widget.locator(".nw-overlay-stage")
    map_canvas = widget.locator("canvas.nw-overlay-map")
    image_canvas = widget.locator("canvas.nw-overlay-image")
    stage.scroll_into_view_if_needed()
    page.wait_for_function("c => +c.dataset.paints >= 1", arg=map_canvas.element_handle())
    assert stage.get_attribute("data-grid") == "8x8"
    box = stage.bounding_box()
    assert (round(box["width"]), round(box["height"])) == (256, 256), "8×8 digits drawn at 256 px"
    assert image_canvas.evaluate("c => getComputedStyle(c).imageRendering") == "pixelated"

    # The image: exactly the kernel's pixels.
    pixels = kernel_json(lab, "overlay.pixels[0].reshape(-1, 4).tolist()")
    assert canvas_pixels(image_canvas) == pixels
    assert len({tuple(p) for p in pixels}) > 5, "a digit, not a blank image"

    # The map: each position in the colour of the kernel's value, on the scale every panel shares.
    current, baseline = unit_map(lab)
    limit = float(lab.eval("print(overlay.colour_limit)"))
    assert abs(float(map_canvas.get_attribute("data-limit")) - limit) <= 2e-3 * limit
    assert_map_colours(map_canvas, current, limit)
    assert len({tuple(p) for p in canvas_pixels(map_canvas)}) > 5, "drawn, not blank"
    assert map_canvas.evaluate("c => getComputedStyle(c).opacity") == "0.6"
    page.mouse.move(0, 0)
    lab.screenshot(widget, "image_overlay/activation.png")

    # Hover: the layer position under the pointer is outlined; the tooltip has the kernel's value.
    page.mouse.move(*pixel_centre(stage, 3, 5))
    tooltip = widget.locator(".nw-tooltip")
    tooltip.wait_for(state="visible")
    lines = tooltip.inner_text().splitlines()
    assert lines[0] == "unit 3 · position (3, 5)"
    value = float(lines[1].removeprefix("activation: "))
    assert abs(value - current[3 * 8 + 5]) <= 2e-3 * max(1, abs(current[3 * 8 + 5]))
    hover = widget.locator(".nw-overlay-hover")
    hover_box, cell = hover.bounding_box(), 256 / 8
    assert abs(hover_box["x"] - (box["x"] + 5 * cell)) < 1.5 and abs(hover_box["width"] - cell) < 1.5

    # Click (no drag): the shared position.
    page.mouse.click(*pixel_centre(stage, 3, 5))
    lab.poll("overlay.position", str(3 * 8 + 5))
    assert lab.eval("overlay.patch") == "[]", "a click is not a drag"

    # Drag a patch over several moves: the kernel occludes and re-runs; the page shows it.
    drag(page, stage, (1, 1), (4, 5))
    lab.poll("overlay.patch", "[1, 1, 5, 6]")
    lab.poll("overlay.prediction['patched']", "True")
    assert stage.get_attribute("data-patch") == "1,1,5,6"
    error, same_class, same_probability = kernel_json(lab, "manual_error()")
    assert error < 1e-5 and same_class and same_probability
    patch_box = widget.locator(".nw-overlay-patch").bounding_box()
    assert abs(patch_box["x"] - (box["x"] + 1 * cell)) < 1.5 and abs(patch_box["width"] - 5 * cell) < 1.5
    drawn = canvas_pixels(image_canvas)
    assert drawn[2 * 8 + 3] == [0, 0, 0, 255], "the occluded pixels show the fill"
    assert drawn[6 * 8 + 6] == pixels[6 * 8 + 6], "the rest of the image is untouched"
    current, baseline = unit_map(lab)
    assert current != baseline
    limit = float(lab.eval("print(overlay.colour_limit)"))  # spans the image without the patch too
    page.wait_for_function(
        "([c, v]) => Math.abs(+c.dataset.limit - v) < 1e-3 * v", arg=[map_canvas.element_handle(), limit]
    )
    assert_map_colours(map_canvas, current, limit)
    readout = widget.locator(".nw-overlay-readout")
    prediction = kernel_json(lab, "overlay.prediction")
    assert readout.get_attribute("data-label") == prediction["label"]
    assert f"{100 * prediction['probability']:.1f}%" in widget.locator(".nw-overlay-patched").inner_text()
    assert f"{100 * prediction['original_probability']:.1f}%" in widget.locator(".nw-overlay-original").inner_text()
    page.mouse.move(*pixel_centre(stage, 6.2, 6.2))
    lab.screenshot(widget, "image_overlay/patch.png")

    # The change against the unedited image, from the baseline.
    widget.get_by_role("combobox", name="Show").select_option("change")
    lab.poll("overlay.show", "'change'")
    change = [c - b for c, b in zip(current, baseline, strict=True)]
    page.wait_for_function("c => c.dataset.show === 'change'", arg=map_canvas.element_handle())
    assert_map_colours(map_canvas, change, limit)
    page.mouse.move(*pixel_centre(stage, 6, 2))
    tooltip.wait_for(state="visible")
    lines = tooltip.inner_text().splitlines()
    assert lines[3].startswith("change: ")
    assert abs(float(lines[3].removeprefix("change: ")) - change[6 * 8 + 2]) <= 4e-3 * max(1, abs(change[6 * 8 + 2]))
    lab.screenshot(widget, "image_overlay/change.png")

    # Move the patch: drag from inside it.
    drag(page, stage, (2, 2), (2, 4))
    lab.poll("overlay.patch", "[1, 3, 5, 8]")
    assert kernel_json(lab, "manual_error()")[0] < 1e-5

    # Partly outside: dragging past the bottom-right corner clips the patch to the image.
    page.mouse.move(*pixel_centre(stage, 5, 5))
    page.mouse.down()
    page.mouse.move(*pixel_centre(stage, 7, 7), steps=3)
    page.mouse.move(box["x"] + box["width"] + 40, box["y"] + box["height"] + 40, steps=3)
    lab.poll("overlay.patch", "[5, 5, 8, 8]")
    page.wait_for_function("s => s.dataset.patch === '5,5,8,8'", arg=stage.element_handle())
    page.mouse.up()
    assert kernel_json(lab, "manual_error()")[0] < 1e-5
    lab.screenshot(widget, "image_overlay/clipped.png")

    # Escape clears (the stage has the focus after a drag); the original values come back.
    page.keyboard.press("Escape")
    lab.poll("overlay.patch", "[]")
    assert lab.eval("bool((overlay.values[0] == overlay.baseline).all())") == "True"
    page.wait_for_function("s => s.dataset.patch === ''", arg=stage.element_handle())
    assert widget.locator(".nw-overlay-patch").is_hidden()

    # The Clear button too, and keyboard probing: Shift+arrows move the patch.
    drag(page, stage, (0, 0), (2, 2))
    lab.poll("overlay.patch", "[0, 0, 3, 3]")
    page.keyboard.press("Shift+ArrowRight")
    lab.poll("overlay.patch", "[0, 1, 3, 4]")
    widget.get_by_role("button", name="Clear patch").click()
    lab.poll("overlay.patch", "[]")
    lab.eval("overlay.patch = [2, 2, 4, 4]")  # Python sets and clears it: the page follows
    page.wait_for_function("s => s.dataset.patch === '2,2,4,4'", arg=stage.element_handle())
    lab.eval("overlay.clear_patch()")
    page.wait_for_function("s => s.dataset.patch === ''", arg=stage.element_handle())
    drag(page, stage, (0, 0), (2, 2))  # the same patch as before is asked for again
    lab.poll("overlay.patch", "[0, 0, 3, 3]")
    page.keyboard.press("Escape")
    lab.poll("overlay.patch", "[]")

    # Keyboard: arrows move the outlined cell from the selected position, Enter selects it.
    stage.focus()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    lab.poll("overlay.position", str(4 * 8 + 5))
    assert widget.locator(".nw-tooltip").inner_text().splitlines()[0] == "unit 3 · position (4, 5)"
    lab.screenshot(widget, "image_overlay/keyboard.png")

    # Opacity: a labelled slider, local and synced.
    slider = widget.get_by_role("slider", name="Overlay opacity")
    slider.focus()
    page.keyboard.press("ArrowLeft")
    lab.poll("overlay.opacity", "0.55")
    assert map_canvas.evaluate("c => getComputedStyle(c).opacity") == "0.55"

    # Another unit: recoloured locally.
    lab.eval("overlay.selected_units = [7]")
    page.wait_for_function("c => c.dataset.unit === '7'", arg=map_canvas.element_handle())
    current, _ = unit_map(lab, 7)
    widget.get_by_role("combobox", name="Show").select_option("activation")
    page.wait_for_function("c => c.dataset.show === 'activation'", arg=map_canvas.element_handle())
    assert_map_colours(map_canvas, current, float(lab.eval("print(overlay.colour_limit)")))  # one scale, any unit


def test_pending_state_kernel_error_and_a_layer_without_a_map(lab):
    page = lab.page
    lab.write_notebook(NOTEBOOK, CELLS)
    lab.open(NOTEBOOK)
    lab.run_all()
    widget = page.locator(".nw-overlay").first
    stage = widget.locator(".nw-overlay-stage")
    stage.scroll_into_view_if_needed()

    # A busy kernel: the drag is answered later; meanwhile the view says it is computing. The kernel
    # stays busy until the test has seen that, however slow the machine.
    release = lab.server.root / "release_overlay_kernel"
    lab.kernel().execute(
        f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.02)", store_history=False
    )
    lab.wait_for_kernel("Busy")
    drag(page, stage, (1, 1), (3, 3))
    widget.locator(".nw-overlay-status", has_text="computing").wait_for(state="visible")
    assert "nw-busy" in (widget.get_attribute("class") or "")
    lab.screenshot(widget, "image_overlay/pending.png")
    release.touch()
    lab.poll("overlay.patch", "[1, 1, 4, 4]")
    release.unlink()
    page.wait_for_function("el => el.dataset.busy === '0'", arg=widget.element_handle())
    assert "nw-busy" not in (widget.get_attribute("class") or "")

    # A kernel error while occluding: shown in the widget, which stays usable.
    lab.eval(
        "real_run = overlay.probe.run\n"
        "def broken(*a, **k): raise RuntimeError('simulated failure')\n"
        "overlay.probe.run = broken"
    )
    drag(page, stage, (4, 4), (6, 6))
    error_box = widget.locator(".nw-error")
    error_box.wait_for(state="visible")
    assert "simulated failure" in error_box.inner_text()
    assert lab.eval("overlay.patch") == "[1, 1, 4, 4]"
    lab.screenshot(widget, "image_overlay/error.png")
    lab.eval("overlay.probe.run = real_run")
    drag(page, stage, (4, 4), (6, 7))
    lab.poll("overlay.patch", "[4, 4, 7, 8]")
    error_box.wait_for(state="hidden")

    # A coarser grid (pool: 4×4 over the 8×8 image), upsampled nearest: each cell covers 2×2 pixels.
    widget.get_by_role("combobox", name="Layer").select_option("pool")
    map_canvas = widget.locator("canvas.nw-overlay-map")
    page.wait_for_function("s => s.dataset.grid === '4x4'", arg=stage.element_handle())
    lab.poll("overlay.positions_shape", "[4, 4]")
    current = kernel_json(lab, "overlay.values[0][:, 3].tolist()")
    limit = float(lab.eval("print(overlay.colour_limit)"))
    page.wait_for_function(
        "([c, v]) => Math.abs(+c.dataset.limit - v) < 1e-3 * v", arg=[map_canvas.element_handle(), limit]
    )
    upsampled = [current[(y // 2) * 4 + x // 2] for y in range(8) for x in range(8)]
    assert_map_colours(map_canvas, upsampled, limit)
    page.mouse.move(*pixel_centre(stage, 5, 2))
    hover_box, box = widget.locator(".nw-overlay-hover").bounding_box(), stage.bounding_box()
    assert abs(hover_box["y"] - (box["y"] + 4 * 32)) < 1.5 and abs(hover_box["height"] - 64) < 1.5
    assert widget.locator(".nw-tooltip").inner_text().splitlines()[0] == "unit 3 · position (2, 1)"
    lab.screenshot(widget, "image_overlay/pool.png")

    # A Linear layer has one position: the image with a note, and the prediction still probes.
    widget.get_by_role("combobox", name="Layer").select_option("fc1")
    lab.poll("overlay.positions_shape", "[]")
    note = widget.locator(".nw-overlay-note")
    note.wait_for(state="visible")
    assert "has one position: no spatial map" in note.inner_text()
    assert widget.locator("canvas.nw-overlay-map").is_hidden()
    assert kernel_json(lab, "manual_error()")[0] < 1e-5
    drag(page, stage, (0, 0), (7, 3))
    lab.poll("overlay.patch", "[0, 0, 8, 4]")
    assert kernel_json(lab, "manual_error()")[0] < 1e-5
    page.mouse.move(0, 0)
    lab.screenshot(widget, "image_overlay/linear.png")
