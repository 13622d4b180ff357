"""NeuronGrid: every unit of a layer as a grid of cells coloured by its activation on one input."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets
from torch import nn

from ..core import Capture, Probe
from ..core.scan import ScanResult, check_scan
from .base import bundle
from .layer_view import LayerView
from .wire import array_from_json, encode

REDUCTIONS = ("max", "mean")  # over positions, of the current input
STAT_PREFIX = "scan:"  # ``reduce`` values that colour by a scan statistic: "scan:density", ...
ORDERS = ("index", "value")
# Statistics travel as float32: a scan's max may not fit in float16, and tooltips show them exactly.
FLOAT32_ARRAY = {
    "to_json": lambda value, widget: None if value is None else encode(value, "float32"),
    "from_json": array_from_json,
}


def unit_statistics(scan: ScanResult | None, layer: str) -> tuple[list[str], np.ndarray | None]:
    """The per-unit statistics of ``layer`` the grid can colour by: (names, (k, units) float32).

    mean, max and density come from the scan; dead and saturated are 0/1 flags (saturated only for
    layers whose bounds the scan tracked). ``([], None)`` when the layer was not scanned.
    """
    if scan is None or layer not in scan:
        return [], None
    stats = scan[layer]
    rows = {"mean": stats.mean, "max": stats.max, "density": stats.density}
    dead = np.zeros(stats.units)
    dead[stats.dead()] = 1
    rows["dead"] = dead
    if stats.bounds is not None:
        saturated = np.zeros(stats.units)
        saturated[stats.saturated()] = 1
        rows["saturated"] = saturated
    return list(rows), np.stack([np.asarray(r, dtype=np.float32) for r in rows.values()])


class NeuronGrid(LayerView):
    """A grid of a layer's units for one input.

    The layer's whole (positions × units) matrix is sent once as a binary buffer; the front-end
    reduces it per unit (max or mean over positions, or the value at the selected ``position``) and
    recolours locally. ``selected_units`` is synced both ways: click selects a unit, shift-click adds
    or removes one; dragging a rectangle selects the units it covers (with shift: adds them).

    With a scan of the layer (``scan=``, :meth:`attach_stats`, or the explorer's ``attach_scan``),
    the per-unit statistics travel once per layer as ``unit_stats`` ((k, units) float32, rows named
    by ``stat_names``) and ``reduce`` may also be ``"scan:<name>"`` (mean, max, density, dead,
    saturated). ``order`` lays the cells out by unit index or by the colour value, highest first.

    Parameters
    ----------
    model: a ``torch.nn.Module`` or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``.
    inputs: a batch of inputs (a tensor, a tuple or a tokenizer's mapping); the grid shows
        ``example`` (default 0).
    scan: optional :class:`neurowidgets.ScanResult` whose statistics the grid can be coloured by.
    """

    _esm = bundle("neuron_grid")

    reduce = traitlets.Unicode("max").tag(sync=True)
    order = traitlets.Enum(list(ORDERS), "index").tag(sync=True)
    unit_stats = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY)
    stat_names = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)

    scan: ScanResult | None = None

    def __init__(
        self, model: nn.Module | Probe, layer: str, inputs: Any, scan: ScanResult | None = None, **kwargs: Any
    ):
        super().__init__(model, layer, inputs, **kwargs)
        if scan is not None:
            self.attach_stats(scan)

    def attach_stats(self, scan: ScanResult | None) -> None:
        """Colour by ``scan``'s per-unit statistics (``None`` forgets them)."""
        if scan is not None:
            check_scan(scan)
        self.scan = scan
        self._stats_layer = None
        self._publish_stats(self.layer)

    def _show(self, capture: Capture, layer: str) -> None:
        with self.hold_sync():
            super()._show(capture, layer)
            self._publish_stats(layer)

    def _publish_stats(self, layer: str) -> None:
        """Send the layer's statistics once per layer (not again for another input)."""
        if getattr(self, "_stats_layer", None) == layer:
            return
        self._stats_layer = layer
        names, rows = unit_statistics(self.scan, layer)
        if rows is not None and rows.shape[1] != self.num_units:
            raise ValueError(
                f"the scan of layer {layer!r} has {rows.shape[1]} units but the layer now has {self.num_units}"
            )
        with self.hold_sync():
            self.set_trait("stat_names", names)
            self.set_trait("unit_stats", rows if rows is not None else np.zeros((0, self.num_units), np.float32))
            if self.reduce.startswith(STAT_PREFIX) and self.reduce[len(STAT_PREFIX) :] not in names:
                self.reduce = "max"

    @traitlets.validate("reduce")
    def _valid_reduce(self, proposal: dict) -> str:
        value = proposal["value"]
        allowed = [*REDUCTIONS, *(STAT_PREFIX + name for name in self.stat_names)]
        if value not in allowed:
            raise traitlets.TraitError(f"reduce must be one of {allowed}, got {value!r}")
        return value
