"""Attribution mode in JupyterLab: the image overlay switched to "attribution" draws the kernel's map
(nw.attribute of the selected unit) pixel for pixel in the diverging scale, says which method and how
long it took, follows the method picked in the panel, and shows an occlusion sweep's progress."""

from __future__ import annotations

import json
import math
from pathlib import Path

from colours import close, diverging

TESTS = Path(__file__).resolve().parent.parent

CELLS = [
    "import json\n"
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "from neurowidgets.widgets.image_overlay import ImageOverlay\n"
    "data = digits()\n"
    "images = data.test_images[:4]",
    'overlay = ImageOverlay(data.model, "relu2", images, selected_units=[3])\noverlay',
    "def reference(method, prediction=False, **options):\n"
    "    '''nw.attribute of what the overlay shows, summed over the channels, as a list.'''\n"
    "    position = overlay.position if overlay.position >= 0 and not prediction else None\n"
    "    layer = None if prediction else overlay.layer\n"
    "    unit = overlay.prediction['original_index'] if prediction else overlay.selected_units[0]\n"
    "    values = nw.attribute(nw.Probe(data.model), overlay.occluded_image(), layer, unit, method,\n"
    "                          position=position, **options)\n"
    "    return values[0].sum(0).flatten().tolist()",
]


def canvas_pixels(canvas) -> list[list[int]]:
    return canvas.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  const out = []; for (let i = 0; i < d.length; i += 4) out.push(Array.from(d.slice(i, i + 4)));
                  return out; }"""
    )


def assert_drawn(page, map_canvas, expected: list[float]) -> None:
    """The canvas shows one pixel per image pixel, each in the colour of the kernel's value."""
    limit = max(abs(v) for v in expected if math.isfinite(v)) or 1.0  # as js/lib/colors.ts symmetricLimit
    page.wait_for_function(
        "([c, v]) => c.dataset.show === 'attribution' && !c.hidden && Math.abs(+c.dataset.limit - v) <= 1e-6 * v",
        arg=[map_canvas.element_handle(), limit],
    )
    drawn = canvas_pixels(map_canvas)
    assert len(drawn) == len(expected) == 64
    for pixel, value in enumerate(expected):
        assert close(drawn[pixel][:3], diverging(value, limit), tolerance=1), (pixel, value, drawn[pixel])
    assert len({tuple(p) for p in drawn}) > 5, "a map, not a blank"


def test_overlay_attribution_mode_draws_the_kernels_map(lab):
    page = lab.page
    lab.run_notebook("lab_attribution.ipynb", CELLS)
    widget = page.locator(".nw-overlay").first
    map_canvas = widget.locator("canvas.nw-overlay-map")
    widget.scroll_into_view_if_needed()
    page.wait_for_function("c => +c.dataset.paints >= 1", arg=map_canvas.element_handle())

    # Switch the overlay to attribution: integrated gradients of unit 3, summed over its positions.
    method = widget.get_by_role("combobox", name="Method")
    assert method.is_hidden(), "the method picker belongs to the attribution mode"
    widget.get_by_role("combobox", name="Show").select_option("attribution")
    lab.poll("overlay.show", "'attribution'")
    lab.poll("overlay.attribution is not None", "True")
    assert method.input_value() == "integrated_gradients"
    assert_drawn(page, map_canvas, json.loads(lab.eval("print(json.dumps(reference('integrated_gradients')))")))
    info = json.loads(lab.eval("print(json.dumps(overlay.attribution_info))"))
    line = widget.locator(".nw-overlay-attribution-text")
    assert line.inner_text() == f"integrated gradients of unit 3 · {1000 * info['seconds']:.1f} ms"
    assert widget.locator(".nw-legend-caption").inner_text() == "attribution (integrated gradients)"
    page.mouse.move(0, 0)
    lab.screenshot(widget, "attribution/integrated_gradients.png")

    # Another method from the panel, another position: the kernel recomputes, the page redraws.
    method.select_option("gradient")
    lab.poll("overlay.attribution_info.get('method')", "'gradient'")
    position = lab.eval("print(int(overlay.values[0][:, 3].argmax()))")  # where unit 3 fires most
    lab.eval(f"overlay.position = {position}")
    lab.poll("overlay.attribution_info.get('position')", position)
    assert_drawn(page, map_canvas, json.loads(lab.eval("print(json.dumps(reference('gradient')))")))
    assert line.inner_text().startswith("gradient of unit 3 · ")

    # Occlusion: a sweep of a 2×2 patch over the image, in the background, its progress shown.
    method.select_option("occlusion")
    lab.poll("overlay.attribution_info.get('done')", "49")
    expected = json.loads(lab.eval("print(json.dumps(reference('occlusion', size=2, stride=1)))"))
    assert_drawn(page, map_canvas, expected)
    page.wait_for_function("e => e.innerText.startsWith('occlusion of unit 3')", arg=line.element_handle())
    assert widget.locator("progress.nw-overlay-sweep").is_hidden(), "no progress bar once the sweep is done"
    lab.screenshot(widget, "attribution/occlusion.png")

    # Of the prediction: the sweep's drop of the predicted class's logit, no unit involved.
    widget.get_by_role("combobox", name="Of").select_option("prediction")
    lab.poll("overlay.attribution_info.get('target')", "'prediction'")
    lab.poll("overlay.attribution_info.get('done')", "49")
    expected = json.loads(lab.eval("print(json.dumps(reference('occlusion', prediction=True, size=2, stride=1)))"))
    assert_drawn(page, map_canvas, expected)
    page.wait_for_function("e => e.innerText.startsWith('occlusion of class ')", arg=line.element_handle())

    # Back to activations: the layer's map again, over the layer's grid.
    widget.get_by_role("combobox", name="Show").select_option("activation")
    lab.poll("overlay.attribution is None", "True")
    page.wait_for_function("c => c.dataset.show === 'activation'", arg=map_canvas.element_handle())
    assert method.is_hidden() and widget.locator(".nw-overlay-attribution").is_hidden()


HEATMAP_CELLS = [
    f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
    "import json\n"
    "import neurowidgets as nw\n"
    "from language_models import build, tokenizer\n"
    "from neurowidgets.widgets.token_heatmap import TokenHeatmap\n"
    "tok = tokenizer()\n"
    "model = build('gpt2', tok, size='tiny')\n"
    "texts = ['The cat sat on the mat.', 'Dogs bark at night.']",
    "heatmap = TokenHeatmap(model, 'transformer.h.1.mlp.act', texts, tok, selected_units=[7])\nheatmap",
    "def reference(method):\n"
    "    inputs = nw.TextAdapter(tok)([heatmap.texts[heatmap.example]])\n"
    "    position = heatmap.position if heatmap.position >= 0 else None\n"
    "    options = {'size': 1} if method == 'occlusion' else {}\n"
    "    values = nw.attribute(nw.Probe(model), inputs, heatmap.layer, 7, method, position=position, **options)\n"
    "    return values[0].tolist()",
]


def wait_for_limit(page, legend, limit: float) -> None:
    page.wait_for_function(
        "([e, v]) => Math.abs(+e.dataset.limit - v) <= 1e-6 * v", arg=[legend.element_handle(), limit]
    )


def token_colours(row) -> list[list[int]]:
    return row.locator(".nw-heatmap-token").evaluate_all(
        "spans => spans.map(s => (getComputedStyle(s).backgroundColor.match(/\\d+/g) || []).slice(0, 3).map(Number))"
    )


def test_token_heatmap_attribution_mode_colours_the_row_by_the_kernels_values(lab):
    page = lab.page
    lab.run_notebook("lab_attribution_text.ipynb", HEATMAP_CELLS)
    widget = page.locator(".nw-heatmap").first
    widget.scroll_into_view_if_needed()
    widget.locator(".nw-heatmap-token").first.wait_for()
    widget.get_by_role("combobox", name="Show").select_option("attribution")
    lab.poll("heatmap.attribution is not None", "True")
    expected = json.loads(lab.eval("print(json.dumps(reference('integrated_gradients')))"))
    limit = max(abs(v) for v in expected)
    legend = widget.locator(".nw-legend")
    wait_for_limit(page, legend, limit)
    first, second = widget.locator(".nw-heatmap-row").nth(0), widget.locator(".nw-heatmap-row").nth(1)
    drawn = token_colours(first)
    assert len(drawn) == len(expected)
    for position, value in enumerate(expected):
        assert close(drawn[position], diverging(value, limit)), (position, value, drawn[position])
    plain = second.locator(".nw-heatmap-token").evaluate_all("spans => spans.every(s => s.style.background === '')")
    assert plain, "only the current row is coloured"
    line = widget.locator(".nw-heatmap-attribution").inner_text()
    assert line.startswith("integrated gradients of unit 7, text 1 · "), line
    page.mouse.move(0, 0)
    lab.screenshot(widget, "attribution/token_heatmap.png")

    # Another method: the kernel recomputes and the row is recoloured.
    widget.get_by_role("combobox", name="Method").select_option("gradient_x_input")
    lab.poll("heatmap.attribution_info.get('method')", "'gradient_x_input'")
    expected = json.loads(lab.eval("print(json.dumps(reference('gradient_x_input')))"))
    limit = max(abs(v) for v in expected)
    wait_for_limit(page, legend, limit)
    drawn = token_colours(first)
    for position, value in enumerate(expected):
        assert close(drawn[position], diverging(value, limit)), (position, value, drawn[position])
