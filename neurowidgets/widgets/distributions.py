"""Distributions: the scanned activation histograms of the selected units, with the current input and
the top examples marked on them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import traitlets

from ..core.scan import ScanResult, check_scan
from ..figures import (
    BINS,
    CURRENT,
    SERIES_COLOURS,
    TOP,
    fit_ranges,
    histogram_columns,
    histogram_figure,
    histogram_sources,
)
from .companion import Companion
from .layer_view import LayerView


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
        elif tops and self.view is not None and self.view.examples is not None:
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
