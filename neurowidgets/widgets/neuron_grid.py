"""NeuronGrid: every unit of a layer as a grid of cells coloured by its activation on one input."""

from __future__ import annotations

from typing import Any

import traitlets
from torch import nn

from ..core import Probe
from ..core.inputs import batch_size
from .base import NeuroWidget, as_probe, bundle
from .wire import ARRAY, to_numpy


class NeuronGrid(NeuroWidget):
    """A grid of a layer's units for one input.

    The layer's whole (positions × units) matrix is sent once as a binary buffer; the front-end
    reduces it per unit (max or mean over positions) and recolours locally. ``selected_units`` is
    synced both ways: click selects a unit, shift-click adds or removes one.

    Parameters
    ----------
    model: a ``torch.nn.Module`` or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``.
    inputs: one input with a batch dimension of 1 (a tensor, a tuple or a tokenizer's mapping).
    """

    _esm = bundle("neuron_grid")

    layer = traitlets.Unicode("").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    values = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **ARRAY)
    positions_shape = traitlets.List(traitlets.Int(), read_only=True).tag(sync=True)
    reduce = traitlets.Enum(["max", "mean"], "max").tag(sync=True)
    selected_units = traitlets.List(traitlets.Int()).tag(sync=True)

    def __init__(self, model: nn.Module | Probe, layer: str, inputs: Any, **kwargs: Any):
        self.probe = as_probe(model)
        self.probe._check_name(layer)
        self._inputs = self._check_inputs(inputs)
        values, grid = self._compute(layer, self._inputs)
        super().__init__(layer=layer, **kwargs)
        self.set_trait("layers", self.probe.layer_names)
        self._show(values, grid)

    @property
    def inputs(self) -> Any:
        return self._inputs

    @property
    def num_units(self) -> int:
        return int(self.values.shape[1])

    def set_input(self, inputs: Any) -> None:
        """Show another input (batch of 1). On error nothing changes."""
        inputs = self._check_inputs(inputs)
        values, grid = self._compute(self.layer, inputs)
        self._inputs = inputs
        self._show(values, grid)

    # -- traits --------------------------------------------------------------------------------

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        return self.probe._check_name(proposal["value"])

    @traitlets.observe("layer")
    def _layer_changed(self, change: dict) -> None:
        if self.values is None:  # during __init__
            return
        with self.reporting_errors(f"showing layer {change['new']!r}"):
            values, grid = self._compute(change["new"], self._inputs)
            self._show(values, grid)

    @traitlets.validate("selected_units")
    def _valid_selection(self, proposal: dict) -> list[int]:
        units = list(dict.fromkeys(proposal["value"]))  # unique, in order of selection
        if self.values is not None:
            bad = [u for u in units if not 0 <= u < self.num_units]
            if bad:
                raise traitlets.TraitError(
                    f"unit {bad[0]} does not exist: layer {self.layer!r} has units 0…{self.num_units - 1}"
                )
        return units

    # -- computation ---------------------------------------------------------------------------

    @staticmethod
    def _check_inputs(inputs: Any) -> Any:
        n = batch_size(inputs)
        if n != 1:
            raise ValueError(f"NeuronGrid shows one input: expected a batch of 1, got a batch of {n}")
        return inputs

    def _compute(self, layer: str, inputs: Any):
        acts = self.probe.run(inputs, [layer])[layer]
        return to_numpy(acts.values[0].float()), list(acts.positions_shape)

    def _show(self, values, grid: list[int]) -> None:
        with self.hold_sync():
            units = int(values.shape[1])
            kept = [u for u in self.selected_units if u < units]
            if kept != self.selected_units:
                self.selected_units = kept
            self.set_trait("positions_shape", grid)
            self.set_trait("values", values)
