"""The explorer on a GPT-2-shaped language model in JupyterLab: it opens on a middle block's MLP
neurons, its layer picker groups the layers by kind, choosing another layer there redraws every view,
and a unit's feature card comes from the scan with no model call."""

from __future__ import annotations

from pathlib import Path

from grid_page import click_unit

TESTS = Path(__file__).resolve().parent.parent

CELLS = [
    f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
    "import torch, neurowidgets as nw\n"
    "from language_models import build, tokenizer\n"
    "from pydoc_data.topics import topics\n"
    "tok = tokenizer()\n"
    "model = build('gpt2', tok, size='tiny')\n"
    "texts = [topics[k][:300] for k in sorted(topics)[:24]]\n"
    "calls = []\n"
    "model.register_forward_pre_hook(lambda *a: calls.append(1))",
    "explorer = nw.explore(model, ['The cat sat on the mat.', 'Dogs <b>bark</b> at night.'], data=texts, "
    "tokenizer=tok, k=8)\nexplorer",
]


def test_language_model_picker_groups_and_card_from_the_scan(lab):
    page = lab.page
    lab.run_notebook("language_model.ipynb", CELLS)
    explorer = page.locator(".nw-explorer").first
    explorer.scroll_into_view_if_needed()
    assert lab.eval("print(explorer.layer)") == "transformer.h.1.mlp.act"

    grid_panel = explorer.locator(".nw-panel-grid")
    picker = grid_panel.get_by_role("combobox", name="Layer")
    groups = picker.locator("optgroup")
    labels = [groups.nth(i).get_attribute("label") for i in range(groups.count())]
    assert labels[:3] == ["MLP neurons", "attention output", "residual stream"]
    mlp = picker.locator('optgroup[label="MLP neurons"] option')
    names = [mlp.nth(i).inner_text() for i in range(mlp.count())]
    assert names == ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]

    # A unit's card: drawn from the activations the scan kept, the model is not called.
    lab.eval("calls.clear()")
    click_unit(page, grid_panel.locator("canvas.nw-grid-canvas"), 5)
    lab.poll("explorer.selected_units", "[5]")
    explorer.locator(".nw-examples-title", has_text="Unit 5 of transformer.h.1.mlp.act").wait_for()
    explorer.locator(".nw-example").first.wait_for()
    assert lab.eval("print(len(calls))") == "0"
    # Its top logits: the tokens its output raises most, as text, in the kernel's order.
    raised = explorer.locator(".nw-logits-raises .nw-token")
    raised.first.wait_for()
    expected = lab.eval("print('\\n'.join(t for t, _ in explorer.card['logits']['raised']))").splitlines()
    assert [raised.nth(i).inner_text() for i in range(raised.count())] == expected
    explorer.locator(".nw-panel-card").scroll_into_view_if_needed()
    lab.screenshot(explorer.locator(".nw-panel-card"), "language_model/unit5_card.png")
    lab.screenshot(explorer, "language_model/unit5.png")

    # Another layer from the picker's "attention output" group: the kernel and every view follow.
    picker.select_option("transformer.h.0.attn")
    lab.poll("explorer.layer", "'transformer.h.0.attn'")
    lab.poll("explorer.values.shape[2]", "64")
    assert picker.input_value() == "transformer.h.0.attn"
    explorer.locator(".nw-panel-card", has_text="was not scanned").wait_for()
    lab.screenshot(explorer, "language_model/attention_layer.png")
