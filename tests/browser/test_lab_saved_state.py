"""A saved notebook shows its widgets' last state without a kernel (DESIGN: "Share and teach").

JupyterLab writes widget state into the notebook's metadata on save only with the widget manager's
`saveState` setting on: these tests use the `lab_saving_widgets` fixture, which turns it on."""

from __future__ import annotations

import json

from bokeh_page import drawn_plots, source, wait_for_source
from conftest import KERNEL_READY_TIMEOUT, wait_until
from grid_page import check_explorer_selection, click_unit, pixel

SAVED = "quickstart_saved.ipynb"


def check_drawn(page, *, grid_unit: int, explorer_unit: int) -> None:
    """The quickstart's NeuronGrid and explorer are drawn as they were saved."""
    grid = page.locator(".nw-grid:not(.nw-explorer .nw-grid)").first
    canvas = grid.locator("canvas.nw-grid-canvas")
    canvas.wait_for(state="visible")
    canvas.scroll_into_view_if_needed()
    page.wait_for_function("c => c.dataset.units === '16'", arg=canvas.element_handle())
    colours = {tuple(pixel(canvas, u)) for u in range(16)}
    assert len(colours) > 4, f"the grid looks blank: {colours}"
    assert pixel(canvas, grid_unit, dx=0.04) == [0, 0, 0], "the selected unit is outlined"
    assert pixel(canvas, (grid_unit + 1) % 16, dx=0.04) != [0, 0, 0]

    check_explorer_selection(page, explorer_unit, "relu2")

    # The bokeh views (Distributions, Interventions): BokehJS comes from the saved state of the one
    # hidden widget that carries it, the figures from theirs, with the changes made in the kernel.
    plots = drawn_plots(page, 2)
    bins = source(plots.nth(0), "nw-dist-bins")["data"]
    assert set(bins["unit"]) == {explorer_unit}, "the histogram of the explorer's selected unit"


def test_saved_notebook_restores_widgets_without_kernel(lab_saving_widgets):
    lab = lab_saving_widgets
    page, server = lab.page, lab.server
    (server.root / SAVED).write_text((server.root / "quickstart.ipynb").read_text())
    lab.open(SAVED)
    lab.run_all()

    grid = page.locator(".nw-grid").first.locator("canvas.nw-grid-canvas")
    click_unit(page, grid, 5)
    lab.poll("grid.selected_units", "[5]")
    explorer = page.locator(".nw-explorer").first
    click_unit(page, explorer.locator("canvas.nw-grid-canvas"), 9)
    lab.poll("explorer.selected_units", "[9]")
    explorer.locator(".nw-examples-title", has_text="Unit 9 of relu2").wait_for()
    # The companions follow the explorer in the background: save once their plots are drawn and the
    # histogram shows unit 9, or the saved state holds what they showed before.
    page.locator(".nw-bokeh-plot[data-ready='1']").nth(1).wait_for()
    wait_for_source(
        page.locator(".nw-bokeh-plot").nth(0),
        "nw-dist-bins",
        "s => s.data.unit.length > 0 && s.data.unit.every(u => u === 9)",
    )

    # Save from the File menu; the widget state lands in the notebook's metadata.
    before = (server.root / SAVED).stat().st_mtime_ns
    page.locator(".lm-MenuBar-item", has_text="File").click()
    page.locator('li[data-command="docmanager:save"]').click()
    page.wait_for_function(
        "() => !document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"
        "?.title?.className?.includes('jp-mod-dirty')"
    )
    path = server.root / SAVED

    def saved_notebook():  # the server may still be writing the file
        if path.stat().st_mtime_ns == before:
            return None
        raw = path.read_bytes()
        try:
            return raw, json.loads(raw)
        except ValueError:
            return None

    raw, notebook = wait_until(saved_notebook, "the saved notebook written")
    state = notebook["metadata"].get("widgets", {}).get("application/vnd.jupyter.widget-state+json")
    assert state, "saveState on, but no widget state in the saved notebook"
    models = state["state"]
    anywidgets = {k: m for k, m in models.items() if m["model_name"] == "AnyModel"}
    assert len(anywidgets) >= 2, sorted(m["model_name"] for m in models.values())
    sizes = {k: len(json.dumps(m)) for k, m in models.items()}
    print(
        f"saved notebook: {len(raw)} bytes; widget state {len(json.dumps(state))} bytes; "
        f"largest models {sorted(sizes.values())[-5:]}"
    )
    assert len(raw) < 5_000_000, f"the saved notebook is {len(raw)} bytes"

    # Close the page (no autosave after this), shut the kernel down, open the saved notebook in a
    # new page. Lab starts a fresh kernel for it, which holds no widgets: what is drawn comes from
    # the notebook's saved state alone. Then shut that kernel down too: the views stay drawn.
    # (Choosing "No Kernel" is not automated: Lab 4.6 starts python3 from language_info even
    # without a kernelspec.)
    context = page.context
    page.close(run_before_unload=False)
    server.shutdown_sessions()
    lab._clients.clear()
    # The fresh kernel is started before the page opens the notebook. Opened with a kernel still to
    # start, the page's widget manager may finish a restore begun by the kernel's "connected" status
    # (kernel only) before its first restore has read the notebook's saved state; the views then
    # give up with "model not found" (seen under load, @jupyter-widgets/jupyterlab-manager 5).
    session = {"path": SAVED, "name": SAVED, "type": "notebook", "kernel": {"name": "python3"}}
    server.api("POST", "/api/sessions", session, timeout=KERNEL_READY_TIMEOUT)  # answers once the kernel runs
    page = lab.page = context.new_page()
    page.goto(f"{server.url}/lab/tree/{SAVED}?reset")
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible")
    check_drawn(page, grid_unit=5, explorer_unit=9)
    assert lab.eval("import sys; print('neurowidgets' in sys.modules)") == "False", "a fresh kernel"
    lab._clients.clear()
    server.shutdown_sessions()
    assert server.sessions() == []
    check_drawn(page, grid_unit=5, explorer_unit=9)
    lab.screenshot(page.locator(".nw-explorer").first, "saved_state/explorer_restored.png")
    lab.screenshot(page.locator(".nw-grid").first, "saved_state/grid_restored.png")
    lab.screenshot(page.locator(".nw-bokeh-plot").first, "saved_state/distributions_restored.png")
