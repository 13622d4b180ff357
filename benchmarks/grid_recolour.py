"""Recolour time of NeuronGrid on a 16,384-unit layer in JupyterLab (budget: < 16 ms).

    .venv/bin/python benchmarks/grid_recolour.py [--repeats 30]

Starts JupyterLab and headless Chromium with the browser-test harness (tests/browser/conftest.py),
opens a notebook with a NeuronGrid on the output of ``Linear(64, 16384)`` for 4 random inputs, with a
scan of 256 random inputs attached (so the grid can also be coloured by mean, max, density, dead),
and times, in the page with performance.now():

- colour-by change: the "Colour by" select is changed in the page; the time from the change event
  to the grid having recoloured (synchronous: the model's change listener recolours and repaints),
  in index order and in value order (which also sorts the 16,384 units);
- example change: the kernel sets ``grid.example``; the grid's own measure of the recolour (reduce
  the new example's row, colour, order and paint), reported by its ``nw-grid-paint`` event.

Prints p50/p95/max for each. Budget (DESIGN.md): < 16 ms for 16,384 units.
"""

from __future__ import annotations

import argparse
import os

import in_lab
from in_lab import percentiles

UNITS = 16384

CELLS = [
    "import torch\n"
    "import neurowidgets as nw\n"
    "torch.manual_seed(0)\n"
    f"model = torch.nn.Sequential(torch.nn.Linear(64, {UNITS}))\n"
    'result = nw.scan(model, torch.randn(256, 64), ["0"], k=4, progress=False, cache=False)\n'
    'grid = nw.NeuronGrid(model, "0", torch.randn(4, 64), scan=result)\n'
    "grid",
]

RECORD_JS = """
root => {
  window.__nwPaints = [];
  if (window.__nwListening) return;
  window.__nwListening = true;
  root.addEventListener('nw-grid-paint', e => window.__nwPaints.push(e.detail.ms));
}
"""

CHANGE_JS = """
([select, values, repeats]) => {
  const times = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    select.value = values[i % values.length];
    select.dispatchEvent(new Event('change'));
    times.push(performance.now() - start);
  }
  return times;
}
"""



def test_grid_recolour(lab, request):
    repeats = request.config.nw_repeats
    page = lab.page
    lab.write_notebook("grid_recolour.ipynb", CELLS)
    lab.open("grid_recolour.ipynb")
    lab.run_all()
    widget = page.locator(".nw-grid").first
    canvas = widget.locator("canvas.nw-grid-canvas")
    canvas.scroll_into_view_if_needed()
    assert canvas.get_attribute("data-units") == str(UNITS)
    colour_by = widget.get_by_role("combobox", name="Colour by")
    order = widget.get_by_role("combobox", name="Order")
    options = ["max", "mean", "scan:density", "scan:mean", "scan:dead", "scan:max"]
    page.evaluate(RECORD_JS, widget.element_handle())

    results = {}
    for mode in ("index", "value"):
        order.select_option(mode)
        lab.poll("grid.order", repr(mode))
        page.evaluate(CHANGE_JS, [colour_by.element_handle(), options, 5])  # warm up
        results[f"colour-by change, {mode} order"] = page.evaluate(
            CHANGE_JS, [colour_by.element_handle(), options, repeats]
        )
    colour_by.select_option("max")
    for mode in ("index", "value"):
        order.select_option(mode)
        lab.poll("grid.order", repr(mode))
        times = []
        for i in range(repeats + 2):
            page.evaluate("window.__nwPaints = []")
            lab.eval(f"grid.example = {(i + 1) % 4}")
            page.wait_for_function("window.__nwPaints.length > 0")
            if i >= 2:  # warm up
                times.append(page.evaluate("window.__nwPaints[0]"))
        results[f"example change, {mode} order (in-widget)"] = times
    lab.screenshot(widget, "neuron_grid/grid_16384.png")

    print()
    print(f"NeuronGrid recolour, {UNITS:,} units (Linear(64, {UNITS}), 4 inputs, scan attached), "
          "JupyterLab + headless Chromium")
    print(f"  {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    for name, times in results.items():
        print(f"  {name:42s} {percentiles(times)}")
    print("  budget: < 16 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed recolours per mode (≥ 20)")
    args = parser.parse_args()

    class Options:
        def pytest_configure(self, config):
            config.nw_repeats = max(20, args.repeats)

    in_lab.run(__file__, Options())


if __name__ == "__main__":
    main()
