"""One store per explorer (js/lib/store.ts), read by every panel: a unit's value has the same colour in
the grid, the token heatmap and the feature card (read from the pixels), and a kernel error is shown
once, not once per panel."""

from __future__ import annotations

import json
from pathlib import Path

from grid_page import click_unit, pixel
from playwright.sync_api import expect

TESTS = Path(__file__).resolve().parent.parent

CELLS = [
    f"import sys; sys.path.insert(0, {str(TESTS)!r})\n"
    "import json, numpy as np, neurowidgets as nw\n"
    "from language_models import build, tokenizer\n"
    "from pydoc_data.topics import topics\n"
    "tok = tokenizer()\n"
    "model = build('gpt2', tok, size='tiny')\n"
    "texts = [topics[k][:200] for k in sorted(topics)[:16]]",
    "explorer = nw.explore(\n"
    "    model, 'A live input.', data=texts, tokenizer=tok, k=4, panels=['grid', 'heatmap', 'card'])\n"
    "explorer",
]

BACKGROUND = "e => (getComputedStyle(e).backgroundColor.match(/\\d+/g) || []).slice(0, 3).map(Number)"


def test_a_unit_has_one_colour_in_every_panel_and_an_error_shows_once(lab):
    page = lab.page
    lab.run_notebook("shared_colours.ipynb", CELLS)
    explorer = page.locator(".nw-explorer").first
    explorer.scroll_into_view_if_needed()
    grid = explorer.locator("canvas.nw-grid-canvas")
    click_unit(page, grid, 5)
    lab.poll("explorer.selected_units", "[5]")
    card = explorer.locator(".nw-panel-card")
    card.locator(".nw-examples-title", has_text="Unit 5 of").wait_for()

    # Open the unit's top example: the heatmap and the grid now show the very input the card's first row is.
    top = json.loads(lab.eval("print(json.dumps(explorer.card['groups'][0]['examples'][0]))"))
    card.locator(".nw-example").first.click()
    lab.poll("explorer.current_index", str(top["index"]))
    card.locator(".nw-example.nw-current").wait_for()
    firing = top["position"]
    expect(explorer.locator(".nw-heatmap-token")).to_have_count(int(lab.eval("print(len(explorer.tokens[0]))")))
    assert int(lab.eval("print(int(np.argmax(explorer.values[0, :, 5])))")) == firing

    # The grid colours unit 5 by its max over the positions: the value at the firing token.
    in_grid = pixel(grid, 5)
    in_heatmap = explorer.locator(".nw-heatmap-token").nth(firing).evaluate(BACKGROUND)
    in_card = card.locator(".nw-example").first.locator(".nw-firing").evaluate(BACKGROUND)
    assert in_grid == in_heatmap == in_card, (in_grid, in_heatmap, in_card)
    limits = {explorer.locator(".nw-heatmap .nw-legend").get_attribute("data-limit"),
              card.locator(".nw-legend").get_attribute("data-limit")}  # fmt: skip
    assert len(limits) == 1 and abs(float(limits.pop()) - float(lab.eval("print(explorer.colour_limit)"))) < 1e-2
    lab.screenshot(explorer, "shared_colours/unit5.png")

    # A kernel error while editing the text: one error box in the explorer says it, once.
    lab.eval("real_run = explorer.probe.run\ndef boom(*a, **k): raise RuntimeError('boom')\nexplorer.probe.run = boom")
    box = explorer.locator(".nw-heatmap-input").first
    box.fill("Another text.")
    lab.poll("'boom' in explorer.error", "True")
    shown = explorer.locator(".nw-error:visible")
    expect(shown).to_have_count(1)
    expect(shown).to_contain_text("RuntimeError: boom")
    assert explorer.locator(".nw-error").count() == 1, "one error box per explorer, not one per panel"
    lab.screenshot(explorer, "shared_colours/error_once.png")
    lab.eval("explorer.probe.run = real_run")
    box.fill("Another text, again.")
    lab.poll("explorer.texts", "['Another text, again.']")
    expect(shown).to_have_count(0)
