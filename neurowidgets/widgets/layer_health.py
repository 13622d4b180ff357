"""LayerHealth: every scanned layer's dead and saturated units and the spread of its firing density."""

from __future__ import annotations

from typing import Any

import traitlets

from ..core.health import health_table
from ..core.scan import ScanResult, check_scan
from ..figures import DEAD, DENSITY, SATURATED, health_figure, health_sources
from .companion import Companion


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
        self.sources = health_sources(health_table(scan))
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
