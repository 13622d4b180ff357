"""LayerHealth: one bar chart of every scanned layer's dead and saturated units and firing density."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets
from bokeh.models import ColumnDataSource, HoverTool, TapTool
from bokeh.plotting import figure
from bokeh.transform import dodge

from ..core.scan import ScanResult
from .bokeh_host import BokehHost

SOURCE_NAME = "nw-layer-health"
METRICS = (  # column, legend label, colour, dodge offset
    ("dead", "dead units", "#d62728", -0.27),
    ("saturated", "saturated units", "#ff7f0e", 0.0),
    ("density", "median firing density", "#1f77b4", 0.27),
)


def health_table(scan: ScanResult) -> dict[str, list]:
    """Per scanned layer: the fractions of dead and of saturated units and the median density.

    ``saturated`` is 0 for layers whose bounds the scan did not track (``saturation_tracked`` False).
    """
    table: dict[str, list] = {
        "layer": [], "units": [], "dead": [], "dead_count": [], "saturated": [],
        "saturated_count": [], "saturation_tracked": [], "density": [],
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
        table["saturated"].append(saturated / units)
        table["saturated_count"].append(saturated)
        table["saturation_tracked"].append(tracked)
        table["density"].append(float(np.median(stats.density)))
    return table


class LayerHealth(BokehHost):
    """Every scanned layer as a group of horizontal bars: fraction of dead units, of saturated units,
    and the median firing density. Click a layer's bars: ``selected_layer`` becomes that layer and
    ``selected_units`` its dead units (setting ``selected_layer`` from Python does the same)."""

    selected_layer = traitlets.Unicode("").tag(sync=True)
    selected_units = traitlets.List(traitlets.Int()).tag(sync=True)

    def __init__(self, scan: ScanResult, title: str = "Layer health", **kwargs: Any):
        self.scan = scan
        self.source = ColumnDataSource(health_table(scan), name=SOURCE_NAME)
        super().__init__(self._figure(title), selection_source=SOURCE_NAME, **kwargs)

    def _figure(self, title: str):
        layers = list(self.source.data["layer"])
        fig = figure(
            y_range=list(reversed(layers)), x_range=(0, 1.05), title=title, tools="",
            height=70 + 60 * len(layers), width=560, toolbar_location=None,
            x_axis_label="fraction of units (density: median over units)",
        )  # fmt: skip
        for column, label, colour, offset in METRICS:
            fig.hbar(
                y=dodge("layer", offset, range=fig.y_range), right=column, height=0.25,
                source=self.source, color=colour, legend_label=label,
                nonselection_alpha=0.35, selection_alpha=1.0,
            )  # fmt: skip
        fig.add_tools(TapTool(), HoverTool(tooltips=[
            ("layer", "@layer (@units units)"), ("dead", "@dead_count (@dead{0.0%})"),
            ("saturated", "@saturated_count (@saturated{0.0%})"), ("median density", "@density{0.000}"),
        ]))  # fmt: skip
        fig.legend.location = "bottom_right"
        fig.ygrid.grid_line_color = None
        return fig

    @traitlets.observe("selected_indices")
    def _indices_changed(self, change: dict) -> None:
        layers = self.source.data["layer"]
        indices = [i for i in change["new"] if 0 <= i < len(layers)]
        self.selected_layer = layers[indices[0]] if indices else ""

    @traitlets.validate("selected_layer")
    def _valid_layer(self, proposal: dict) -> str:
        layer = proposal["value"]
        if layer and layer not in self.scan:
            raise traitlets.TraitError(f"{layer!r} is not a scanned layer ({', '.join(self.scan.layers)})")
        return layer

    @traitlets.observe("selected_layer")
    def _layer_changed(self, change: dict) -> None:
        layer = change["new"]
        self.selected_units = [int(u) for u in self.scan[layer].dead()] if layer else []
        index = [list(self.source.data["layer"]).index(layer)] if layer else []
        if list(self.selected_indices) != index:
            self.selected_indices = index
