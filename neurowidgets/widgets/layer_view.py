"""LayerView: the live state every activation panel shares, computed once per input in the kernel.

A LayerView is one widget: one layer of a model on a batch of inputs, the state its panels share
(selection, position, example, the current input, the attached scan) and the panels it is composed of
(``LayerView.composed(GridPanel, CardPanel, ...)``, see panel.py). Selection, position and input are
linked across panels because they are the same traits of one model. Trait names are the schema the
page's panels read (js/lib/layer_state.ts). The kind of input is the view's class: tensors here, texts
in :class:`TextView`, images in :class:`ImageView`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import traitlets
from torch import nn

from ..core import Capture, Probe
from ..core.examples import Examples
from ..core.images import ImageAdapter
from ..core.inputs import batch_size
from ..core.scan import ScanResult, check_scan
from ..core.text import TextAdapter, scanned_adapter
from .base import NeuroWidget, as_probe, handlers_of, log
from .panel import Panel
from .wire import ARRAY, to_numpy

# The colour scale's limit is this percentile of the units' largest values (see js/lib/store.ts).
COLOUR_QUANTILE = 0.99
# Panels any view may list in ``panels`` besides its own: they read only the shared state, so they
# have no Python of their own (js/explorer.ts mounts them from its registry).
SHARED_PANELS = ("strongest_units",)


class LayerView(NeuroWidget):
    """One layer of ``model`` on a batch of ``inputs`` (N ≥ 1 examples), shown by its panels.

    Synced state:
    - ``layer`` (one of ``layers``), ``values`` (N, positions, units) as a binary buffer,
      ``positions_shape`` (``[]``, ``[T]`` or ``[H, W]``), ``lengths`` (real positions per example);
    - ``example``: which of the N inputs single-input panels show; ``current_index``: which example
      of the attached data it is (-1: an input given directly);
    - ``selected_units`` (list of unit indices) and ``position`` (a flat position index, or -1);
    - ``panels``: the panels the page shows, in order; ``collapsed``: the folded ones;
    - each panel's own state (``PANELS``' ``state``).
    """

    PANELS: tuple[type[Panel], ...] = ()

    layer = traitlets.Unicode("").tag(sync=True)
    layers = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    # The picker's groups, [{"label": kind, "layers": [...]}, ...] (see core/layers.py); empty: ``layers`` as listed.
    layer_groups = traitlets.List(traitlets.Dict(), read_only=True).tag(sync=True)
    values = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **ARRAY)
    positions_shape = traitlets.List(traitlets.Int(), read_only=True).tag(sync=True)
    example = traitlets.Int(0).tag(sync=True)
    current_index = traitlets.Int(-1).tag(sync=True)
    selected_units = traitlets.List(traitlets.Int()).tag(sync=True)
    position = traitlets.Int(-1).tag(sync=True)
    # Valid positions per example when a batch is padded on the right (texts); empty: all are valid.
    lengths = traitlets.List(traitlets.Int(), read_only=True).tag(sync=True)
    panels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    collapsed = traitlets.List(traitlets.Unicode()).tag(sync=True)

    scan: ScanResult | None = None
    examples: Examples | None = None
    # Whether _show reads the model's output; without it a forward pass stops at the layer shown.
    uses_output = False

    @classmethod
    def composed(cls, *panels: type[Panel]) -> type[LayerView]:
        """This view with ``panels``: a subclass carrying each panel's state traits (fresh copies)."""
        names: dict[str, str] = {}
        kinds = {kind: cls.__name__ for kind in handlers_of(cls)}
        for panel in cls.PANELS:
            kinds.update((kind, f"panel {panel.name!r}") for kind in handlers_of(panel))
        namespace: dict[str, Any] = {"PANELS": (*cls.PANELS, *panels), "__module__": cls.__module__}
        for panel in panels:
            for kind in handlers_of(panel):  # one handler a request: a second would silently win
                if kind in kinds:
                    raise TypeError(f"panel {panel.name!r} handles request {kind!r}, which {kinds[kind]} handles")
                kinds[kind] = f"panel {panel.name!r}"
            for name, trait in panel.state.items():
                if name in names or cls.class_traits().get(name) is not None:
                    owner = names.get(name, cls.__name__)
                    raise TypeError(f"panel {panel.name!r} declares {name!r}, which {owner} already has")
                names[name] = f"panel {panel.name!r}"
                namespace[name] = copy.copy(trait)  # a trait is bound to one class: each view gets its own
                namespace[name].metadata = dict(trait.metadata)
        title = "+".join(panel.name for panel in panels)
        return type(cls)(f"{cls.__name__}[{title}]", (cls,), namespace)

    def __init__(self, model: nn.Module | Probe, layer: str, inputs: Any, **kwargs: Any):
        self.probe = as_probe(model)
        self.probe._check_name(layer)
        self._quiet = 0  # > 0 while a capture is published: panels' observers wait for one update
        self.parts = [panel(self) for panel in self.PANELS]
        for part in self.parts:
            self._wire(part)
        inputs = self._prepare(inputs)
        capture = self._run(layer, inputs)  # before any trait is set: a bad input raises, nothing shown
        self._inputs = inputs
        super().__init__(layer=layer, **kwargs)
        for part in self.parts:
            self._handlers.update((kind, getattr(part, name)) for kind, name in handlers_of(type(part)).items())
        names = self.probe.layer_names
        self.set_trait("layers", names if layer in names else [*names, layer])
        self._show(capture, layer)

    def _wire(self, part: Panel) -> None:
        """Register the panel's validators and its ``reads`` observer on this view."""
        for name in dir(type(part)):
            fields = getattr(getattr(type(part), name), "_validates", None)
            if fields:
                method = getattr(part, name)
                self._register_validator(lambda _, proposal, method=method: method(proposal), fields)
        if part.reads:
            self.observe(lambda change, part=part: self._quiet or self._update(part), list(part.reads))

    def _update(self, part: Panel) -> None:
        with self.reporting_errors(part.action):
            part.update()

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

    @property
    def num_examples(self) -> int:
        return int(self.values.shape[0])

    @property
    def tokenizer(self) -> Any:
        """The tokenizer of a text view's inputs; None for other inputs."""
        return None

    class_names: list[str] | None = None  # names of the model's output classes (an image view's)

    def part(self, panel: type[Panel]) -> Panel:
        """This view's instance of ``panel``."""
        for part in self.parts:
            if isinstance(part, panel):
                return part
        raise KeyError(f"{type(self).__name__} has no {panel.__name__}; its panels: {[p.name for p in self.parts]}")

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
        inputs = self._prepare(inputs)
        self._accept(inputs, self._run(self.layer, inputs))

    def _accept(self, inputs: Any, capture: Capture) -> None:
        """Make ``inputs``, whose capture succeeded, the current input."""
        self._inputs = inputs
        with self.hold_sync():
            self._show(capture, self.layer)
            self.current_index = -1

    def show_example(self, index: int) -> None:
        """Make example ``index`` of the attached data the current input."""
        if self.examples is None:
            raise ValueError("no data attached: explore(..., data=...) or attach_scan(scan, data)")
        self.set_input(self.example_input(int(index)))
        self.current_index = int(index)

    def example_input(self, index: int) -> Any:
        """What :meth:`set_input` takes for example ``index`` of the attached data."""
        return self.examples.batch([index])

    def attach_scan(
        self,
        scan: ScanResult,
        data: Any = None,
        tokenizer: Any = None,
        text: TextAdapter | None = None,
        images: ImageAdapter | None = None,
    ) -> None:
        """Use ``scan`` (per-unit statistics: the grid's colours) and, with ``data`` (indexed as the
        scan numbered it), its examples (the feature card). ``text``/``tokenizer``: how the scan
        tokenized text data (its recorded settings win); ``images``: how to draw image data."""
        self._check_scan(scan)
        examples = None
        if data is not None:
            text = scanned_adapter(scan.info, text if text is not None else tokenizer)
            examples = Examples(data, text=text, images=images, start_index=scan.start_index)
        self.scan, self.examples = scan, examples
        self._update_parts()

    def attach_stats(self, scan: ScanResult | None) -> None:
        """Colour by ``scan``'s per-unit statistics, without examples (``None`` forgets the scan)."""
        if scan is not None:
            self._check_scan(scan)
        self.scan, self.examples = scan, None
        self._update_parts()

    def _check_scan(self, scan: ScanResult) -> None:
        check_scan(scan)
        if self.layer in scan and scan[self.layer].units != self.num_units:
            raise ValueError(
                f"the scan of layer {self.layer!r} has {scan[self.layer].units} units but the layer "
                f"has {self.num_units} here: a scan of another model?"
            )

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

    def unit_values(self, unit: int) -> np.ndarray:
        """The (N, positions) activations of one unit on the current inputs."""
        return self.values[:, :, unit]

    def position_names(self) -> list[list[str]]:
        """A name for each position of each example (a text's tokens); [] when positions are indices."""
        return []

    # -- the one forward pass per input --------------------------------------------------------

    def _prepare(self, inputs: Any) -> Any:
        """The model inputs of what :meth:`set_input` was given (a text view tokenizes); checks them."""
        batch_size(inputs)
        return inputs

    def _run(self, layer: str, inputs: Any) -> Capture:
        return self.probe.run(inputs, [layer], output=self.uses_output)

    def _show(self, capture: Capture, layer: str) -> None:
        """Publish a capture (the input kind extends this with what it derives from it)."""
        self._publish(to_numpy(capture[layer].values.float()), capture[layer].positions_shape)

    def _publish(self, values: np.ndarray, positions_shape: Sequence[int] | None = None) -> None:
        """Set ``values`` (and what depends on their shape), then update every panel once."""
        with self._publishing():
            units = values.shape[2]
            kept = [u for u in self.selected_units if u < units]
            if kept != self.selected_units:
                self.selected_units = kept
            if self.example >= values.shape[0]:
                self.example = 0
            if self.position >= (self.lengths[self.example] if self.lengths else values.shape[1]):
                self.position = -1  # gone, or a padded position of that row
            if positions_shape is not None:
                self.set_trait("positions_shape", list(positions_shape))
            self.set_trait("values", values)

    @contextlib.contextmanager
    def _publishing(self) -> Iterator[None]:
        """Set shared state in one message while panels' observers wait; then each panel updates once."""
        with self.hold_sync():
            self._quiet += 1
            try:
                yield
            finally:
                self._quiet -= 1
            if not self._quiet:
                self._update_parts()

    def _update_parts(self) -> None:
        """Update every panel. A panel's failure is shown in the widget (and logged), not raised, and
        the others still update; success clears nothing (what called this reports its own outcome)."""
        for part in self.parts:
            try:
                part.update()
            except Exception as error:
                log.exception("%s failed while %s", type(self).__name__, part.action)
                self._errors_reported += 1
                self.error = f"{part.action}: {type(error).__name__}: {error}"

    def _scaled_values(self) -> list[np.ndarray]:
        """What the colour scale spans: the real positions (not padding) of each current input."""
        lengths = self.lengths or [self.num_positions] * self.values.shape[0]
        return [self.values[example, :length] for example, length in enumerate(lengths)]

    # -- traits --------------------------------------------------------------------------------

    @traitlets.default("panels")
    def _all_panels(self) -> list[str]:
        return [panel.name for panel in self.PANELS]

    @traitlets.validate("panels", "collapsed")
    def _valid_panels(self, proposal: dict) -> list[str]:
        own = [panel.name for panel in self.PANELS]
        names = (*own, *SHARED_PANELS) if proposal["trait"].name == "panels" else self.panels
        bad = [name for name in proposal["value"] if name not in names]
        if bad:
            raise traitlets.TraitError(f"no panel named {bad[0]!r}; this view's panels: {', '.join(names)}")
        return list(dict.fromkeys(proposal["value"]))

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
