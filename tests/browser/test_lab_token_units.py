"""The text explorer's 'Top units at the selected token' panel in JupyterLab: clicking a token in the
heatmap lists the kernel's units, values and top-example snippets (as text); clicking a row selects the
unit (kernel and card follow); its header orders the grid by the token."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.sync_api import expect

TESTS = Path(__file__).resolve().parent.parent

CELLS = [
    f"import sys, json; sys.path.insert(0, {str(TESTS)!r})\n"
    "import neurowidgets as nw\n"
    "from language_models import build, tokenizer\n"
    "from pydoc_data.topics import topics\n"
    "tok = tokenizer()\n"
    "model = build('gpt2', tok, size='tiny')\n"
    "texts = [topics[k][:300] for k in sorted(topics)[:24]]",
    "explorer = nw.explore(model, ['The cat sat on the mat.', 'Dogs <b>bark</b> at night.'], data=texts, "
    "tokenizer=tok, k=8)\nexplorer",
]


def test_clicking_a_token_lists_its_units_and_a_row_selects_one(lab):
    page = lab.page
    lab.run_notebook("token_units.ipynb", CELLS)
    explorer = page.locator(".nw-explorer").first
    explorer.scroll_into_view_if_needed()
    panel = explorer.locator(".nw-panel-token_units")
    expect(panel).to_contain_text("Click a token in the text")

    # A token of the second text (its "<", shown as text): the kernel's position, then its list.
    explorer.locator('.nw-heatmap-token[data-row="1"][data-position="2"]').click()
    lab.poll("(explorer.example, explorer.position)", "(1, 2)")
    lab.poll("explorer.token_units.get('position')", "2")
    found = json.loads(lab.eval("print(json.dumps(explorer.token_units))"))
    rows = panel.locator(".nw-token-unit")
    expect(rows).to_have_count(len(found["units"]))
    expect(panel.locator(".nw-token-units-title")).to_contain_text(f"At “{found['token']}” (text 2, position 2)")
    assert [int(rows.nth(i).get_attribute("data-unit")) for i in range(rows.count())] == found["units"]
    shown = [float(rows.nth(i).locator(".nw-token-unit-value").inner_text()) for i in range(rows.count())]
    assert all(abs(a - b) <= 1e-3 * max(1.0, abs(b)) for a, b in zip(shown, found["values"], strict=True))
    for i, row in enumerate(found["rows"]):
        line = rows.nth(i)
        assert line.locator(".nw-token-unit-snippet").text_content() == " ".join(row["tokens"])
        assert line.locator("mark.nw-token-unit-focus").text_content() == row["tokens"][row["focus"]]
        assert line.locator(".nw-token-unit-logit .nw-token").text_content() == row["top_logit"][0]
    assert panel.locator(".nw-token-unit-snippet b").count() == 0, "tokens are text, never markup"
    lab.screenshot(explorer, "token_units/token_clicked.png")

    # A row selects its unit: the kernel, then the card.
    unit = found["units"][2]
    rows.nth(2).locator("button").click()
    lab.poll("explorer.selected_units", f"[{unit}]")
    expect(rows.nth(2).locator("button")).to_have_attribute("aria-pressed", "true")
    explorer.locator(".nw-examples-title", has_text=f"Unit {unit} of {found['layer']}").wait_for()

    # The grid orders by this token on request (its Order "value" reads the selected position).
    panel.get_by_role("button", name="Order the grid by this token").click()
    lab.poll("explorer.order", "'value'")
    expect(explorer.locator("canvas.nw-grid-canvas")).to_have_attribute("data-order", "value")
    expect(panel.locator(".nw-token-units-ordered")).to_be_visible()
    lab.screenshot(panel, "token_units/panel.png")
    lab.screenshot(explorer, "token_units/row_selected.png")
