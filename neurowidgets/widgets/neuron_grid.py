"""NeuronGrid: every unit of a layer as a grid of cells coloured by its activation on one input."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import traitlets
from torch import nn

from ..core import Probe
from ..core.scan import ScanResult
from .base import bundle
from .layer_view import LayerView
from .panel import Panel, validates
from .wire import FLOAT32_ARRAY

REDUCTIONS = ("max", "mean")  # over positions, of the current input
STAT_PREFIX = "scan:"  # ``reduce`` values that colour by a scan statistic: "scan:density", ...
ORDERS = ("index", "value")


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


class GridPanel(Panel):
    """Every unit of the layer as a cell coloured by its activation on the current example.

    The page reduces the layer's (positions × units) values per unit (``reduce``: max or mean over
    positions, or the value at the selected ``position``) and recolours locally; a click selects a
    unit, shift-click adds or removes one, dragging a rectangle selects the units it covers.

    With a scan of the layer attached to the view, the per-unit statistics travel once per layer as
    ``unit_stats`` ((k, units) float32, rows named by ``stat_names``) and ``reduce`` may also be
    ``"scan:<name>"`` (mean, max, density, dead, saturated). ``order`` lays the cells out by unit
    index or by the colour value, highest first.
    """

    name = "grid"
    action = "publishing the grid's statistics"
    state: ClassVar[dict[str, traitlets.TraitType]] = {
        "reduce": traitlets.Unicode("max").tag(sync=True),
        "order": traitlets.Enum(list(ORDERS), "index").tag(sync=True),
        # float32: a scan's max may not fit in float16, and tooltips show the statistics exactly
        "unit_stats": traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY),
        "stat_names": traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True),
    }

    _stats_of: tuple[Any, str] | None = None  # (scan, layer) whose statistics were sent

    def update(self) -> None:
        """Send the layer's statistics once per scan and layer (not again for another input)."""
        view = self.view
        if self._stats_of == (view.scan, view.layer):
            return
        names, rows = unit_statistics(view.scan, view.layer)
        if rows is not None and rows.shape[1] != view.num_units:
            raise ValueError(
                f"the scan of layer {view.layer!r} has {rows.shape[1]} units but the layer now has {view.num_units}"
            )
        self._stats_of = (view.scan, view.layer)
        with view.hold_sync():
            view.set_trait("stat_names", names)
            view.set_trait("unit_stats", rows if rows is not None else np.zeros((0, view.num_units), np.float32))
            if view.reduce.startswith(STAT_PREFIX) and view.reduce[len(STAT_PREFIX) :] not in names:
                view.reduce = "max"

    @validates("reduce")
    def _valid_reduce(self, proposal: dict) -> str:
        value = proposal["value"]
        allowed = [*REDUCTIONS, *(STAT_PREFIX + name for name in self.view.stat_names)]
        if value not in allowed:
            raise traitlets.TraitError(f"reduce must be one of {allowed}, got {value!r}")
        return value


class NeuronGrid(LayerView.composed(GridPanel)):
    """A grid of a layer's units for one input (:class:`GridPanel`), as a widget of its own.

    Parameters
    ----------
    model: a ``torch.nn.Module`` or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``.
    inputs: a batch of inputs (a tensor, a tuple or a tokenizer's mapping); the grid shows
        ``example`` (default 0).
    scan: optional :class:`neurowidgets.ScanResult` whose statistics the grid can be coloured by
        (also :meth:`attach_stats`).
    """

    _esm = bundle("neuron_grid")

    def __init__(
        self, model: nn.Module | Probe, layer: str, inputs: Any, scan: ScanResult | None = None, **kwargs: Any
    ):
        super().__init__(model, layer, inputs, **kwargs)
        if scan is not None:
            self.attach_stats(scan)
