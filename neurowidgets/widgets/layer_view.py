"""LayerView: the live state every activation view shares, computed once per input in the kernel.

Trait names are the schema the front-end views read (js/lib/layer_state.ts). A widget that composes
several views (the explorer) inherits from several LayerView subclasses and so has one model with one
copy of this state: selection, position and input are linked because they are the same traits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets
from torch import nn

from ..core import Capture, Probe
from ..core.inputs import batch_size
from .base import NeuroWidget, as_probe
from .wire import ARRAY, to_numpy

# The colour scale's limit is this percentile of the units' largest values (see js/lib/store.ts).
COLOUR_QUANTILE = 0.99


class LayerView(NeuroWidget):
    """One layer of ``model`` on a batch of ``inputs`` (N ≥ 1 examples).

    Synced state:
    - ``layer`` (one of ``layers``), ``values`` (N, positions, units) as a binary buffer,
      ``positions_shape`` (``[]``, ``[T]`` or ``[H, W]``);
    - ``example``: which of the N inputs single-input views show;
    - ``selected_units`` (list of unit indices) and ``position`` (a flat position index, or -1).
    """

    layer = traitlets.Unicode("").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    # The picker's groups, [{"label": kind, "layers": [...]}, ...] (see core/layers.py); empty: ``layers`` as listed.
    layer_groups = traitlets.List(traitlets.Dict(), read_only=True).tag(sync=True)
    values = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **ARRAY)
    positions_shape = traitlets.List(traitlets.Int(), read_only=True).tag(sync=True)
    example = traitlets.Int(0).tag(sync=True)
    selected_units = traitlets.List(traitlets.Int()).tag(sync=True)
    position = traitlets.Int(-1).tag(sync=True)
    # Valid positions per example when a batch is padded on the right (texts); empty: all are valid.
    lengths = traitlets.List(traitlets.Int(), read_only=True).tag(sync=True)

    def __init__(self, model: nn.Module | Probe, layer: str, inputs: Any, **kwargs: Any):
        self.probe = as_probe(model)
        self.probe._check_name(layer)
        self._inputs = inputs
        capture = self._run(layer, inputs)  # before any trait is set: a bad input raises, nothing shown
        super().__init__(layer=layer, **kwargs)
        names = self.probe.layer_names
        self.set_trait("layers", names if layer in names else [*names, layer])
        self._show(capture, layer)

    # -- public --------------------------------------------------------------------------------

    @property
    def inputs(self) -> Any:
        return self._inputs

    @property
    def num_units(self) -> int:
        return int(self.values.shape[2])

    @property
    def num_positions(self) -> int:
        return int(self.values.shape[1])

    def set_layer_groups(self, groups: list[tuple[str, list[str]]]) -> None:
        """Group the layer picker's entries: ``[(kind, [layer, ...]), ...]``, e.g. ``LayerMap.groups``."""
        for _, names in groups:
            for name in names:
                self.probe._check_name(name)
        listed = {name for _, names in groups for name in names}
        with self.hold_sync():
            self.set_trait("layers", [*self.layers, *(n for n in sorted(listed) if n not in self.layers)])
            self.set_trait("layer_groups", [{"label": kind, "layers": list(names)} for kind, names in groups])

    def set_input(self, inputs: Any) -> None:
        """Show another input batch. On error nothing changes."""
        capture = self._run(self.layer, inputs)
        self._inputs = inputs
        self._show(capture, self.layer)

    # -- the one forward pass per input --------------------------------------------------------

    # Whether _show reads the model's output; without it a forward pass stops at the layer shown.
    uses_output = False

    def _run(self, layer: str, inputs: Any) -> Capture:
        self._check_inputs(inputs)
        return self.probe.run(inputs, [layer], output=self.uses_output)

    def _check_inputs(self, inputs: Any) -> None:
        batch_size(inputs)

    def _show(self, capture: Capture, layer: str) -> None:
        """Publish a capture; subclasses extend this to publish what they derive from it."""
        acts = capture[layer]
        values = to_numpy(acts.values.float())
        with self.hold_sync():
            units = values.shape[2]
            kept = [u for u in self.selected_units if u < units]
            if kept != self.selected_units:
                self.selected_units = kept
            if self.position >= values.shape[1]:
                self.position = -1
            if self.example >= values.shape[0]:
                self.example = 0
            self.set_trait("positions_shape", list(acts.positions_shape))
            self.set_trait("values", values)

    # -- traits --------------------------------------------------------------------------------

    @traitlets.validate("layer")
    def _valid_layer(self, proposal: dict) -> str:
        return self.probe._check_name(proposal["value"])

    @traitlets.observe("layer")
    def _layer_changed(self, change: dict) -> None:
        if self.values is None:  # during __init__
            return
        with self.reporting_errors(f"showing layer {change['new']!r}"):
            self._show(self._run(change["new"], self._inputs), change["new"])

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

    @traitlets.validate("position")
    def _valid_position(self, proposal: dict) -> int:
        position = proposal["value"]
        if self.values is not None and not -1 <= position < self.num_positions:
            raise traitlets.TraitError(
                f"position {position} does not exist: layer {self.layer!r} has positions "
                f"0…{self.num_positions - 1} (or -1 for none)"
            )
        return position

    @traitlets.validate("example")
    def _valid_example(self, proposal: dict) -> int:
        example = proposal["value"]
        if self.values is not None and not 0 <= example < self.values.shape[0]:
            raise traitlets.TraitError(f"example {example} does not exist: the input has {self.values.shape[0]}")
        return example

    @property
    def colour_limit(self) -> float:
        """The limit of the one colour scale every panel draws activations on (symmetric around 0), as
        the page computes it (js/lib/store.ts, ``colourLimit``): the ``COLOUR_QUANTILE``-th (the lower
        one) of the units' largest finite |value| over what the scale spans, among the units where it
        is not 0; 1 when there is none."""
        values = np.concatenate([part.reshape(-1, self.num_units) for part in self._scaled_values()])
        largest = np.where(np.isfinite(values), np.abs(values), 0).max(axis=0, initial=0)
        active = np.sort(largest[largest > 0])
        return float(active[int(COLOUR_QUANTILE * (active.size - 1))]) if active.size else 1.0

    def _scaled_values(self) -> list[np.ndarray]:
        """What the colour scale spans: the real positions (not padding) of each current input."""
        lengths = self.lengths or [self.num_positions] * self.values.shape[0]
        return [self.values[example, :length] for example, length in enumerate(lengths)]

    def unit_values(self, unit: int) -> np.ndarray:
        """The (N, positions) activations of one unit on the current inputs."""
        return self.values[:, :, unit]
