"""ImageOverlay: a unit's spatial activation map over the image, and drag-to-occlude what-if probing."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch
import traitlets

from ..core import Probe
from ..core.attribution import METHODS, attribute, occlusion_sweep
from . import background
from .base import bundle, handles
from .image_view import ImageView
from .panel import Panel
from .wire import FLOAT32_ARRAY


class OverlayPanel(Panel):
    """The current image of an :class:`ImageView`, scaled up crisply, with the first selected unit's
    activation map over it; dragging on it occludes a patch (the view's ``patch``).

    The map is the unit's value at each of the layer's H×W positions, drawn on a diverging scale
    centred at zero and upsampled (nearest: every image pixel takes the colour of the layer cell it
    maps to) to the image's pixels.

    - ``opacity`` of the map (0…1) and ``show``: ``"activation"``, ``"change"`` (occluded − original) or
      ``"attribution"``: how much each pixel of the current (occluded) image drives the first selected
      unit at ``position`` (all positions when -1), or with ``attribution_target="prediction"`` the logit
      of the class predicted without the patch, by ``attribution_method`` (see :func:`neurowidgets.attribute`);
    - ``attribution``: that (H, W) map, summed over the channels, float32 (None outside that mode or with
      no unit); ``attribution_info``: ``method``, ``target``, ``layer``, ``unit`` (the class for a
      prediction), ``position``, ``example``, ``seconds`` (kernel time), ``nan`` (pixels whose gradient
      is NaN), and while an occlusion sweep runs in the background ``done``/``total`` patches
      (``cancel_sweep`` stops it).
    """

    name = "overlay"
    action = "computing the attribution"
    state: ClassVar[dict[str, traitlets.TraitType]] = {
        "opacity": traitlets.Float(0.6, min=0.0, max=1.0).tag(sync=True),
        "show": traitlets.Enum(["activation", "change", "attribution"], "activation").tag(sync=True),
        "attribution_method": traitlets.Enum(list(METHODS), "integrated_gradients").tag(sync=True),
        "attribution_target": traitlets.Enum(["unit", "prediction"], "unit").tag(sync=True),
        "attribution": traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY),
        "attribution_info": traitlets.Dict(read_only=True).tag(sync=True),
    }
    # The image view also updates its panels when the example or the patch changes.
    reads = ("show", "selected_units", "position", "attribution_method", "attribution_target")

    def update(self) -> None:
        """Recompute the attribution map for what is shown now (unit, position, example, patch, method).
        Occlusion runs as a sweep in the background (progress, cancel, the latest request wins); the
        gradient methods here, in one or a few passes."""
        view = self.view
        background.cancel(view, "attribution")
        target = self._attribution_of() if view.show == "attribution" else None
        if target is None:
            with view.hold_sync():
                view.set_trait("attribution", None)
                view.set_trait("attribution_info", {})
            return
        layer, unit, position = target
        method, image = view.attribution_method, view.occluded_image()
        info = {"method": method, "target": view.attribution_target, "layer": layer, "unit": unit,
                "position": view.position, "example": view.example}  # fmt: skip
        with view.reporting_errors(f"computing the {method} attribution of {view.attribution_target} {unit}"):
            if method == "occlusion":
                self._sweep(image, target, info)
                return
            start = time.perf_counter()
            values = attribute(view.probe, image, layer, unit, method, position=position)
            self._publish_attribution(values, info, time.perf_counter() - start)

    def _attribution_of(self) -> tuple[str | None, int, int | None] | None:
        """(layer, unit, position) the map explains: the first selected unit at the selected position
        (all positions when none), or the class the model predicts for the current example without the
        patch (layer None: the output); None when there is nothing to explain."""
        view = self.view
        if view.attribution_target == "prediction":
            probs = view.original_probabilities()
            return None if probs is None else (None, int(np.argmax(probs[view.example])), None)
        if not view.selected_units:
            return None
        return view.layer, view.selected_units[0], view.position if view.position >= 0 else None

    def _occlusion_options(self) -> dict[str, int]:
        """A patch of about an eighth of the image (2 pixels at least), half a patch apart."""
        height, width = self.view.images.shape[-2:]
        size = max(2, min(int(height), int(width)) // 8)
        return {"size": size, "stride": max(1, size // 2), "batch_size": 64}

    def _sweep(self, image: torch.Tensor, target: tuple[str | None, int, int | None], info: dict[str, Any]) -> None:
        (layer, unit, position), options, view = target, self._occlusion_options(), self.view
        swept = {"done": 0, "total": None}
        view.set_trait("attribution_info", {**info, **swept})

        def work(probe: Probe):
            return (yield from occlusion_sweep(probe, image, layer, unit, position, **options))

        def progress(step: tuple[int, int], seconds: float) -> None:
            swept.update(done=step[0], total=step[1])
            view.set_trait("attribution_info", {**info, **swept, "seconds": seconds})

        background.submit(
            view, "attribution", view.probe, work,
            lambda values, seconds: self._publish_attribution(values, {**info, **swept}, seconds),
            progress, action=f"sweeping an occluding patch over the image for {info['target']} {unit}",
        )  # fmt: skip

    def _publish_attribution(self, values: torch.Tensor, info: dict[str, Any], seconds: float) -> None:
        pixels = values[0].sum(0).float().cpu().numpy()  # (C, H, W) → (H, W)
        view = self.view
        with view.hold_sync():
            view.set_trait("attribution", pixels)
            view.set_trait(
                "attribution_info", {**info, "seconds": round(seconds, 6), "nan": int(np.isnan(pixels).sum())}
            )

    @handles("cancel_sweep")
    def _cancel_sweep(self) -> None:
        """Stop the occlusion sweep; the map stays empty until something changes."""
        view = self.view
        background.cancel(view, "attribution")
        if view.attribution_info.get("total") is not None or "done" in view.attribution_info:
            view.set_trait("attribution_info", {**view.attribution_info, "cancelled": True})


class ImageOverlay(ImageView.composed(OverlayPanel)):
    """The current image with the first selected unit's activation map over it, and drag-to-occlude
    what-if probing (:class:`OverlayPanel` on an :class:`ImageView`), as a widget of its own.

    Parameters
    ----------
    model: a ``torch.nn.Module`` or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``.
    images: an (N, C, H, W) tensor the model takes; the view shows ``example`` (default 0).
    adapter: how the tensors map to display pixels (default ``ImageAdapter()``: values in [0, 1]).
    class_names: labels of the model's output classes, for the prediction readout (default: indices).
    """

    _esm = bundle("image_overlay")
