"""The explorer's panels fold: compact=True starts with the trace and the card folded (short output
areas such as marimo's); unfolding one in the page tells the kernel and draws the view inside. The
card of an image unit shows what the unit responds to most (an input optimised in the background)."""

from __future__ import annotations

from playwright.sync_api import expect

CELLS = [
    "import neurowidgets as nw\nfrom neurowidgets.datasets import digits\ndata = digits()",
    "explorer = nw.explore(data.model, data.test_images[:4], data=data.test_images[:200], layer='relu2', "
    "compact=True)\nexplorer",
]


def test_compact_explorer_folds_and_unfolds(lab):
    page = lab.page
    lab.run_notebook("explorer_layout.ipynb", CELLS)
    explorer = page.locator(".nw-explorer").first
    explorer.scroll_into_view_if_needed()
    trace, card = explorer.locator("details.nw-panel-trace"), explorer.locator("details.nw-panel-card")
    expect(trace).not_to_have_attribute("open", "")
    expect(card).not_to_have_attribute("open", "")
    expect(explorer.locator("details.nw-panel-grid")).to_have_attribute("open", "")
    folded = explorer.bounding_box()["height"]
    lab.screenshot(explorer, "explorer_layout/compact.png")

    trace.locator("summary").click()
    lab.poll("explorer.collapsed", "['card']")
    expect(trace).to_have_attribute("open", "")
    expect(trace.locator("svg, canvas").first).to_be_visible()
    assert explorer.bounding_box()["height"] > folded + 100, "the unfolded trace takes room"

    lab.eval("explorer.collapsed = ['trace', 'card', 'overlay']")  # from Python: the page follows
    expect(explorer.locator("details.nw-panel-overlay")).not_to_have_attribute("open", "")
    expect(trace).not_to_have_attribute("open", "")
    lab.screenshot(explorer, "explorer_layout/folded_from_python.png")

    # The card, unfolded: the unit's optimised input arrives from the background and is drawn.
    card.locator("summary").click()
    lab.poll("explorer.collapsed", "['trace', 'overlay']")
    optimised = card.locator(".nw-optimised")
    expect(optimised.nth(1).locator("canvas")).to_be_visible(timeout=60_000)
    high = float(lab.eval("print(explorer.card['visualization']['values'][0])"))
    top = float(lab.eval("print(explorer.card['groups'][0]['examples'][0]['value'])"))
    assert high > top, "the optimised input drives the unit harder than its top scanned example"
    assert optimised.first.locator(".nw-optimised-caption").inner_text().startswith("most: ")
    lab.screenshot(card, "explorer_layout/card_optimised.png")
