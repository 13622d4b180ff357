"""explore(): one widget composing the panels that fit the input, linked through one shared state.

An explorer is a view of the input's kind (:class:`LayerView` for tensors, :class:`TextView`,
:class:`ImageView`) composed with the panels that fit it (``LayerView.composed``): the selection of
units, the position and the current input are the same traits for all of them, linked in the browser
with no message in between, and one forward pass per input in the kernel. Its ``panels`` say which of
them the page mounts, in order (js/explorer.ts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..core import Probe
from ..core.images import ImageAdapter
from ..core.layers import default_layer
from ..core.scan import ScanResult
from ..core.scan import scan as run_scan
from ..core.text import TextAdapter
from .activation_trace import TracePanel
from .base import as_probe, bundle
from .image_overlay import OverlayPanel
from .image_view import ImageView
from .layer_view import LayerView
from .neuron_grid import GridPanel
from .text_view import TextView
from .token_heatmap import HeatmapPanel
from .token_units import TokenUnitsPanel
from .top_examples import CardPanel


class ImageExplorer(ImageView.composed(GridPanel, OverlayPanel, TracePanel, CardPanel)):
    """Grid, image overlay with drag-to-probe, traces and the feature card, on one image batch."""

    _esm = bundle("explorer")


class TextExplorer(TextView.composed(GridPanel, HeatmapPanel, TokenUnitsPanel, TracePanel, CardPanel)):
    """Grid, editable token heatmap, the top units at the clicked token, traces over tokens and the
    feature card, on a few texts."""

    _esm = bundle("explorer")


class TensorExplorer(LayerView.composed(GridPanel, TracePanel, CardPanel)):
    """Grid, traces and the feature card for inputs that are neither images nor text."""

    _esm = bundle("explorer")


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
    if scan is not None:  # without data, no examples to show, but the grid can use the statistics
        view.attach_scan(scan, data, text=text, images=images)
    if not view.selected_units and view.num_units:
        view.selected_units = [int(view.values[view.example].max(axis=0).argmax())]
    return view


def _is_image_batch(inputs: Any) -> bool:
    return isinstance(inputs, torch.Tensor) and inputs.ndim == 4 and inputs.shape[1] in (1, 3, 4)
