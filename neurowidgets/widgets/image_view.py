"""ImageView: a LayerView whose inputs are images, with an occluding patch as the what-if edit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..core import Capture, ModelCallError, Probe
from ..core.images import ImageAdapter, clip_rect, occlude
from ..core.inputs import first_tensor
from ..core.threads import measured_threads, torch_threads
from .base import handles
from .layer_view import LayerView
from .wire import ARRAY, to_numpy

TOP_K = 5


class ImageView(LayerView):
    """One layer of a model on an (N, C, H, W) batch of images it takes.

    ``adapter``: how the tensors map to display pixels (default ``ImageAdapter()``: values in [0, 1]);
    ``class_names``: labels of the model's output classes, for the prediction (default: indices).

    Occluding a rectangular patch of the current example (dragging on the image, or ``patch``) re-runs
    the model once on the occluded image and updates ``values`` for that example and ``prediction``;
    ``baseline`` keeps the unedited activations to compare with.

    Synced state besides :class:`LayerView`'s:
    - ``pixels``: (N, H, W, 4) uint8 RGBA of the unedited images;
    - ``patch``: ``[top, left, bottom, right]`` in image pixels (clipped to the image), or ``[]``;
    - ``fill``: the value the patch is set to, in the model's input space (a number, or one per
      channel); ``fill_colour`` is how it looks (RGBA);
    - ``baseline``: (positions, units) activations of the current example without the patch;
    - ``prediction``: softmax of the model's output for the current example, with and without the
      patch: ``label``, ``index``, ``probability``, ``original_label``, ``original_index``,
      ``original_probability``, ``original_now`` (the original class's probability with the patch),
      ``patched`` and ``top`` (the top classes with the patch, each with ``index``, ``label``,
      ``probability``, ``original_probability``). Empty when the output is not (batch, classes).
    """

    pixels = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **ARRAY)
    patch = traitlets.List().tag(sync=True)
    fill = traitlets.Union([traitlets.Float(), traitlets.List(traitlets.Float())], default_value=0.0).tag(sync=True)
    fill_colour = traitlets.List(traitlets.Int(), read_only=True).tag(sync=True)
    baseline = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **ARRAY)
    prediction = traitlets.Dict(read_only=True).tag(sync=True)
    # Torch intra-op threads for the one-image forward pass of each move of the patch (kernel side,
    # not synced). On one small image threads rarely help, and while the browser repaints on the
    # same cores each parallel region can wait a scheduler time slice: on the digits CNN on 2 busy
    # cores, 0.9 ms with one thread against 29 ms with two. None: time both on the first move and
    # keep one thread unless it is clearly slower.
    move_threads = traitlets.Int(None, allow_none=True, min=1)

    uses_output = True  # the prediction

    def __init__(
        self,
        model: nn.Module | Probe,
        layer: str,
        images: torch.Tensor,
        adapter: ImageAdapter | None = None,
        class_names: list[str] | None = None,
        **kwargs: Any,
    ):
        self.adapter = adapter if adapter is not None else ImageAdapter()
        if not isinstance(self.adapter, ImageAdapter):
            raise TypeError(f"adapter must be a neurowidgets ImageAdapter, got {type(self.adapter).__name__}")
        self.class_names = None if class_names is None else [str(name) for name in class_names]
        self._original: np.ndarray | None = None  # (N, positions, units) without the patch
        self._original_probs: np.ndarray | None = None  # (N, classes), or None
        self._pixels_of: Any = None  # the images `pixels` was made from
        self._generation = 0  # counts captures shown, so the baseline is sent once per capture and example
        self._baseline_of: tuple[int, int] | None = None
        self._chosen_threads: int | None = None  # move_threads=None: what the first move measured
        super().__init__(model, layer, images, **kwargs)

    # -- public --------------------------------------------------------------------------------

    @property
    def images(self) -> torch.Tensor:
        return self._inputs

    def occluded_image(self) -> torch.Tensor:
        """The current example as the model sees it now: (1, C, H, W), with the patch applied."""
        return self._occluded(self.example)

    def _occluded(self, example: int) -> torch.Tensor:
        image = self._inputs[example : example + 1]
        return occlude(image, self.patch, self.fill) if self.patch else image

    def clear_patch(self) -> None:
        self.patch = []

    def set_input(self, inputs: torch.Tensor) -> None:
        """Show other images. On error nothing changes."""
        try:
            super().set_input(inputs)
        except ModelCallError as error:
            shape = tuple(self._inputs.shape[1:])
            new = tuple(inputs.shape[1:]) if isinstance(inputs, torch.Tensor) else "?"
            raise ModelCallError(
                f"{error}. This view's images, which the model takes, are (channels, height, width) "
                f"= {shape}; the new images are {new}"
            ) from error

    def example_input(self, index: int) -> torch.Tensor:
        return self.examples.get(index).unsqueeze(0)

    def original_probabilities(self) -> np.ndarray | None:
        """(N, classes) softmax of the model's output on the unedited images; None for another output."""
        return self._original_probs

    # -- the forward passes --------------------------------------------------------------------

    def _prepare(self, inputs: Any) -> Any:
        self.adapter.check(inputs)
        return super()._prepare(inputs)

    def _run(self, layer: str, inputs: Any) -> Capture:
        capture = super()._run(layer, inputs)
        probs = _probabilities(capture.output)
        if self.class_names is not None and probs is not None and len(self.class_names) != probs.shape[1]:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but the model's output has {probs.shape[1]} classes"
            )
        return capture

    def _show(self, capture: Capture, layer: str) -> None:
        with self._publishing():
            self.set_trait("positions_shape", list(capture[layer].positions_shape))
            self._original = to_numpy(capture[layer].values.float())
            self._generation += 1
            self._original_probs = _probabilities(capture.output)
            if self._pixels_of is not self._inputs:
                self.set_trait("pixels", self.adapter.to_pixels(self._inputs))
                self._pixels_of = self._inputs
                self._update_fill_colour()
                if self.patch:  # another image size: keep what is left of the patch
                    self.patch = self._clip(self.patch)
            self._publish_patched()

    def _publish_patched(self) -> None:
        """Values, baseline and prediction of the current example, with the patch if there is one.
        Computes before it sets anything: on error the old state still holds."""
        example = self.example if self.example < len(self._original) else 0  # a new batch may be smaller
        values = self._original
        before = None if self._original_probs is None else self._original_probs[example]
        after = before
        if self.patch:
            capture = self._run_moved(self._occluded(example))
            values = self._original.copy()
            values[example] = to_numpy(capture[self.layer].values.float())[0]
            probs = _probabilities(capture.output)
            after = None if probs is None else probs[0]
        with self._publishing():
            self._publish(values)
            if self._baseline_of != (self._generation, example):
                self.set_trait("baseline", self._original[example])
                self._baseline_of = (self._generation, example)
            self.set_trait("prediction", self._prediction(before, after))

    def _scaled_values(self) -> list[np.ndarray]:
        # The colour scale also spans the example without the patch, so colours stay put while it moves.
        return [*super()._scaled_values(), *([] if self.baseline is None else [self.baseline])]

    def _run_moved(self, image: torch.Tensor) -> Capture:
        """The forward pass of one move of the patch, with the intra-op threads that suit it."""
        threads = self.move_threads or self._chosen_threads
        if threads is None:
            captured = []
            run = lambda: captured.append(self.probe.run(image, [self.layer]))  # noqa: E731
            self._chosen_threads = measured_threads(run, run, self.probe.device)
            return captured[-1]
        with torch_threads(threads):
            return self.probe.run(image, [self.layer])

    def _prediction(self, before: np.ndarray | None, after: np.ndarray | None) -> dict[str, Any]:
        if before is None or after is None:
            return {}

        def name(index: int) -> str:
            return self.class_names[index] if self.class_names else str(index)

        original, now = int(np.argmax(before)), int(np.argmax(after))
        top = np.argsort(-after, kind="stable")[: min(TOP_K, len(after))]
        return {
            "label": name(now),
            "index": now,
            "probability": _number(after[now]),
            "original_label": name(original),
            "original_index": original,
            "original_probability": _number(before[original]),
            "original_now": _number(after[original]),
            "patched": bool(self.patch),
            "top": [
                {
                    "index": int(i),
                    "label": name(int(i)),
                    "probability": _number(after[i]),
                    "original_probability": _number(before[i]),
                }
                for i in top
            ],
        }

    # -- the patch -----------------------------------------------------------------------------

    def _clip(self, rect: Any) -> list[int]:
        height, width = self._inputs.shape[-2:]
        clipped = clip_rect(rect, int(height), int(width))
        return [] if clipped is None else list(clipped)

    def _update_fill_colour(self) -> None:
        channels = int(self._inputs.shape[1])
        fill = torch.as_tensor(self.fill, dtype=torch.float32).reshape(1, -1, 1, 1)
        pixel = self.adapter.to_pixels(fill.expand(1, channels, 1, 1))
        self.set_trait("fill_colour", [int(v) for v in pixel[0, 0, 0]])

    @traitlets.validate("patch")
    def _valid_patch(self, proposal: dict) -> list[int]:
        rect = list(proposal["value"])
        if not rect:
            return []
        if len(rect) != 4 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in rect):
            raise traitlets.TraitError(f"a patch is [top, left, bottom, right] in image pixels, or []; got {rect}")
        return self._clip(rect)

    @traitlets.observe("patch")
    def _patch_changed(self, change: dict) -> None:
        if self._original is None or self._quiet:
            return
        try:
            self._publish_patched()  # computes before it sets anything: on error the old state still holds
        except Exception:
            self._quiet += 1
            try:
                self.set_trait("patch", change["old"])
            finally:
                self._quiet -= 1
            raise

    @traitlets.validate("fill")
    def _valid_fill(self, proposal: dict) -> float | list[float]:
        fill = proposal["value"]
        channels = int(self._inputs.shape[1])
        if isinstance(fill, list) and len(fill) not in (1, channels):
            raise traitlets.TraitError(f"fill is one value or one per channel ({channels}); got {fill}")
        return fill

    @traitlets.observe("fill")
    def _fill_changed(self, change: dict) -> None:
        if self._original is None or self._quiet:
            return
        with self.hold_sync():
            self._update_fill_colour()
            if self.patch:
                self._publish_patched()

    @traitlets.observe("example")
    def _example_changed(self, change: dict) -> None:
        if self._original is None or self._quiet:
            return
        with self.reporting_errors(f"showing example {change['new']}"):
            self._publish_patched()

    # -- requests from the front-end -----------------------------------------------------------

    @handles("occlude")
    def _occlude(self, rect: list[float]) -> dict[str, Any]:
        """Occlude ``rect`` (image pixels, may reach outside the image) of the current example."""
        with self.hold_sync():  # one message: the patch with its values and prediction
            self.patch = list(rect)
        return {"patch": self.patch}

    @handles("clear")
    def _clear(self) -> None:
        with self.hold_sync():
            self.patch = []


def _probabilities(output: Any) -> np.ndarray | None:
    """Softmax over classes of a (batch, classes) output; None for any other output."""
    logits = first_tensor(output)
    if logits is None or logits.ndim != 2 or not logits.is_floating_point():
        return None
    return torch.softmax(logits.detach().float(), dim=1).cpu().numpy()


def _number(value: Any) -> float | None:
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None
