"""explore(): one widget composing the views that fit the input, linked through one shared state.

The explorer is a single widget whose model carries the state of every view it shows (a class that
inherits from each view), so the selection of units, the position and the current input are the same
traits for all of them: linked in the browser with no message in between, and one forward pass per
input in the kernel. Its ``panels`` say which of those views the page mounts (js/explorer.ts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import traitlets
from torch import nn

from ..core import Capture, Probe
from ..core.images import ImageAdapter
from ..core.layers import default_layer
from ..core.scan import ScanResult
from ..core.scan import scan as run_scan
from ..core.text import TextAdapter
from .activation_trace import ActivationTrace
from .base import as_probe, bundle
from .image_overlay import ImageOverlay
from .neuron_grid import NeuronGrid
from .token_heatmap import TokenHeatmap
from .token_units import TokenUnitsPanel
from .top_examples import FeatureCard

# Panels any explorer may show besides its own (``explore(panels=[..., name])``): they read only the
# shared state, so they need no Python of their own (js/explorer.ts mounts them from its registry).
SHARED_PANELS = ("strongest_units",)


class Explorer(traitlets.HasTraits):
    """What every explorer adds to the views it composes: ``panels``, the panels shown, in order (of
    the class's ``PANELS`` and ``SHARED_PANELS``; the page mounts each from its registry,
    js/explorer.ts); ``collapsed``, the folded ones; and a scan attached for the card also gives the
    grid its per-unit statistics to colour by (see :meth:`NeuronGrid.attach_stats`)."""

    PANELS: tuple[str, ...] = ()
    panels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    collapsed = traitlets.List(traitlets.Unicode()).tag(sync=True)

    @traitlets.default("panels")
    def _all_panels(self) -> list[str]:
        return list(self.PANELS)

    @traitlets.validate("panels", "collapsed")
    def _valid_panels(self, proposal: dict) -> list[str]:
        names = (*self.PANELS, *SHARED_PANELS) if proposal["trait"].name == "panels" else self.panels
        bad = [name for name in proposal["value"] if name not in names]
        if bad:
            raise traitlets.TraitError(f"no panel named {bad[0]!r}; this explorer's panels: {', '.join(names)}")
        return list(dict.fromkeys(proposal["value"]))

    def attach_scan(self, scan: ScanResult, data: Any, **kwargs: Any) -> None:
        super().attach_scan(scan, data, **kwargs)
        self.attach_stats(scan)


class ImageExplorer(Explorer, ImageOverlay, FeatureCard, ActivationTrace, NeuronGrid):
    """Grid, image overlay with drag-to-probe, traces and the feature card, on one image batch."""

    _esm = bundle("explorer")
    PANELS = ("grid", "overlay", "trace", "card")

    def _example_input(self, index: int) -> Any:
        return self.examples.get(index).unsqueeze(0)


class TextExplorer(Explorer, TokenUnitsPanel, TokenHeatmap, FeatureCard, ActivationTrace, NeuronGrid):
    """Grid, editable token heatmap, the top units at the clicked token, traces over tokens and the
    feature card, on a few texts."""

    _esm = bundle("explorer")
    PANELS = ("grid", "heatmap", "token_units", "trace", "card")

    def _example_input(self, index: int) -> Any:
        return [self.examples.get(index)]

    def set_texts(self, texts: str | Sequence[str]) -> None:
        super().set_texts(texts)
        self.current_index = -1

    def _show(self, capture: Capture, layer: str) -> None:
        with self.hold_sync():
            super()._show(capture, layer)
            # Traces label their x axis with the tokens; a shorter text's padded positions get "".
            self.set_trait("position_labels", [row + [""] * (self.num_positions - len(row)) for row in self.tokens])


class TensorExplorer(Explorer, FeatureCard, ActivationTrace, NeuronGrid):
    """Grid, traces and the feature card for inputs that are neither images nor text."""

    _esm = bundle("explorer")
    PANELS = ("grid", "trace", "card")


def explore(
    model: nn.Module | Probe,
    inputs: Any,
    data: Any = None,
    layer: str | None = None,
    scan: ScanResult | None = None,
    *,
    tokenizer: Any = None,
    max_length: int = 128,
    images: ImageAdapter | None = None,
    class_names: Sequence[str] | None = None,
    k: int = 16,
    compact: bool = False,
    **kwargs: Any,
) -> ImageExplorer | TextExplorer | TensorExplorer:
    """Explore ``model`` on ``inputs`` with every view that fits them, linked.

    - ``inputs``: a string or a list of strings (text: give ``tokenizer``), an (N, C, H, W) image
      tensor, or any other model input batch.
    - ``layer``: a ``named_modules()`` path (``"<path>:input"`` for a module's input); default: the
      first scanned layer, else one chosen from a traced forward pass (:func:`default_layer`): a middle
      block's MLP neurons for text (never the unembedding), the last spatial layer for images. The
      layer picker groups layers by kind (MLP neurons, attention output, residual stream), blocks in order.
    - ``data``: a dataset to find what drives each unit. Without ``scan`` it is scanned now (k
      examples a unit, cached on disk); with ``scan`` (for example from ``nw.load_scan``) it is
      only used to show the examples the scan found.
    - ``panels``: which panels to show, in order (default: all that fit the input: ``grid``, the input
      as ``overlay`` for images or ``heatmap`` for text, ``trace``, ``card``); the first carries the
      layer picker.
    - ``compact``: fold the trace and the feature card at first (each panel folds and unfolds by its
      title), for short output areas such as marimo's; the same as ``collapsed=["trace", "card"]``.
    With neither ``data`` nor ``scan``, the live views work alone.
    """
    if compact:
        kwargs.setdefault("collapsed", [p for p in ("trace", "card") if p in kwargs.get("panels", ("trace", "card"))])
    probe = as_probe(model)
    is_text = isinstance(inputs, str) or (
        isinstance(inputs, Sequence) and len(inputs) > 0 and all(isinstance(t, str) for t in inputs)
    )
    if is_text and tokenizer is None:
        raise ValueError("text inputs need a tokenizer: explore(model, texts, tokenizer=...)")
    text = None
    if is_text:
        text = tokenizer if isinstance(tokenizer, TextAdapter) else TextAdapter(tokenizer, max_length)
    model_inputs = text(inputs) if is_text else inputs
    modality = "text" if is_text else "image" if _is_image_batch(inputs) else "tensor"
    chosen, layer_map = default_layer(probe, model_inputs, modality)  # one traced forward pass
    if layer is None:
        layer = scan.layers[0] if scan is not None else chosen
    if data is not None and scan is None:
        scan = run_scan(probe, data, [layer], k=k, adapter=text)

    if is_text:
        view = TextExplorer(probe, layer, inputs, text, **kwargs)
    elif modality == "image":
        view = ImageExplorer(probe, layer, inputs, adapter=images, class_names=class_names, **kwargs)
    else:
        view = TensorExplorer(probe, layer, inputs, **kwargs)
    view.set_layer_groups(layer_map.groups)
    if scan is not None and data is not None:
        view.attach_scan(scan, data, text=text, images=images)
    else:
        if scan is not None:
            view.attach_stats(scan)  # no data to show examples from, but the grid can use the statistics
        view._update_card()
    if not view.selected_units and view.num_units:
        view.selected_units = [int(view.values[view.example].max(axis=0).argmax())]
    return view


def _is_image_batch(inputs: Any) -> bool:
    return isinstance(inputs, torch.Tensor) and inputs.ndim == 4 and inputs.shape[1] in (1, 3, 4)
