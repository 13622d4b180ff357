"""LayerHealth in JupyterLab, offline: BokehJS from the kernel's bokeh package, a click on a bar."""

from __future__ import annotations

from urllib.parse import urlparse

CELLS = [
    "import neurowidgets as nw\n"
    "from neurowidgets.datasets import digits\n"
    "from neurowidgets.widgets.layer_health import LayerHealth\n"
    "data, hot = digits(), digits(lr=0.05)\n"
    'layers = ["relu1", "relu2", "relu3"]\n'
    "healthy_scan = nw.scan(data.model, data.test_images, layers, k=4, progress=False, cache=False)\n"
    "hot_scan = nw.scan(hot.model, data.test_images, layers, k=4, progress=False, cache=False)\n"
    'healthy = LayerHealth(healthy_scan, title="healthy")\n'
    "healthy",
    'health = LayerHealth(hot_scan, title="lr=0.05")\nhealth',
]

# The centre of a layer's "dead units" bar (dodge -0.27) in page coordinates, from BokehJS's own
# scales: the figure view inside `host` (a .nw-bokeh-host element).
BAR_POINT = """(host, layer) => {
    const views = Object.values(window.Bokeh.index).filter(v => host.contains(v.el));
    const view = views[0];
    const frame = view.frame;
    const source = view.model.renderers[0].data_source;
    const i = source.data.layer.indexOf(layer);
    const x = frame.x_scale.compute(source.data.dead[i] / 2);
    const y = frame.y_scale.compute(frame.y_range.synthetic(layer) - 0.27);
    const box = view.el.getBoundingClientRect();
    return [box.left + x, box.top + y];
}"""

CANVAS_INK = """(host) => {
    const view = Object.values(window.Bokeh.index).find(v => host.contains(v.el));
    const canvas = view.canvas_view.primary.canvas;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    let ink = 0;
    for (let p = 0; p < data.length; p += 4) {
        if (data[p + 3] > 0 && !(data[p] > 245 && data[p + 1] > 245 && data[p + 2] > 245)) ink++;
        colours.add((data[p] << 16) | (data[p + 1] << 8) | data[p + 2]);
    }
    return {width: canvas.width, height: canvas.height, ink, colours: colours.size};
}"""


def test_layer_health_renders_offline_and_click_selects_dead_units(lab):
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
    lab.write_notebook("layer_health.ipynb", CELLS)
    lab.open("layer_health.ipynb")
    lab.run_all()

    hosts = page.locator(".nw-bokeh-host")
    hosts.nth(1).locator(".nw-bokeh-plot[data-ready='1']").wait_for()
    assert hosts.count() == 2
    assert page.evaluate("window.Bokeh.version") == lab.eval("import bokeh; print(bokeh.__version__)").strip()
    assert page.locator("script[data-neurowidgets-bokeh]").count() == 1  # injected once per page
    host = hosts.nth(1)
    host.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    ink = host.evaluate(CANVAS_INK)
    assert ink["width"] > 300 and ink["height"] > 150, ink
    assert ink["ink"] > 2000 and ink["colours"] > 5, f"the bokeh canvas looks blank: {ink}"

    x, y = host.evaluate(BAR_POINT, "relu2")
    page.mouse.click(x, y)
    lab.poll("health.selected_layer", "'relu2'")
    lab.poll("health.selected_units == hot_scan['relu2'].dead().tolist() != []", "True")
    page.mouse.move(5, 5)  # no hover tooltip over the screenshot
    page.wait_for_timeout(200)
    lab.screenshot(host, "layer_health/relu2_selected.png")
    lab.poll("healthy.selected_layer", "''")  # the other plot is untouched
    assert not [u for u in blocked if "bokeh" in u], blocked
    errors = [m for m in page.console_log if "[pageerror]" in m]
    assert not errors, errors
