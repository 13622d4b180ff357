"""TopExamples: the Neuronpedia feature card of the selected unit, computed from a scan."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
import torch
import traitlets
from torch import nn

from ..core import Probe
from ..core.examples import Examples, unit_activations
from ..core.images import ImageAdapter
from ..core.lm import top_logits
from ..core.scan import ScanResult
from ..core.stats import ROW_INTERVALS
from ..core.text import TextAdapter, scanned_adapter
from ..core.visualize import visualize
from . import background
from .base import bundle, handles
from .layer_view import LayerView
from .panel import Panel
from .wire import encode

CARD_CACHE = 32  # cards kept per widget, so that going back to a unit is instant
LOGITS_SHOWN = 8  # tokens raised and lowered shown in a text unit's card
BOTTOM_SHOWN = 4  # most negative examples shown, for a unit that takes negative values
VISUALIZE_STEPS = 256  # nw.visualize's default: a digits unit in about a second on one thread


class CardPanel(Panel):
    """The Neuronpedia feature card of the first selected unit, from the scan attached to the view:
    its top-k examples, examples from lower activation intervals, its most negative examples (for a
    unit that takes negative values), its firing density and its activation histogram; for a text
    unit, the tokens its output raises and lowers most; for an image unit, inputs optimised to drive it
    (computed in the background). Each example is shown with every position coloured by this unit's
    activation; clicking one makes it the view's current input (``current_index``).

    ``card`` is that card (or ``{"message": ...}``: why there is none); ``shown``: top examples listed.
    """

    name = "card"
    action = "computing the feature card"
    state: ClassVar[dict[str, traitlets.TraitType]] = {
        "card": traitlets.Dict().tag(sync=True),
        "shown": traitlets.Int(8).tag(sync=True),
    }
    reads = ("selected_units", "shown")

    def __init__(self, view: LayerView):
        super().__init__(view)
        self._cards: OrderedDict[tuple[str, int, int], dict] = OrderedDict()
        self._cards_of: tuple[Any, Any] | None = None  # (scan, examples) the cards were made from

    @handles("open_example")
    def _open_example(self, index: int) -> None:
        self.view.show_example(int(index))

    def update(self) -> None:
        view = self.view
        if self._cards_of != (view.scan, view.examples):  # another scan or data: other cards
            self._cards_of, self._cards = (view.scan, view.examples), OrderedDict()
        if view.examples is None:  # a scan alone (the grid's colours) has no examples to show
            view.card = {"message": "No data: pass data= (with or without scan=) to see what drives each unit."}
            return
        if not view.selected_units:
            view.card = {"message": "Select a unit to see what drives it most."}
            return
        key = (view.layer, view.selected_units[0], view.shown)
        if key not in self._cards:
            self._cards[key] = self._make_card(*key)
            while len(self._cards) > CARD_CACHE:
                self._cards.popitem(last=False)
        self._cards.move_to_end(key)
        view.card = self._cards[key]
        if view.card.get("modality") == "image" and "visualization" not in view.card:
            self._start_visualization(key)

    def _logit_effects(self, layer: str, unit: int) -> dict[str, Any]:
        """The tokens the unit's output raises and lowers most along the direct path (``nw.top_logits``),
        or why a language model's logits cannot say (no unembedding, no projection reading the layer)."""
        view = self.view
        try:
            raised, lowered = top_logits(
                view.probe, layer, [unit], k=LOGITS_SHOWN, tokenizer=view.examples.text.tokenizer
            )[unit]
        except ValueError as error:
            return {"logits_note": str(error)}
        return {"logits": {"raised": [[t, v] for _, t, v in raised], "lowered": [[t, v] for _, t, v in lowered]}}

    def _start_visualization(self, key: tuple[str, int, int]) -> None:
        """Optimise inputs for the card's unit in the background (``nw.visualize``, at its spatial centre
        for a channel of a conv layer): what drives it up most and down most; the card gains them as
        "what it responds to" when done (``visualization``: pixels, the max and the min over positions)."""
        (layer, unit, _), view = key, self.view
        grid = tuple(view.scan[layer].positions_shape)
        examples = view.examples
        item = torch.as_tensor(examples.get(examples.start_index))  # (channels, height, width)
        adapter = examples.images

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
                    "pixels": encode(examples.pixels(torch.cat([most, least])), "uint8"),
                    "values": [high, low],
                    "seconds": round(seconds, 2),
                },
            }
            self._cards[key] = card
            if (view.layer, (view.selected_units or [None])[0], view.shown) == key:
                view.card = card

        background.submit(view, "visualize", view.probe, work, publish, action="optimising an input for the card")

    def _make_card(self, layer: str, unit: int, shown: int) -> dict:
        scan, examples = self.view.scan, self.view.examples
        if layer not in scan:
            return {"message": f"Layer {layer!r} was not scanned; scanned layers: {', '.join(scan.layers)}."}
        stats = scan[layer]
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
            "num_examples": scan.num_examples,
            "positions_shape": list(stats.positions_shape),
            "modality": examples.modality,
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
            inputs = examples.batch(indices)  # tokenizing or stacking: no model run
            card["activations"] = encode(unit_activations(stats, unit, indices, inputs, self.view.probe))
            if examples.modality == "text":
                card["tokens"] = examples.tokens(inputs)
                card.update(self._logit_effects(layer, unit))
            elif examples.modality == "image":
                card["pixels"] = encode(examples.pixels(torch.as_tensor(inputs)), "uint8")
        return card


class TopExamples(LayerView.composed(CardPanel)):
    """The feature card of the first of ``selected_units`` (:class:`CardPanel`), from ``scan`` over
    ``data``, as a widget of its own. Clicking an example makes it the current input
    (``current_index``) of this widget and of every view linked to it.

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
        text = scanned_adapter(scan.info, text if text is not None else tokenizer)
        current = -1
        if inputs is None:
            first = Examples(data, text=text, images=images, start_index=scan.start_index)
            current, inputs = first.start_index, first.batch([first.start_index])
        super().__init__(model, layer, inputs, **kwargs)
        self.attach_scan(scan, data, text=text, images=images)
        self.current_index = current
