"""TokenUnitsPanel: the units firing most at the clicked token, each with a one-line card (the explorer's
'token_units' panel; Neuronpedia's search by text, on your model).

Computed from the activations the explorer already holds (``values``, the text's one forward pass):
no model call. A unit's card (density, top example, top logit) comes from the attached scan and is
kept per (layer, unit), so a click costs a top-k over the layer's units and the cards not seen yet.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import torch
import traitlets

from ..core.token_units import UnitCard, top_units_at, unit_cards
from .layer_view import LayerView
from .panel import Panel

SHOWN = 12  # units listed at a token


def _number(value: float | None) -> float | None:
    """JSON has no NaN: a missing or NaN value is None."""
    return None if value is None or math.isnan(value) else float(value)


class TokenUnitsPanel(Panel):
    """``token_units``: at ``position`` of ``example`` (the token clicked in the heatmap), the ``SHOWN``
    units of the layer with the highest values there (:func:`neurowidgets.units_at_token`), as
    ``{"layer", "example", "position", "token", "units", "values", "rows", "note", "seconds"}``; each row
    ``{"unit", "value", "density", "top_value", "tokens", "focus", "top_logit": [text, effect] | None}``;
    ``note`` says what the cards lack (no scan, layer not scanned, no unembedding); ``seconds`` is the
    kernel time. ``{"position": -1}`` when no token is selected. Only computed while the panel is shown."""

    name = "token_units"
    action = "listing the units at the selected token"
    state: ClassVar[dict[str, traitlets.TraitType]] = {"token_units": traitlets.Dict(read_only=True).tag(sync=True)}
    reads = ("position", "example", "panels")

    def __init__(self, view: LayerView):
        super().__init__(view)
        self._cards: dict[tuple[str, int], UnitCard] = {}
        self._cards_of: tuple[Any, Any] | None = None  # (scan, examples) the cards were made from

    def update(self) -> None:
        view = self.view
        if not self.visible:
            return
        example, position = view.example, view.position
        lengths = view.lengths or [view.num_positions] * view.num_examples
        if not 0 <= position < lengths[example]:
            view.set_trait("token_units", {"layer": view.layer, "example": example, "position": -1})
            return
        start = time.perf_counter()
        found = top_units_at(torch.from_numpy(view.values), position, SHOWN, example, view.layer)
        cards, note = self._cards_for(found.units.tolist())
        names = view.position_names()
        rows = []
        for unit, value in zip(found.units.tolist(), found.values.tolist(), strict=True):
            card = cards.get(unit)
            row: dict[str, Any] = {"unit": unit, "value": _number(value)}
            if card is not None:
                logit = card.top_logit
                row.update(
                    density=_number(card.density), top_value=_number(card.top_value), tokens=card.tokens,
                    focus=card.focus, top_logit=None if logit is None else [logit[1], _number(logit[2])],
                )  # fmt: skip
                note = note or card.logit_error
            rows.append(row)
        view.set_trait(
            "token_units",
            {
                "layer": view.layer, "example": example, "position": position,
                "token": names[example][position] if names else str(position),
                "units": [row["unit"] for row in rows], "values": [row["value"] for row in rows],
                "rows": rows, "note": note, "seconds": round(time.perf_counter() - start, 6),
            },
        )  # fmt: skip

    def _cards_for(self, units: list[int]) -> tuple[dict[int, UnitCard], str]:
        """The units' cards from the attached scan (computed once per layer and unit), and what they lack."""
        view = self.view
        scan, examples, layer = view.scan, view.examples, view.layer
        if scan is None:
            return {}, "Cards need a scan: explore(..., data=texts) or attach_scan."
        if layer not in scan.layers:
            return {}, f"Cards need a scan of this layer: {layer!r} was not scanned."
        if self._cards_of != (scan, examples):  # another scan or data: other cards
            self._cards_of, self._cards = (scan, examples), {}
        missing = [u for u in units if (layer, u) not in self._cards]
        if missing:
            made = unit_cards(scan[layer], missing, examples=examples, probe=view.probe, tokenizer=view.tokenizer)
            self._cards.update({(layer, card.unit): card for card in made})
        note = "" if examples is not None else "Top examples need the scanned data: data=."
        return {u: self._cards[(layer, u)] for u in units}, note
