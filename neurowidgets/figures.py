"""The bokeh figures: those of the live companion views (widgets/) and of the standalone report
(reporting.py), which draws some of the same ones. Each builder draws named sources, so that a view
updates them in place and the report fills them once. Nothing here knows about widgets or computes
statistics (see the core)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from bokeh.layouts import row
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    FactorRange,
    HoverTool,
    LinearColorMapper,
    NumeralTickFormatter,
    Range1d,
    Row,
    TapTool,
    Title,
)
from bokeh.palettes import RdBu11
from bokeh.plotting import figure
from bokeh.transform import dodge

from .core.unit_stats import finite_histogram, non_finite

# The colours of the explorer's traces (js/activation_trace.ts SERIES_COLOURS), by place in the
# selection: a unit has the same colour here as in the traces.
SERIES_COLOURS = (
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#9c755f", "#ff9da7", "#b6992d", "#79706e",
)  # fmt: skip


def padded_extent(values: Any, margin: float = 0.05) -> tuple[float, float]:
    """(start, end) of an axis showing every finite value with a margin (a fraction of their span;
    ±0.5 around a single value; [0, 1] when there is none)."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = margin * (high - low) or 0.5
    return low - pad, high + pad


# -- activation histograms of units, with their top examples and the current input ----------------

BINS, CURRENT, TOP = "nw-dist-bins", "nw-dist-current", "nw-dist-top"
COLUMNS = {
    BINS: ("left", "right", "top", "colour", "label", "unit", "count"),
    CURRENT: ("x", "colour", "unit"),
    TOP: ("x", "y", "colour", "unit", "example", "position", "rank"),
}
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
        counts, edges = finite_histogram(stats, unit)
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
    current-input lines). Used by the Distributions view and by reports."""
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


def _bad_values(stats: Any, unit: int) -> str:
    """Like " · 3 NaN, 1 inf" for a unit that had non-finite values in the scan, else ""."""
    text = non_finite(stats, unit)
    return f" · {text}" if text else ""


def _columns(table: dict[str, list]) -> dict[str, Any]:
    """Numeric columns as numpy arrays (binary on the wire: int32 or float32), strings as lists."""
    return {
        name: values if values and isinstance(values[0], str) else np.asarray(values) for name, values in table.items()
    }


# -- layer health ---------------------------------------------------------------------------------

# One source per clickable glyph: which bar was clicked decides which units are selected.
DEAD, SATURATED, DENSITY = "nw-health-dead", "nw-health-saturated", "nw-health-density"


def health_sources(table: dict[str, list]) -> dict[str, ColumnDataSource]:
    """One source of a :func:`~neurowidgets.core.health.health_table` per clickable glyph (``DEAD``,
    ``SATURATED``, ``DENSITY``)."""
    return {name: ColumnDataSource(dict(table), name=name) for name in (DEAD, SATURATED, DENSITY)}


def health_figure(sources: dict[str, ColumnDataSource], title: str = "Layer health") -> Row:
    """The layer-health plot over :func:`health_sources`: bars of the dead and saturated fractions per
    layer, beside a box of the units' firing densities. Used by the LayerHealth view and by reports."""
    layers = list(sources[DEAD].data["layer"])
    thresholds = set(sources[DEAD].data["threshold"])
    above = f"> {thresholds.pop():g}" if len(thresholds) == 1 else "above the layer's threshold"
    height = 120 + 44 * len(layers)
    bars = figure(
        y_range=list(reversed(layers)), x_range=(0, 1.02), title=title, tools="", height=height,
        width=380, toolbar_location=None, x_axis_label="fraction of the layer's units",
    )  # fmt: skip
    for name, column, label, colour, offset in (
        (DEAD, "dead", "dead", "#d62728", -0.17),
        (SATURATED, "saturated", "saturated", "#ff7f0e", 0.17),
    ):
        bars.hbar(
            y=dodge("layer", offset, range=bars.y_range), right=column, height=0.3,
            source=sources[name], color=colour, legend_label=label,
            nonselection_alpha=0.3, selection_alpha=1.0, selection_line_color="black",
        )  # fmt: skip
    bars.add_tools(TapTool(), HoverTool(tooltips=[
        ("layer", "@layer (@units units)"), ("dead", "@dead_count (@dead{0.0%})"),
        ("saturated", "@saturated_text"),
    ]))  # fmt: skip
    bars.legend.orientation = "horizontal"
    bars.add_layout(bars.legend[0], "below")  # outside the frame: a bar may reach 1
    bars.ygrid.grid_line_color = None

    spread = figure(
        y_range=bars.y_range, x_range=(0, 1.02), title="Firing density of the units", tools="",
        height=height, width=300, toolbar_location=None, x_axis_label=f"fraction of values {above}",
    )  # fmt: skip
    source = sources[DENSITY]
    spread.segment("q10", "layer", "q90", "layer", source=source, color="#1f77b4", line_width=2)
    spread.hbar(
        y="layer", left="q25", right="q75", height=0.4, source=source, color="#aec7e8",
        line_color="#1f77b4", nonselection_alpha=0.3, selection_line_color="black",
    )  # fmt: skip
    spread.segment(
        "q50", dodge("layer", -0.2, range=spread.y_range), "q50", dodge("layer", 0.2, range=spread.y_range),
        source=source, color="black", line_width=2,
    )  # fmt: skip
    spread.add_tools(TapTool(), HoverTool(tooltips=[
        ("layer", "@layer"), ("median density", "@q50{0.000}"),
        ("quartiles", "@q25{0.000} – @q75{0.000}"), ("10th–90th pct", "@q10{0.000} – @q90{0.000}"),
    ]))  # fmt: skip
    spread.yaxis.visible = False
    spread.ygrid.grid_line_color = None
    return row(bars, spread)


# -- correlation matrix and unit-vs-unit scatter --------------------------------------------------

MATRIX, PAIR, SCATTER = "nw-coact-matrix", "nw-coact-pair", "nw-coact-scatter"
NAN_GREY = "#9e9e9e"  # constant units have no correlation: grey, apart from every colour of the scale


def coactivation_sources() -> dict[str, ColumnDataSource]:
    """The empty sources of :func:`coactivation_figure`: the matrix's cells, the outlined pair's cells,
    the scatter's points."""
    return {
        MATRIX: ColumnDataSource({"x": [], "y": [], "a": [], "b": [], "cell": [], "r": [], "r_text": []}, name=MATRIX),
        PAIR: ColumnDataSource({"x": [], "y": []}, name=PAIR),
        SCATTER: ColumnDataSource({"x": [], "y": [], "example": []}, name=SCATTER),
    }


def coactivation_figure(sources: dict[str, ColumnDataSource]) -> tuple[Row, Any, Any]:
    """(the layout, the correlation matrix, the unit-vs-unit scatter) over :func:`coactivation_sources`."""
    mapper = LinearColorMapper(palette=list(reversed(RdBu11)), low=-1, high=1, nan_color=NAN_GREY)
    matrix = figure(
        title=" ", x_range=FactorRange(), y_range=FactorRange(), width=420, height=400, tools="",
        toolbar_location=None, x_axis_label="unit", y_axis_label="unit",
    )  # fmt: skip
    matrix.rect(
        "x", "y", 1, 1, source=sources[MATRIX], fill_color={"field": "r", "transform": mapper},
        line_color="white", nonselection_fill_alpha=1.0, selection_fill_alpha=1.0,
    )  # fmt: skip
    matrix.rect("x", "y", 1, 1, source=sources[PAIR], fill_alpha=0, line_color="black", line_width=3)
    matrix.add_tools(TapTool(), HoverTool(tooltips=[("units", "@a × @b"), ("correlation", "@r_text")]))
    matrix.add_layout(ColorBar(color_mapper=mapper, width=10), "right")
    matrix.grid.grid_line_color = None
    matrix.axis.major_tick_line_color = None
    matrix.xaxis.major_label_orientation = np.pi / 2

    scatter = figure(
        title=" ", x_range=Range1d(0, 1), y_range=Range1d(0, 1), width=400, height=400, tools="",
        toolbar_location=None,
    )  # fmt: skip
    scatter.scatter(
        "x", "y", source=sources[SCATTER], size=7, fill_alpha=0.5, line_alpha=0.8,
        color="#4e79a7", selection_color="#e15759", selection_fill_alpha=1.0, nonselection_alpha=0.35,
    )  # fmt: skip
    scatter.add_tools(TapTool(), HoverTool(tooltips=[("example", "@example"), ("a, b", "@x{0.000}, @y{0.000}")]))
    return row(matrix, scatter), matrix, scatter


# -- an edit's effect on the output: before and after ---------------------------------------------

BARS = "nw-interventions-bars"
BEFORE, AFTER = "#b5b5b5", "#1f77b4"
AXIS = {"classes": "probability", "tokens": "log-probability at the predicted token", "vector": "output value"}


def comparison_figure(kind: str, rows: int) -> tuple[Any, ColumnDataSource]:
    """(figure, its empty source ``BARS``) of an output before and after an edit, for ``rows`` entries
    of a readout of ``kind`` (see core/outputs.py): side-by-side bars of probabilities for classes, a
    dot before and a dot after, joined, for log-probabilities and values (they have no natural 0)."""
    source = ColumnDataSource(
        {"label": [], "before": [], "after": [], "change": [], "note": [], "note_x": []}, name=BARS
    )
    fig = figure(
        y_range=FactorRange(), x_range=Range1d(0, 1), height=110 + 30 * rows, width=460, tools="",
        toolbar_location=None, x_axis_label=AXIS[kind], title="",
    )  # fmt: skip
    if kind == "classes":
        for column, offset, colour in (("before", 0.18, BEFORE), ("after", -0.18, AFTER)):
            fig.hbar(
                y=dodge("label", offset, range=fig.y_range), left=0, right=column, height=0.34,
                source=source, color=colour, legend_label=column,
            )  # fmt: skip
    else:
        fig.segment("before", "label", "after", "label", source=source, color=AFTER, line_width=2)
        for column, colour in (("before", BEFORE), ("after", AFTER)):
            fig.scatter(column, "label", source=source, size=10, color=colour, legend_label=column)
    fig.text(
        x="note_x", y="label", text="note", source=source, x_offset=6, text_baseline="middle",
        text_font_size="11px", text_color="#333333",
    )  # fmt: skip
    fig.add_tools(HoverTool(tooltips=[("", "@label"), ("before", "@before{0.000}"), ("after", "@after{0.000}")]))
    if kind == "classes":
        fig.xaxis.ticker = [0, 0.25, 0.5, 0.75, 1]  # the range runs on to 1.35 for the notes
    fig.legend.orientation = "horizontal"
    fig.legend.border_line_alpha = 0
    fig.legend.padding = 2
    fig.legend.location = "top_left"
    fig.add_layout(fig.legend[0], "above")
    fig.ygrid.grid_line_color = None
    fig.title.text_font_size = "13px"
    return fig, source
