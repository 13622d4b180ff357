"""TokenHeatmap: texts as their tokens, each coloured by the selected unit's activation at that token."""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np
import traitlets

from ..core.attribution import METHODS, attribute
from .base import bundle
from .panel import Panel
from .text_view import TextView
from .wire import FLOAT32_ARRAY


class HeatmapPanel(Panel):
    """One row per text of a :class:`TextView`: its tokens, each coloured by the first selected unit's
    activation there (locally on the page: picking another unit needs no kernel round trip), with a
    text box per row whose edits re-run the model (``set_text``; the latest edit wins).

    ``show="attribution"`` colours the tokens of the current row (``example``) by how much each drives
    the first selected unit at ``position`` (at all the row's tokens when -1), by ``attribution_method``
    (see :func:`neurowidgets.attribute`: taken on the input embeddings, one value per token);
    ``attribution`` is that (tokens,) float32 array and ``attribution_info`` says ``method``, ``unit``,
    ``example``, ``position``, ``seconds`` (kernel time) and ``nan`` (tokens with a NaN gradient).
    """

    name = "heatmap"
    action = "computing the attribution"
    state: ClassVar[dict[str, traitlets.TraitType]] = {
        "show": traitlets.Enum(["activation", "attribution"], "activation").tag(sync=True),
        "attribution_method": traitlets.Enum(list(METHODS), "integrated_gradients").tag(sync=True),
        "attribution": traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY),
        "attribution_info": traitlets.Dict(read_only=True).tag(sync=True),
    }
    reads = ("show", "selected_units", "position", "example", "attribution_method")

    def update(self) -> None:
        """The current row's attributions to the selected unit, when that is what is shown."""
        view = self.view
        if view.show != "attribution" or not view.selected_units:
            with view.hold_sync():
                view.set_trait("attribution", None)
                view.set_trait("attribution_info", {})
            return
        unit, method, row = view.selected_units[0], view.attribution_method, view.example
        position = view.position if view.position >= 0 else None
        info = {"method": method, "layer": view.layer, "unit": unit, "example": row, "position": view.position}
        with view.reporting_errors(f"computing the {method} attribution of unit {unit}"):
            start = time.perf_counter()
            inputs = view.adapter([view.texts[row]])  # the row alone, unpadded: its tokens are the positions
            options = {"size": 1} if method == "occlusion" else {}
            values = attribute(view.probe, inputs, view.layer, unit, method, position=position, **options)
            tokens = values[0].float().cpu().numpy()
            with view.hold_sync():
                view.set_trait("attribution", tokens)
                seconds = round(time.perf_counter() - start, 6)
                view.set_trait("attribution_info", {**info, "seconds": seconds, "nan": int(np.isnan(tokens).sum())})


class TokenHeatmap(TextView.composed(HeatmapPanel)):
    """Texts as rows of tokens, each coloured by the selected unit's activation at that token
    (:class:`HeatmapPanel` on a :class:`TextView`), as a widget of its own.

    Parameters
    ----------
    model: a ``torch.nn.Module`` (called as ``model(**tokenizer_output)``) or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``, whose positions are the tokens.
    texts: a string or a list of strings, one row each.
    tokenizer: a Hugging Face tokenizer, or a :class:`neurowidgets.TextAdapter` (then ``max_length``
        is the adapter's).
    max_length: longer texts are truncated to this many tokens (special tokens included), and
        ``notice`` says so. Default 128.

    With no ``selected_units`` given, the unit with the strongest activation at an ordinary (not
    special) token of the texts is selected (:meth:`most_active_unit`).
    """

    _esm = bundle("token_heatmap")
