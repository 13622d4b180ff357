"""ActivationTrace: the selected units' activations along the positions of an input, or across a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import traitlets
from torch import nn

from ..core import Probe
from .base import bundle
from .layer_view import LayerView


class ActivationTrace(LayerView):
    """A line chart of the selected units, one colour each, over the positions of one input.

    Positions are tokens for a sequence layer and the H×W grid flattened row-major for a conv layer
    (labelled ``(row, col)``). Hover shows every selected unit's value at a position; a click selects
    the position (the shared ``position`` trait; clicking it again clears it to -1).

    With a batch of N > 1 inputs, ``along="examples"`` plots each selected unit's max over positions
    per example instead, and a click selects the ``example``.

    The layer's whole (N, positions, units) array is already in the browser (``values``): choosing
    other units, another example or the other mode redraws there, with no kernel round trip.

    Parameters
    ----------
    model: a ``torch.nn.Module`` or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``.
    inputs: a batch of inputs (a tensor, a tuple or a tokenizer's mapping).
    selected_units: the units to plot (indices into the layer's units).
    along: ``"positions"`` (default) or ``"examples"`` (needs a batch of more than one input).
    position_labels: optional labels of the positions, one list of strings per example (e.g. the
        token strings of each input); ``[]`` labels positions by index, or ``(row, col)`` on a grid.
    """

    _esm = bundle("activation_trace")

    along = traitlets.Enum(["positions", "examples"], "positions").tag(sync=True)
    position_labels = traitlets.List(traitlets.List(traitlets.Unicode())).tag(sync=True)

    def __init__(self, model: nn.Module | Probe, layer: str, inputs: Any, **kwargs: Any):
        labels = kwargs.pop("position_labels", None)
        super().__init__(model, layer, inputs, **kwargs)
        if labels is not None:
            try:
                self.position_labels = labels
            except traitlets.TraitError:
                self.close()
                raise

    # -- public --------------------------------------------------------------------------------

    @property
    def num_examples(self) -> int:
        return int(self.values.shape[0])

    def set_input(self, inputs: Any, position_labels: Sequence[Sequence[str]] | None = None) -> None:
        """Show another input batch, with the labels of its positions (default: none). On error
        nothing changes: labels that do not fit the new input are rejected before anything is shown."""
        capture = self._run(self.layer, inputs)
        values = capture[self.layer].values
        labels = self._check_labels(position_labels or [], int(values.shape[0]), int(values.shape[1]))
        self._inputs = inputs
        with self.hold_sync():
            self.position_labels = []  # the old labels name the old input's positions
            self._show(capture, self.layer)
            self.position_labels = labels

    def trace(self, unit: int) -> Any:
        """What the chart draws for ``unit``: its values along the positions of ``example``, or
        (``along="examples"``) its max over positions for each example. NaN anywhere gives NaN."""
        if not 0 <= unit < self.num_units:
            raise IndexError(f"unit {unit} does not exist: layer {self.layer!r} has units 0…{self.num_units - 1}")
        values = self.unit_values(unit)
        if self.along == "examples":
            return values.max(axis=1)
        return values[self.example]

    # -- state ---------------------------------------------------------------------------------

    def _show(self, capture: Any, layer: str) -> None:
        with self.hold_sync():
            super()._show(capture, layer)
            if self.along == "examples" and self.num_examples < 2:
                self.along = "positions"

    def _check_labels(self, labels: Any, examples: int, positions: int) -> list[list[str]]:
        labels = [list(row) for row in labels]
        if not labels:
            return labels
        if len(labels) != examples:
            raise traitlets.TraitError(
                f"position_labels has {len(labels)} list(s) but the input has {examples} example(s): "
                "give one list of labels per example, or [] for none"
            )
        for i, row in enumerate(labels):
            if row and len(row) != positions:
                raise traitlets.TraitError(
                    f"position_labels[{i}] has {len(row)} label(s) but layer {self.layer!r} has "
                    f"{positions} position(s) (give one label per position, or [] for none)"
                )
            bad = next((label for label in row if not isinstance(label, str)), None)
            if bad is not None:
                raise traitlets.TraitError(f"position_labels[{i}] must be strings, got {type(bad).__name__}")
        return labels

    @traitlets.validate("position_labels")
    def _valid_position_labels(self, proposal: dict) -> list[list[str]]:
        if self.values is None:  # during __init__; checked once the values exist
            return proposal["value"]
        return self._check_labels(proposal["value"], self.num_examples, self.num_positions)

    @traitlets.validate("along")
    def _valid_along(self, proposal: dict) -> str:
        along = proposal["value"]
        if along == "examples" and self.values is not None and self.num_examples < 2:
            raise traitlets.TraitError(
                f"along='examples' needs a batch of more than one input; this one has {self.num_examples}"
            )
        return along
