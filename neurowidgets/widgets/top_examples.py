"""TopExamples: the Neuronpedia feature card of the selected unit, computed from a scan."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..core import Probe
from ..core.examples import Examples, unit_activations
from ..core.images import ImageAdapter
from ..core.lm import top_logits
from ..core.scan import ScanResult, check_scan
from ..core.stats import ROW_INTERVALS
from ..core.text import TextAdapter
from ..core.visualize import visualize
from . import background
from .base import bundle, handles
from .layer_view import LayerView
from .wire import encode

CARD_CACHE = 32  # cards kept per widget, so that going back to a unit is instant
LOGITS_SHOWN = 8  # tokens raised and lowered shown in a text unit's card
BOTTOM_SHOWN = 4  # most negative examples shown, for a unit that takes negative values
VISUALIZE_STEPS = 256  # nw.visualize's default: a digits unit in about a second on one thread


def scanned_text(scan: ScanResult, text: TextAdapter | Any) -> TextAdapter | None:
    """The adapter that tokenizes examples as ``scan`` did: ``text`` (a tokenizer or an adapter, whose
    tokenizer options are kept) truncated to the scan's recorded ``max_length``, not the live input's."""
    if text is None:
        return None
    if not isinstance(text, TextAdapter):
        text = TextAdapter(text)
    max_length = scan.info.get("max_length", text.max_length)
    return text if max_length == text.max_length else TextAdapter(text.tokenizer, max_length, **text.tokenizer_kwargs)


class FeatureCard(LayerView):
    """The card's state and computation, for any view that composes it (see :class:`TopExamples`)."""

    card = traitlets.Dict().tag(sync=True)
    current_index = traitlets.Int(-1).tag(sync=True)
    shown = traitlets.Int(8).tag(sync=True)

    scan: ScanResult | None = None
    examples: Examples | None = None

    def attach_scan(
        self,
        scan: ScanResult,
        data: Any,
        tokenizer: Any = None,
        text: TextAdapter | None = None,
        images: ImageAdapter | None = None,
    ) -> None:
        """Use ``scan`` of ``data`` (indexed as the scan numbered it) for the card."""
        check_scan(scan)
        text = scanned_text(scan, text if text is not None else tokenizer)
        self.examples = Examples(data, text=text, images=images, start_index=scan.start_index)
        self.scan = scan
        self._cards: OrderedDict[tuple[str, int, int], dict] = OrderedDict()
        self._update_card()

    def show_example(self, index: int) -> None:
        """Make example ``index`` of the data the current input."""
        self.set_input(self._example_input(int(index)))
        self.current_index = int(index)

    def _example_input(self, index: int) -> Any:
        """What :meth:`set_input` takes for one example (model inputs; a text view takes the text)."""
        return self.examples.batch([index])

    def set_input(self, inputs: Any) -> None:
        super().set_input(inputs)
        self.current_index = -1

    @handles("open_example")
    def _open_example(self, index: int) -> None:
        self.show_example(int(index))

    @traitlets.observe("selected_units", "layer", "shown")
    def _selection_changed(self, change: dict) -> None:
        if self.values is not None and self.examples is not None:
            with self.reporting_errors("computing the feature card"):
                self._update_card()

    def _update_card(self) -> None:
        if self.examples is None:  # a scan alone (the grid's colours) has no examples to show
            self.card = {"message": "No data: pass data= (with or without scan=) to see what drives each unit."}
            return
        if not self.selected_units:
            self.card = {"message": "Select a unit to see what drives it most."}
            return
        key = (self.layer, self.selected_units[0], self.shown)
        if key not in self._cards:
            self._cards[key] = self._make_card(*key)
            while len(self._cards) > CARD_CACHE:
                self._cards.popitem(last=False)
        self._cards.move_to_end(key)
        self.card = self._cards[key]
        if self.card.get("modality") == "image" and "visualization" not in self.card:
            self._start_visualization(key)

    def _logit_effects(self, layer: str, unit: int) -> dict[str, Any]:
        """The tokens the unit's output raises and lowers most along the direct path (``nw.top_logits``),
        or why a language model's logits cannot say (no unembedding, no projection reading the layer)."""
        try:
            raised, lowered = top_logits(
                self.probe, layer, [unit], k=LOGITS_SHOWN, tokenizer=self.examples.text.tokenizer
            )[unit]
        except ValueError as error:
            return {"logits_note": str(error)}
        return {"logits": {"raised": [[t, v] for _, t, v in raised], "lowered": [[t, v] for _, t, v in lowered]}}

    def _start_visualization(self, key: tuple[str, int, int]) -> None:
        """Optimise inputs for the card's unit in the background (``nw.visualize``, at its spatial centre
        for a channel of a conv layer): what drives it up most and down most; the card gains them as
        "what it responds to" when done (``visualization``: pixels, the max and the min over positions)."""
        layer, unit, _ = key
        grid = tuple(self.scan[layer].positions_shape)
        item = torch.as_tensor(self.examples.get(self.examples.start_index))  # (channels, height, width)
        adapter = self.examples.images

        def work(probe: Probe):
            found = []
            for negative in (False, True):  # what drives the unit up most, then down most
                yield len(found)
                image = visualize(
                    probe, layer, unit, size=tuple(item.shape[-2:]), channels=int(item.shape[0]), adapter=adapter,
                    position="center" if len(grid) == 2 else None, steps=VISUALIZE_STEPS, negative=negative,
                )  # fmt: skip
                acts = probe.run(image, [layer], output=False)[layer].values[0, :, unit]
                found.append((image, float(acts.min() if negative else acts.max())))
            return found

        def publish(result: list[tuple[torch.Tensor, float]], seconds: float) -> None:
            card = self._cards.get(key)
            if card is None:
                return
            (most, high), (least, low) = result
            card = {
                **card,
                "visualization": {
                    "pixels": encode(self.examples.pixels(torch.cat([most, least])), "uint8"),
                    "values": [high, low],
                    "seconds": round(seconds, 2),
                },
            }
            self._cards[key] = card
            if (self.layer, (self.selected_units or [None])[0], self.shown) == key:
                self.card = card

        background.submit(self, "visualize", self.probe, work, publish, action="optimising an input for the card")

    def _make_card(self, layer: str, unit: int, shown: int) -> dict:
        if layer not in self.scan:
            return {"message": f"Layer {layer!r} was not scanned; scanned layers: {', '.join(self.scan.layers)}."}
        stats = self.scan[layer]
        groups = [{"title": "Top activations", "examples": stats.top_k(unit)[:shown]}]
        for low, high, entries in stats.samples(unit)[1:ROW_INTERVALS]:  # the top interval repeats the top-k
            groups.append({"title": f"Interval {low:.3g} – {high:.3g}", "examples": entries[:4]})
        if stats.bottom_kept and stats.min[unit] < 0:  # GELU, SiLU and gated units fire negative too
            groups.append({"title": "Most negative", "examples": stats.bottom_k(unit)[:BOTTOM_SHOWN]})
        entries = [entry for group in groups for entry in group["examples"]]
        card: dict[str, Any] = {
            "layer": layer,
            "unit": unit,
            "count": int(stats.count[unit]),
            "density": float(stats.density[unit]),
            "mean": float(stats.mean[unit]),
            "max": float(stats.max[unit]),
            "nan_count": int(stats.nan_count[unit]),
            "inf_count": int(stats.inf_count[unit]),
            "num_examples": self.scan.num_examples,
            "positions_shape": list(stats.positions_shape),
            "modality": self.examples.modality,
            "groups": [
                {
                    "title": g["title"],
                    "examples": [{"value": v, "index": i, "position": p} for v, i, p in g["examples"]],
                }
                for g in groups
            ],
        }
        counts, edges = stats.histogram(unit)
        card["histogram"] = {"counts": encode(counts.astype(np.float32), "float32"), "edges": encode(edges, "float32")}
        if entries:
            indices = [i for _, i, _ in entries]
            inputs = self.examples.batch(indices)  # tokenizing or stacking: no model run
            card["activations"] = encode(unit_activations(stats, unit, indices, inputs, self.probe))
            if self.examples.modality == "text":
                card["tokens"] = self.examples.tokens(inputs)
                card.update(self._logit_effects(layer, unit))
            elif self.examples.modality == "image":
                card["pixels"] = encode(self.examples.pixels(torch.as_tensor(inputs)), "uint8")
        return card


class TopExamples(FeatureCard):
    """For the first of ``selected_units``: its top-k examples, examples from lower activation
    intervals, its firing density and its activation histogram, from ``scan`` over ``data``.

    Each example is shown with every position coloured by this unit's activation (text: the tokens
    around the firing token; images: the unit's map over the image). Clicking an example makes it
    the current input (``current_index``) of this widget and of every view linked to it.

    Parameters
    ----------
    model, layer: as for every view.
    scan: a :class:`neurowidgets.ScanResult` of ``data`` that includes ``layer``.
    data: the scanned data (a tensor of images or inputs, a list of strings, or a Dataset), indexed
        as the scan numbered it.
    inputs: the current input (default: the first example of ``data``).
    tokenizer / text: for text data, a tokenizer or a TextAdapter (as given to the scan).
    images: an ImageAdapter for drawing image examples (default: values in [0, 1]).
    """

    _esm = bundle("top_examples")

    def __init__(
        self,
        model: nn.Module | Probe,
        layer: str,
        scan: ScanResult,
        data: Any,
        inputs: Any = None,
        tokenizer: Any = None,
        text: TextAdapter | None = None,
        images: ImageAdapter | None = None,
        **kwargs: Any,
    ):
        text = scanned_text(scan, text if text is not None else tokenizer)
        examples = Examples(data, text=text, images=images, start_index=getattr(scan, "start_index", 0))
        current = -1
        if inputs is None:
            current = examples.start_index
            inputs = examples.batch([current])
        super().__init__(model, layer, inputs, **kwargs)
        self.attach_scan(scan, data, text=text, images=images)
        self.current_index = current
