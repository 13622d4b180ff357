"""NeuronGrid: every unit of a layer as a grid of cells coloured by its activation on one input."""

from __future__ import annotations

import traitlets

from .base import bundle
from .layer_view import LayerView


class NeuronGrid(LayerView):
    """A grid of a layer's units for one input.

    The layer's whole (positions × units) matrix is sent once as a binary buffer; the front-end
    reduces it per unit (max or mean over positions, or the value at the selected ``position``) and
    recolours locally. ``selected_units`` is synced both ways: click selects a unit, shift-click adds
    or removes one.

    Parameters
    ----------
    model: a ``torch.nn.Module`` or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``.
    inputs: a batch of inputs (a tensor, a tuple or a tokenizer's mapping); the grid shows
        ``example`` (default 0).
    """

    _esm = bundle("neuron_grid")

    reduce = traitlets.Enum(["max", "mean"], "max").tag(sync=True)
