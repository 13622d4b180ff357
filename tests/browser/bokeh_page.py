"""Reading and clicking bokeh plots hosted by a BokehHost (.nw-bokeh-host) in the page, through
BokehJS's own views and scales: one place for that geometry, shared by the bokeh browser tests."""

from __future__ import annotations

from conftest import next_paint, wait_until

# Every figure (plot) view inside `host`, in document order, found from BokehJS's root views.
_PLOT_VIEWS = """
const plotViews = (host) => {
    const found = [];
    const walk = (view) => {  // children live in the roots' shadow DOM: only roots are checked
        if (view.frame && view.canvas_view) found.push(view);
        for (const child of view.child_views ?? []) walk(child);
    };
    for (const root of Object.values(window.Bokeh.index)) if (host.contains(root.el)) walk(root);
    return found;
};
"""

_DATA_POINT = """(host, [plot, x, y]) => {PLOT_VIEWS
    const view = plotViews(host)[plot];
    const frame = view.frame;
    const coord = (range, v) => Array.isArray(v) ? range.synthetic(v[0]) + v[1]
        : typeof v === "string" ? range.synthetic(v) : v;
    const box = view.el.getBoundingClientRect();
    return [box.left + frame.x_scale.compute(coord(frame.x_range, x)),
            box.top + frame.y_scale.compute(coord(frame.y_range, y))];
}""".replace("PLOT_VIEWS", _PLOT_VIEWS)

_CANVAS_INK = """(host, plot) => {PLOT_VIEWS
    const canvas = plotViews(host)[plot].canvas_view.primary.canvas;
    const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    const colours = new Set();
    let ink = 0;
    for (let p = 0; p < data.length; p += 4) {
        if (data[p + 3] > 0 && !(data[p] > 245 && data[p + 1] > 245 && data[p + 2] > 245)) ink++;
        colours.add((data[p] << 16) | (data[p + 1] << 8) | data[p + 2]);
    }
    return {width: canvas.width, height: canvas.height, ink, colours: colours.size};
}""".replace("PLOT_VIEWS", _PLOT_VIEWS)

_SOURCE = """(host, name) => {
    for (const root of Object.values(window.Bokeh.index)) {
        if (!host.contains(root.el)) continue;
        const source = root.model.document.get_model_by_name(name);
        if (!source) continue;
        const data = {};
        const entries = source.data instanceof Map ? source.data.entries() : Object.entries(source.data);
        for (const [k, v] of entries) data[k] = Array.from(v);
        return {indices: Array.from(source.selected.indices), data};
    }
    return null;
}"""


def data_point(host, plot: int, x, y) -> tuple[float, float]:
    """Page coordinates of data point (x, y) of plot number ``plot`` inside ``host``; a coordinate may
    be a number, a categorical factor, or ``[factor, offset]`` for a dodged glyph. Read once they are
    the same two frames in a row: a range that follows new data, or a page still laying out, would
    send a click made from the first reading somewhere else."""
    last: list[tuple[float, float] | None] = [None]

    def settled() -> tuple[float, float] | None:
        point = tuple(host.evaluate(_DATA_POINT, [plot, x, y]))
        same, last[0] = point == last[0], point
        if not same:
            next_paint(host.page)
        return point if same else None

    return wait_until(settled, f"plot {plot}'s point ({x}, {y}) in one place two frames in a row")


def canvas_ink(host, plot: int = 0) -> dict:
    """Size, number of non-white pixels and of distinct colours of a plot's canvas."""
    return host.evaluate(_CANVAS_INK, plot)


def source(host, name: str) -> dict | None:
    """``{"indices": [...], "data": {column: [...]}}`` of the named source as BokehJS holds it."""
    return host.evaluate(_SOURCE, name)


def wait_for_source(host, name: str, predicate: str) -> None:
    """Wait until the named source, as BokehJS holds it, satisfies ``predicate`` (a JS function of
    ``{indices, data}``): plots that follow the kernel update after it answers, in the background."""
    check = f"([host, name]) => {{ const s = ({_SOURCE})(host, name); return !!s && ({predicate})(s); }}"
    host.page.wait_for_function(check, arg=[host.element_handle(), name])


def drawn_plots(page, count: int):
    """The page's ``count`` bokeh plots, once all are ready, each checked to be drawn (not blank)."""
    plots = page.locator(".nw-bokeh-plot[data-ready='1']")
    plots.nth(count - 1).wait_for()
    assert plots.count() == count
    for i in range(count):
        plots.nth(i).scroll_into_view_if_needed()
        ink = canvas_ink(plots.nth(i), 0)
        assert ink["ink"] > 2000 and ink["colours"] > 5, f"bokeh plot {i} looks blank: {ink}"
    return plots
