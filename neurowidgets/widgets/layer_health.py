"""LayerHealth: every scanned layer's dead and saturated units and the spread of its firing density."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets
from bokeh.layouts import row
from bokeh.models import ColumnDataSource, HoverTool, Row, TapTool
from bokeh.plotting import figure
from bokeh.transform import dodge

from ..core.scan import ScanResult, check_scan
from .companion import Companion

# One source per clickable glyph: which bar was clicked decides which units are selected.
DEAD, SATURATED, DENSITY = "nw-health-dead", "nw-health-saturated", "nw-health-density"
DENSITY_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def health_table(scan: ScanResult) -> dict[str, list]:
    """Per scanned layer: the fractions of dead and of saturated units, and the 10/25/50/75/90th
    percentiles of the units' firing densities (``q10`` … ``q90``).

    ``saturated`` is NaN (not drawn; "not tracked" in ``saturated_text``) for layers whose bounds the
    scan did not track (``saturation_tracked`` False). ``threshold``: the firing threshold of the density.
    """
    table: dict[str, list] = {
        "layer": [], "units": [], "dead": [], "dead_count": [], "saturated": [],
        "saturated_count": [], "saturation_tracked": [], "saturated_text": [], "threshold": [],
        **{f"q{round(q * 100)}": [] for q in DENSITY_QUANTILES},
    }  # fmt: skip
    for layer in scan.layers:
        stats = scan[layer]
        units = stats.num_units
        dead = len(stats.dead())
        tracked = stats.bounds is not None
        saturated = len(stats.saturated()) if tracked else 0
        table["layer"].append(layer)
        table["units"].append(units)
        table["dead"].append(dead / units)
        table["dead_count"].append(dead)
        table["saturated"].append(saturated / units if tracked else float("nan"))
        table["saturated_count"].append(saturated)
        table["saturation_tracked"].append(tracked)
        table["saturated_text"].append(f"{saturated} ({saturated / units:.1%})" if tracked else "not tracked")
        table["threshold"].append(stats.threshold)
        for q, value in zip(DENSITY_QUANTILES, np.quantile(stats.density, DENSITY_QUANTILES), strict=True):
            table[f"q{round(q * 100)}"].append(float(value))
    return table


def health_sources(scan: ScanResult) -> dict[str, ColumnDataSource]:
    """One source of :func:`health_table` per clickable glyph (``DEAD``, ``SATURATED``, ``DENSITY``)."""
    table = health_table(scan)
    return {name: ColumnDataSource(dict(table), name=name) for name in (DEAD, SATURATED, DENSITY)}


def health_figure(sources: dict[str, ColumnDataSource], title: str = "Layer health") -> Row:
    """The layer-health plot over :func:`health_sources`: bars of the dead and saturated fractions per
    layer, beside a box of the units' firing densities. Used by :class:`LayerHealth` and by reports."""
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


class LayerHealth(Companion):
    """Every scanned layer on one view: bars of the fraction of dead and of saturated units, and a box
    of the units' firing densities (10th–90th percentile whiskers, quartile box, median).

    Clicking a layer's dead (or saturated) bar makes it the ``layer`` and selects its dead (saturated)
    units; clicking its density box selects its dead units. With ``follow=`` an explorer (or
    :meth:`follow`), that opens the layer in the explorer's grid with those units selected, and the
    explorer's layer is highlighted here.
    """

    def __init__(self, scan: ScanResult, title: str = "Layer health", follow: Any = None, **kwargs: Any):
        check_scan(scan)
        self.scan = scan
        self.sources = health_sources(scan)
        super().__init__(
            health_figure(self.sources, title),
            follow=follow,
            selectable=dict.fromkeys((DEAD, SATURATED, DENSITY), "layer"),  # a tap sends the layer's name
            **kwargs,
        )

    @property
    def table(self) -> dict[str, list]:
        return dict(self.sources[DEAD].data)

    # -- selection -----------------------------------------------------------------------------

    def _on_tap(self, chosen: dict[str, list]) -> None:
        # A tap carries the name of the layer whose bar (or box) it hit: opening it again is no change.
        # A tap on empty space chose nothing and changes nothing (the current layer stays highlighted).
        clicked = [name for name in (DEAD, SATURATED, DENSITY) if chosen.get(name)]
        if not clicked:
            return
        name = clicked[0]
        layer = chosen[name][0]
        if not isinstance(layer, str):
            raise TypeError(f"a tap on a layer's bar carries the layer's name, got {layer!r}")
        self.open_layer(layer, "saturated" if name == SATURATED else "dead")

    def open_layer(self, layer: str, units: str = "dead") -> None:
        """Make ``layer`` the layer (of the followed explorer too) with its ``units`` ("dead" or
        "saturated") selected: what a click on its bar does."""
        if units not in ("dead", "saturated"):
            raise ValueError(f'units must be "dead" or "saturated", got {units!r}')
        stats = self.scan[layer]  # a LayerError naming the scanned layers
        if self.view is not None:
            self.view.probe._check_name(layer)  # the followed model has it (a LayerError naming the closest)
        if units == "saturated" and stats.bounds is None:
            raise ValueError(f"the scan did not track saturation for layer {layer!r} (no known bounds)")
        chosen = stats.saturated() if units == "saturated" else stats.dead()
        with self.hold_sync():
            self.layer = layer
            self.selected_units = [int(u) for u in chosen]
            self._highlight(layer)

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        layer = proposal["value"]
        if layer and layer not in self.scan and self.view is None:
            raise traitlets.TraitError(f"layer {layer!r} was not scanned; this scan has {self.scan.layers}")
        return layer

    @traitlets.observe("layer")
    def _layer_changed(self, change: dict) -> None:
        self._highlight(change["new"])

    def _highlight(self, layer: str) -> None:
        layers = list(self.sources[DEAD].data["layer"])
        index = [layers.index(layer)] if layer in layers else []
        wanted = {name: index for name in (DEAD, SATURATED, DENSITY)}
        for name, indices in wanted.items():
            if self.selections.get(name) != indices:
                self.select(name, indices)
