"""Distributions: the scanned activation histograms of the selected units, with the current input and
the top examples marked on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets
from bokeh.models import ColumnDataSource, HoverTool, NumeralTickFormatter, Range1d, TapTool, Title
from bokeh.plotting import figure

from ..core.scan import ScanResult, check_scan
from .bokeh_host import padded_extent
from .companion import Companion
from .layer_view import LayerView

BINS, CURRENT, TOP = "nw-dist-bins", "nw-dist-current", "nw-dist-top"
COLUMNS = {
    BINS: ("left", "right", "top", "colour", "label", "unit", "count"),
    CURRENT: ("x", "colour", "unit"),
    TOP: ("x", "y", "colour", "unit", "example", "position", "rank"),
}
# The colours of the explorer's traces (js/activation_trace.ts SERIES_COLOURS), by place in the
# selection: a unit has the same colour here as in the traces.
SERIES_COLOURS = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f", "#ff9da7", "#b6992d", "#79706e",
)  # fmt: skip
# The y axis is a log scale of counts: a ReLU unit's zero bin holds most of its values and its tail a
# handful, so on a linear axis the tail (what the unit responds to) would vanish. Bars start at 0.5 so
# that a bin of one value still shows; below them each unit's top examples have a row of their own.
BAR_BOTTOM, TOP_ROW, ROW_STEP = 0.5, 0.38, 0.8
CAPTION = (
    "tap a unit's bars to make it the first selected unit · ▲ its top examples (tap one to open it) · "
    "dashed: the explorer's current input"
)


def top_row(i: int) -> float:
    """The y of the i-th shown unit's top examples (rows evenly spaced on the log axis)."""
    return TOP_ROW * ROW_STEP**i


def y_start(units: int) -> float:
    """The bottom of the y range: just below the last row of top examples."""
    return top_row(max(units, 1) - 1) * 0.8


def finite_edges(edges: np.ndarray, low: float, high: float) -> np.ndarray:
    """``edges`` with an infinite first / last edge replaced by the unit's smallest / largest value
    (the outer bins hold values beyond ±2**20: their finite extent is the data's)."""
    edges = np.array(edges, dtype=np.float64)
    if edges.size:
        edges[0] = low if np.isinf(edges[0]) else edges[0]
        edges[-1] = high if np.isinf(edges[-1]) else edges[-1]
    return edges


def histogram_sources(prefix: str = "") -> dict[str, ColumnDataSource]:
    """The plot's empty sources by role (``BINS``, ``CURRENT``, ``TOP``), named ``prefix + role``."""
    return {role: ColumnDataSource({c: [] for c in names}, name=prefix + role) for role, names in COLUMNS.items()}


def histogram_columns(stats: Any, units: Sequence[int], k: int | None = None) -> tuple[dict, dict, list[str]]:
    """The columns of the ``BINS`` and ``TOP`` sources for ``units`` of one layer's statistics ``stats`` (the
    non-empty bins of each histogram, its infinite outer edges clipped; the first ``k`` top examples),
    and notes on units that had no finite value."""
    bins: dict[str, list] = {c: [] for c in COLUMNS[BINS]}
    top: dict[str, list] = {c: [] for c in COLUMNS[TOP]}
    notes = []
    for i, unit in enumerate(units):
        colour = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        counts, edges = stats.histogram(unit)
        edges = finite_edges(edges, float(stats.min[unit]), float(stats.max[unit]))
        label = f"unit {unit} · fires {stats.density[unit]:.1%}" + _bad_values(stats, unit)
        if not counts.size or not counts.any():
            notes.append(f"unit {unit} has no finite values{_bad_values(stats, unit)}")
        drawn = counts > 0  # empty bins draw nothing (and have no log)
        for name, column in (
            ("left", edges[:-1][drawn]), ("right", edges[1:][drawn]), ("top", counts[drawn]), ("count", counts[drawn]),
        ):  # fmt: skip
            bins[name].extend(column.tolist())
        bins["colour"] += [colour] * int(drawn.sum())
        bins["label"] += [label] * int(drawn.sum())
        bins["unit"] += [unit] * int(drawn.sum())
        for rank, (value, example, position) in enumerate(stats.top_k(unit)[:k], 1):
            for name, entry in zip(top, (value, top_row(i), colour, unit, example, position, rank), strict=True):
                top[name].append(entry)
    return _columns(bins), _columns(top), notes


def histogram_figure(sources: dict[str, ColumnDataSource], caption: str = CAPTION, width: int = 640, height: int = 340):
    """The overlaid histograms over :func:`histogram_sources`: (figure, the renderer of the dashed
    current-input lines). Used by :class:`Distributions` and by reports."""
    fig = figure(
        title=" ", width=width, height=height, y_axis_type="log", tools="", toolbar_location=None,
        x_range=Range1d(0, 1), y_range=Range1d(y_start(1), 10), x_axis_label="activation",
        y_axis_label="values in the scan (log)",
    )  # fmt: skip
    bars = fig.quad(
        left="left", right="right", top="top", bottom=BAR_BOTTOM, source=sources[BINS],
        fill_color="colour", fill_alpha=0.3, line_color="colour", line_width=1.5, legend_field="label",
    )  # fmt: skip
    # A segment across the whole plot: y0 and y1 follow the y range (see fit_ranges).
    current = fig.segment(
        x0="x", y0=y_start(1), x1="x", y1=10, source=sources[CURRENT], color="colour",
        line_width=2.5, line_dash="dashed",
    )  # fmt: skip
    top = fig.scatter(
        "x", "y", source=sources[TOP], marker="triangle", size=11, fill_color="colour",
        line_color="black", line_width=0.5, nonselection_alpha=0.5, selection_line_width=2,
    )  # fmt: skip
    fig.add_tools(
        HoverTool(
            renderers=[bars],
            tooltips=[
                ("unit", "@unit"),
                ("bin", "@left{0.000} … @right{0.000}"),
                ("values", "@count"),
            ],
        ),
        HoverTool(
            renderers=[top],
            tooltips=[
                ("top example", "#@rank: example @example, unit @unit"),
                ("value", "@x{0.000}"),
            ],
        ),
        TapTool(renderers=[bars, top]),
    )
    # The legend outside the plot: overlaid histograms leave no free corner.
    legend = fig.legend[0]
    fig.center.remove(legend)
    legend.update(location="top_left", label_text_font_size="9pt")
    fig.add_layout(legend, "right")
    fig.add_layout(Title(text=caption, text_font_size="8pt", text_font_style="italic", text_color="#616161"), "below")
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0")  # 1, 10, 100 rather than 10⁰, 10¹, 10²
    return fig, current


def fit_ranges(apply: Any, fig: Any, current: Any, sources: dict[str, ColumnDataSource], units: int) -> None:
    """Fit the axes to the drawn bars, top examples and current values, through ``apply(model, **props)``
    (a widget's in-place ``update``, or setting the properties directly)."""
    bins, top, now = (sources[role].data for role in (BINS, TOP, CURRENT))
    low, high = y_start(units), max(np.asarray(bins["top"]).tolist(), default=1) * 4
    apply(fig.y_range, start=low, end=high)
    apply(current.glyph, y0=low, y1=high)
    start, end = padded_extent(np.concatenate([np.asarray(c, dtype=np.float64).ravel() for c in (
        bins["left"], bins["right"], top["x"], now["x"])]), margin=0.04)  # fmt: skip
    apply(fig.x_range, start=start, end=end)


class Distributions(Companion):
    """For each selected unit (up to ``max_units``, overlaid), its activation histogram over the
    scanned data, its firing density in the legend, its top examples as triangles along the bottom
    and, with ``follow=`` an explorer, the current input's value as a dashed line: the maximum over
    positions of the explorer's current example, or the value at its selected position.

    The units and the layer are the explorer's (linked both ways; ``layer`` and ``units`` given here
    are set on it); without ``follow``, set ``selected_units`` and ``layer`` here. Tapping a top
    example opens it in the explorer (one given data).
    """

    def __init__(
        self,
        scan: ScanResult,
        layer: str | None = None,
        units: Sequence[int] = (),
        follow: LayerView | None = None,
        max_units: int = 8,
        **kwargs: Any,
    ):
        check_scan(scan)
        if not isinstance(max_units, int) or max_units < 1:
            raise ValueError(f"max_units must be a positive int, got {max_units!r}")
        units = [int(u) for u in units]
        if follow is None:
            layer = scan.layers[0] if layer is None else layer
            num_units = scan[layer].num_units  # a LayerError naming the scanned layers
            bad = [u for u in units if not 0 <= u < num_units]
            if bad:
                raise ValueError(f"unit {bad[0]} does not exist: layer {layer!r} has units 0…{num_units - 1}")
        self.scan = scan
        self.max_units = max_units
        self._ready = False  # drawn once at the end of __init__, not for each trait set before
        self.sources = histogram_sources()
        figure, self._current = histogram_figure(self.sources)
        # A tap sends the unit of the bar, the example of the triangle: what was chosen, whatever the
        # rows mean by the time the kernel reads it (a bar tap reorders them).
        super().__init__(figure, selectable={BINS: "unit", TOP: "example"}, **kwargs)
        with self.hold_sync():
            if follow is not None:
                self.follow(follow)  # the explorer's layer and units, unless given here: then set there too
            if layer is not None:
                self.layer = layer
            if units or follow is None:
                self.selected_units = units
        self._ready = True
        self._draw()

    # -- drawing -------------------------------------------------------------------------------

    def _shown_units(self) -> list[int]:
        if self.layer not in self.scan:
            return []
        units = self.scan[self.layer].num_units
        return [u for u in self.selected_units if 0 <= u < units][: self.max_units]

    def _draw(self) -> None:
        """Everything from the scan for the shown units, then the current input."""
        units = self._shown_units()
        bins, top, notes = histogram_columns(self.scan[self.layer] if units else None, units)
        with self.hold_sync():
            self.select(TOP, [])  # the old indices would point at other markers
            self.update(self.sources[BINS], data=bins)
            self.update(self.sources[TOP], data=top)
            self.update(self.figure.title, text=self._title(units, notes))
            self._draw_current()

    def _title(self, units: list[int], notes: list[str]) -> str:
        if self.layer not in self.scan:
            return f"layer {self.layer!r} was not scanned; this scan has {self.scan.layers}"
        if not units:
            return f"{self.layer}: select units to see their activation histograms"
        selected = len(self.selected_units)
        shown = f" (the first {len(units)} of {selected} selected)" if selected > len(units) else ""
        title = f"{self.layer}: activations over {self.scan.num_examples} scanned examples{shown}"
        return " · ".join([title, *notes])

    def current_values(self) -> dict[int, float]:
        """The followed view's current value of each shown unit: at its selected position, else the
        maximum over the current example's (valid) positions. Empty without a view of this layer."""
        view = self.view
        units = self._shown_units()
        if view is None or view.values is None or view.layer != self.layer or not units:
            return {}
        values = view.values[view.example]
        if values.shape[1] != self.scan[self.layer].num_units:
            return {}
        if view.position >= 0:
            row = values[view.position]
        else:
            lengths = view.lengths
            row = values[: lengths[view.example] if lengths else None].max(axis=0)
        return {u: float(row[u]) for u in units}

    def _draw_current(self) -> None:
        current = self.current_values()
        units = self._shown_units()
        colours = [SERIES_COLOURS[units.index(u) % len(SERIES_COLOURS)] for u in current]
        data = {"x": np.array(list(current.values())), "colour": colours, "unit": np.array(list(current), dtype=int)}
        with self.hold_sync():
            self.update(self.sources[CURRENT], data=data)
            fit_ranges(self.update, self.figure, self._current, self.sources, len(units))

    def _input_changed(self) -> None:
        self._draw_current()

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        layer = proposal["value"]
        if layer not in self.scan and self.view is None:
            raise traitlets.TraitError(f"layer {layer!r} was not scanned; this scan has {self.scan.layers}")
        return layer

    @traitlets.validate("selected_units")
    def _valid_units(self, proposal: dict) -> list[int]:
        units = list(dict.fromkeys(proposal["value"]))
        if self.view is None and self.layer in self.scan:  # a followed view has checked them
            num_units = self.scan[self.layer].num_units
            bad = [u for u in units if not 0 <= u < num_units]
            if bad:
                raise traitlets.TraitError(
                    f"unit {bad[0]} does not exist: layer {self.layer!r} has units 0…{num_units - 1}"
                )
        return units

    @traitlets.observe("layer", "selected_units")
    def _units_changed(self, change: dict) -> None:
        if self._ready:
            with self.reporting_errors("drawing the distributions"):
                self._draw()

    def _on_tap(self, chosen: dict[str, list]) -> None:
        bars, tops = chosen.get(BINS) or [], chosen.get(TOP) or []
        if bars:  # the unit becomes the first selected (its place in the selection shows the choice)
            unit = self._tapped(bars[0], "unit")
            if unit not in self._shown_units():
                raise ValueError(f"unit {unit} is not shown here; shown: {self._shown_units()}")
            self.selected_units = [unit, *(u for u in self.selected_units if u != unit)]
        elif tops and self.view is not None and getattr(self.view, "examples", None) is not None:
            example = self._tapped(tops[0], "example")
            if example not in self.sources[TOP].data["example"]:
                raise ValueError(f"example {example} is not a top example shown here")
            self.view.show_example(example)
            # Its triangles stay marked (one per shown unit it is a top example of).
            self.select(TOP, np.flatnonzero(np.asarray(self.sources[TOP].data["example"]) == example).tolist())

    @staticmethod
    def _tapped(value: Any, what: str) -> int:
        """A unit id or an example index from a tap (a number; float-typed columns send 5.0)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
            raise TypeError(f"a tap on a {what} carries its index, got {value!r}")
        return int(value)


def _bad_values(stats: Any, unit: int) -> str:
    """Like " · 3 NaN, 1 inf" for a unit that had non-finite values in the scan, else ""."""
    counts = [(int(stats.nan_count[unit]), "NaN"), (int(stats.inf_count[unit]), "inf")]
    text = ", ".join(f"{n} {what}" for n, what in counts if n)
    return f" · {text}" if text else ""


def _columns(table: dict[str, list]) -> dict[str, Any]:
    """Numeric columns as numpy arrays (binary on the wire: int32 or float32), strings as lists."""
    return {
        name: values if values and isinstance(values[0], str) else np.asarray(values) for name, values in table.items()
    }
