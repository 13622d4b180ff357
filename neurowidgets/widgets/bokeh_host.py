"""BokehHost: a bokeh figure inside an anywidget, with BokehJS from the installed ``bokeh`` package.

No ``output_notebook()`` and no CDN: the front-end (js/bokeh_host.ts) injects the BokehJS bundle of
the Python ``bokeh`` package (same version) once per page, then embeds the figure's JSON item.
BokehJS travels once per kernel, in one shared hidden widget that every host refers to.

After the figure is embedded, it changes only through :meth:`BokehHost.update`: new property values
(a source's columns as binary arrays, a range's factors, a title's text) are set on the drawn models in
place, so the page never rebuilds a plot to show a new selection.

Selections go kernel → page (``selections``: what the plot shows selected). A tap goes page → kernel as
a "tap" request carrying what was chosen (the values of a key column at the tapped rows: a layer name, a
unit id), never as a state write the kernel would diff against its previous value: some hosts replay
state writes (marimo applies each twice), and a request answered twice chooses the same thing twice.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import anywidget
import bokeh
import numpy as np
import traitlets
from bokeh.embed import json_item
from bokeh.model import Model
from ipywidgets import widget_serialization
from ipywidgets.widgets.widget import _remove_buffers

from .base import NeuroWidget, bundle, handles
from .wire import encode

_BOKEHJS_PATH = pathlib.Path(bokeh.__file__).resolve().parent / "server" / "static" / "js" / "bokeh.min.js"


def bokehjs_source() -> str:
    """The text of ``bokeh.min.js`` shipped inside the installed Python ``bokeh`` package."""
    if not _BOKEHJS_PATH.exists():
        raise FileNotFoundError(f"BokehJS is missing from the installed bokeh package: {_BOKEHJS_PATH}")
    return _BOKEHJS_PATH.read_text(encoding="utf-8")


class BokehJS(anywidget.AnyWidget):
    """Never displayed: carries BokehJS to the page once for every :class:`BokehHost` of the kernel."""

    _esm = "export default {};"
    source = traitlets.Unicode("").tag(sync=True)
    version = traitlets.Unicode("").tag(sync=True)


_shared: BokehJS | None = None


def shared_bokehjs() -> BokehJS:
    """The kernel's one :class:`BokehJS` widget (made again if it was closed)."""
    global _shared
    if _shared is None or _shared.comm is None:
        _shared = BokehJS(source=bokehjs_source(), version=bokeh.__version__)
    return _shared


def _patch_to_json(patches: dict, widget: Any) -> dict:
    """Arrays inside patches (a source's columns) travel as binary buffers, like every array."""

    def pack(value: Any) -> Any:
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "OUS":
                return value.tolist()
            return encode(value, "float32" if value.dtype.kind == "f" else "auto")
        if isinstance(value, dict):
            return {k: pack(v) for k, v in value.items()}
        return value

    return pack(patches)


REVISION = "__revision__"


class BokehHost(NeuroWidget):
    """Shows ``figure`` (any bokeh layout/model).

    - ``selectable``: the names of the ColumnDataSources whose taps reach the kernel, or a mapping of
      each name to its key column, whose value at a tapped row says what was chosen (sent in place of
      the row index, which means another thing once the kernel has redrawn the source).
    - ``selections``: source name → the indices the plot shows selected (set with :meth:`select`).
    - A tap calls :meth:`_on_tap` with what it chose.
    - :meth:`update` changes properties of the shown models in place.
    """

    _esm = bundle("bokeh_host")

    # The figure's JSON item as text: BokehJS needs each model defined before it is referenced, an
    # order that a saved notebook's widget state (written with sorted keys) would not keep.
    item = traitlets.Unicode("").tag(sync=True)
    patches = traitlets.Dict().tag(sync=True, to_json=_patch_to_json)
    selections = traitlets.Dict(value_trait=traitlets.List(traitlets.Int())).tag(sync=True)
    _tap_keys = traitlets.Dict(value_trait=traitlets.Unicode()).tag(sync=True)  # source → key column, "": row index
    _bokehjs = traitlets.Instance(BokehJS).tag(sync=True, **widget_serialization)

    def __init__(self, figure: Model | None = None, selectable: Sequence[str] | Mapping[str, str] = (), **kwargs: Any):
        keys = dict(selectable) if isinstance(selectable, Mapping) else dict.fromkeys(selectable, "")
        super().__init__(_bokehjs=shared_bokehjs(), _tap_keys=keys, **kwargs)
        self._selectable = tuple(keys)
        if figure is not None:
            self.show(figure)

    def show(self, figure: Model) -> None:
        """Replace the embedded figure (a full redraw: use :meth:`update` for changes)."""
        self.figure = figure
        with self.hold_sync():
            self.patches = {}
            self.selections = {name: [] for name in self._selectable}
            self.item = json.dumps(json_item(figure))

    def update(self, model: Model, **properties: Any) -> None:
        """Set ``properties`` on ``model`` here (so the Python figure stays the truth, e.g. for a
        report) and on the drawn model in the page, in place.

        Only the change travels, as a "patch" message (arrays as binary buffers); the page merges it
        into its copy of ``patches``, which a saved notebook keeps. ``patches`` here holds every
        model's latest properties, for a page that connects later."""
        for name, value in properties.items():
            setattr(model, name, value)
        self._revision += 1  # the page sets only entries it has not set yet
        change = {**properties, REVISION: self._revision}
        self._patching = True
        try:
            self.patches = {**self.patches, model.id: {**self.patches.get(model.id, {}), **change}}
        finally:
            self._patching = False
        if self.comm is not None:
            delta, paths, buffers = _remove_buffers(_patch_to_json({model.id: change}, self))
            self.send({"type": "patch", "patches": delta, "buffer_paths": paths}, buffers)

    _revision = 0
    _patching = False

    @handles("sync_patches")
    def _sync_patches(self) -> None:
        """The page's model asks for every patch: those sent before it was ready were lost."""
        self.send_state("patches")

    def set_state(self, sync_data: dict) -> None:
        # The page merges the patch messages into its copy of ``patches`` (for a saved notebook), and
        # uploads that copy with its next change; the kernel's own is the truth: ignore it. Taps arrive
        # as requests: a ``selections`` written by the page (a replayed or restored state) is ignored too.
        sync_data = {name: value for name, value in sync_data.items() if name not in ("patches", "selections")}
        if sync_data:
            super().set_state(sync_data)

    def _should_send_property(self, key: str, value: Any) -> bool:
        # While update() records a change, the whole ``patches`` is not sent: the change alone is.
        if key == "patches" and self._patching:
            return False
        return super()._should_send_property(key, value)

    def select(self, source: str, indices: list[int]) -> None:
        """Show ``indices`` of the selectable source named ``source`` selected in the page (a view showing
        its own state: a selection is never an action, taps are, see :meth:`_tap`)."""
        if source not in self._selectable:
            raise KeyError(f"{source!r} is not a selectable source here; selectable: {list(self._selectable)}")
        self.selections = {**self.selections, source: [int(i) for i in indices]}

    def selected(self, source: str) -> list[int]:
        return list(self.selections.get(source, []))

    @handles("tap")
    def _tap(self, chosen: dict[str, list]) -> None:
        """A tap in the page (js/bokeh_host.ts): ``chosen`` maps each source whose selection the tap
        changed to what it selects now: its key column's values at the tapped rows (row indices for a
        source without one); a tap on empty space chose nothing (an empty list)."""
        if not isinstance(chosen, dict) or not all(isinstance(v, list) for v in chosen.values()):
            raise TypeError(f"a tap maps source names to lists of what was chosen, got {chosen!r}")
        unknown = sorted(set(chosen) - set(self._selectable))
        if unknown:
            raise ValueError(f"no selectable source named {unknown}; selectable: {list(self._selectable)}")
        self._on_tap(chosen)

    def _on_tap(self, chosen: dict[str, list]) -> None:
        """Subclasses with selectable sources: act on what the user tapped (see :meth:`_tap`); acting
        twice on the same tap must change nothing more."""
        raise NotImplementedError(f"{type(self).__name__} has selectable sources but does not act on taps")

    @traitlets.validate("selections")
    def _valid_selections(self, proposal: dict) -> dict:
        unknown = sorted(set(proposal["value"]) - set(getattr(self, "_selectable", ())))
        if unknown:
            raise traitlets.TraitError(f"no selectable source named {unknown}; selectable: {list(self._selectable)}")
        return proposal["value"]
