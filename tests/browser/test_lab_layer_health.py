"""LayerHealth in JupyterLab, offline: BokehJS from the kernel's bokeh package; a click on a layer's
dead bar opens that layer in the explorer's grid with its dead units selected (kernel and page), and a
layer chosen in the grid is highlighted in the plot."""

from __future__ import annotations

from urllib.parse import urlparse

from bokeh_page import canvas_ink, data_point, source, wait_for_source
from conftest import unhover, wait_until_still

CELLS = [
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "from neurowidgets.widgets.layer_health import LayerHealth, DEAD\n"
    "data, hot = digits(), digits(lr=0.05)\n"
    'layers = ["relu1", "relu2", "relu3"]\n'
    "healthy_scan = nw.scan(data.model, data.test_images, layers, k=4, progress=False, cache=False)\n"
    "hot_scan = nw.scan(hot.model, data.test_images, layers, k=4, progress=False, cache=False)\n"
    'healthy = LayerHealth(healthy_scan, title="healthy")\n'
    "healthy",
    'explorer = nw.explore(hot.model, data.test_images[:4], layer="relu1", scan=hot_scan)\n'
    'health = LayerHealth(hot_scan, title="lr=0.05", follow=explorer)\n'
    "health",
    "explorer",
]


def test_layer_health_renders_offline_and_opens_a_layer_in_the_explorer(lab):
    page = lab.page
    blocked: list[str] = []

    def only_local(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    lab.run_notebook("layer_health.ipynb", CELLS)

    hosts = page.locator(".nw-bokeh-host")
    hosts.nth(1).locator(".nw-bokeh-plot[data-ready='1']").wait_for()
    assert hosts.count() == 2
    assert page.evaluate("window.Bokeh.version") == lab.eval("import bokeh; print(bokeh.__version__)").strip()
    assert page.locator("script[data-neurowidgets-bokeh]").count() == 1  # injected once per page
    host = hosts.nth(1)
    host.scroll_into_view_if_needed()
    wait_until_still(host)  # data_point's page coordinates below hold once the scroll has settled
    for plot in (0, 1):
        ink = canvas_ink(host, plot)
        assert ink["width"] > 250 and ink["height"] > 150, ink
        assert ink["ink"] > 2000 and ink["colours"] > 5, f"plot {plot}'s canvas looks blank: {ink}"
    assert source(host, "nw-health-dead")["indices"] == [0]  # the explorer's layer, relu1

    grid = page.locator(".nw-explorer canvas.nw-grid-canvas")
    dead_fraction = float(lab.eval("print(health.table['dead'][1])"))
    x, y = data_point(host, 0, dead_fraction / 2, ["relu2", -0.17])
    page.mouse.click(x, y)
    lab.poll("explorer.layer", "'relu2'")
    lab.poll("explorer.selected_units == hot_scan['relu2'].dead().tolist() != []", "True")
    grid.and_(page.locator("[aria-label='16 units of layer relu2']")).wait_for()
    assert page.locator(".nw-explorer select.nw-select").first.input_value() == "relu2"
    unhover(page)
    lab.screenshot(host, "layer_health/relu2_selected.png")
    lab.screenshot(page.locator(".nw-explorer"), "layer_health/explorer_relu2_dead_units.png")

    mark = "h => { h.querySelector('.nw-bokeh-plot').firstElementChild.dataset.mark = 'first embed'; }"
    host.evaluate(mark)  # a re-embedded plot would lose this mark: selections must update in place
    page.locator(".nw-explorer select.nw-select").first.select_option("relu3")  # the grid's Layer control
    lab.poll("health.layer", "'relu3'")
    wait_for_source(host, "nw-health-dead", "s => s.indices.length === 1 && s.indices[0] === 2")  # via the kernel
    assert source(host, "nw-health-density")["indices"] == [2]
    assert host.locator(".nw-bokeh-plot > [data-mark='first embed']").count() == 1
    lab.poll("healthy.layer", "''")  # the other plot is untouched
    assert not [u for u in blocked if "bokeh" in u], blocked
    errors = [m for m in page.console_log if "[pageerror]" in m]
    assert not errors, errors
