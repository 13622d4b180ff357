"""ActivationTrace: the selected units' activations along the positions of an input, or across a batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import traitlets

from .base import bundle
from .layer_view import LayerView
from .panel import Panel, validates


class TracePanel(Panel):
    """A line chart of the selected units, one colour each, over the positions of one input.

    Positions are tokens for a sequence layer and the H×W grid flattened row-major for a conv layer
    (labelled ``(row, col)``). Hover shows every selected unit's value at a position; a click selects
    the position (the shared ``position``; clicking it again clears it to -1).

    With a batch of N > 1 inputs, ``along="examples"`` plots each selected unit's max over positions
    per example instead, and a click selects the ``example``. ``position_labels``: one list of strings
    per example naming its positions (a text view's tokens, set for you), or ``[]`` (indices).

    The layer's whole (N, positions, units) array is already in the browser (``values``): choosing
    other units, another example or the other mode redraws there, with no kernel round trip.
    """

    name = "trace"
    action = "drawing the trace"
    state: ClassVar[dict[str, traitlets.TraitType]] = {
        "along": traitlets.Enum(["positions", "examples"], "positions").tag(sync=True),
        "position_labels": traitlets.List(traitlets.List(traitlets.Unicode())).tag(sync=True),
    }

    def update(self) -> None:
        view = self.view
        if view.along == "examples" and view.num_examples < 2:
            view.along = "positions"
        names = view.position_names()
        if names:
            view.position_labels = names

    def trace(self, unit: int) -> Any:
        """What the chart draws for ``unit``: its values along the positions of ``example``, or
        (``along="examples"``) its max over positions for each example. NaN anywhere gives NaN."""
        view = self.view
        if not 0 <= unit < view.num_units:
            raise IndexError(f"unit {unit} does not exist: layer {view.layer!r} has units 0…{view.num_units - 1}")
        values = view.unit_values(unit)
        if view.along == "examples":
            return values.max(axis=1)
        return values[view.example]

    def check_labels(self, labels: Any, examples: int, positions: int) -> list[list[str]]:
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
                    f"position_labels[{i}] has {len(row)} label(s) but layer {self.view.layer!r} has "
                    f"{positions} position(s) (give one label per position, or [] for none)"
                )
            bad = next((label for label in row if not isinstance(label, str)), None)
            if bad is not None:
                raise traitlets.TraitError(f"position_labels[{i}] must be strings, got {type(bad).__name__}")
        return labels

    @validates("position_labels")
    def _valid_position_labels(self, proposal: dict) -> list[list[str]]:
        view = self.view
        if view.values is None:  # during __init__; checked once the values exist
            return proposal["value"]
        return self.check_labels(proposal["value"], view.num_examples, view.num_positions)

    @validates("along")
    def _valid_along(self, proposal: dict) -> str:
        along, view = proposal["value"], self.view
        if along == "examples" and view.values is not None and view.num_examples < 2:
            raise traitlets.TraitError(
                f"along='examples' needs a batch of more than one input; this one has {view.num_examples}"
            )
        return along


class ActivationTrace(LayerView.composed(TracePanel)):
    """The selected units along the positions of an input, or across a batch (:class:`TracePanel`), as
    a widget of its own.

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

    def __init__(self, model: Any, layer: str, inputs: Any, **kwargs: Any):
        labels = kwargs.pop("position_labels", None)
        super().__init__(model, layer, inputs, **kwargs)
        if labels is not None:
            try:
                self.position_labels = labels
            except traitlets.TraitError:
                self.close()
                raise

    def set_input(self, inputs: Any, position_labels: Sequence[Sequence[str]] | None = None) -> None:
        """Show another input batch, with the labels of its positions (default: none). On error
        nothing changes: labels that do not fit the new input are rejected before anything is shown."""
        inputs = self._prepare(inputs)
        capture = self._run(self.layer, inputs)
        values = capture[self.layer].values
        labels = self.part(TracePanel).check_labels(position_labels or [], int(values.shape[0]), int(values.shape[1]))
        with self.hold_sync():
            self.position_labels = []  # the old labels name the old input's positions
            self._accept(inputs, capture)
            self.position_labels = labels

    def trace(self, unit: int) -> Any:
        """What the chart draws for ``unit`` (:meth:`TracePanel.trace`)."""
        return self.part(TracePanel).trace(unit)
