"""TokenUnitsPanel: the units firing most at the clicked token, each with a one-line card (the explorer's
'token_units' panel; Neuronpedia's search by text, on your model).

Computed from the activations the explorer already holds (``values``, the text's one forward pass):
no model call. A unit's card (density, top example, top logit) comes from the attached scan and is
kept per (layer, unit), so a click costs a top-k over the layer's units and the cards not seen yet.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
import traitlets

from ..core.token_units import UnitCard, top_units_at, unit_cards
from .layer_view import LayerView

SHOWN = 12  # units listed at a token


def _number(value: float | None) -> float | None:
    """JSON has no NaN: a missing or NaN value is None."""
    return None if value is None or math.isnan(value) else float(value)


class TokenUnitsPanel(LayerView):
    """``token_units``: at ``position`` of ``example`` (the token clicked in the heatmap), the ``SHOWN``
    units of the layer with the highest values there (:func:`neurowidgets.units_at_token`), as
    ``{"layer", "example", "position", "token", "units", "values", "rows", "note", "seconds"}``; each row
    ``{"unit", "value", "density", "top_value", "tokens", "focus", "top_logit": [text, effect] | None}``;
    ``note`` says what the cards lack (no scan, layer not scanned, no unembedding); ``seconds`` is the
    kernel time. ``{"position": -1}`` when no token is selected. Only computed while the panel is shown."""

    token_units = traitlets.Dict(read_only=True).tag(sync=True)

    def _token_units_shown(self) -> bool:
        return "token_units" in getattr(self, "panels", ["token_units"])

    @traitlets.observe("values", "position", "example", "panels")
    def _token_changed(self, change: dict) -> None:
        if self.values is not None:
            with self.reporting_errors("listing the units at the selected token"):
                self._update_token_units()

    def attach_scan(self, *args: Any, **kwargs: Any) -> None:
        super().attach_scan(*args, **kwargs)
        self._update_token_units()

    def _update_token_units(self) -> None:
        if not self._token_units_shown():
            return
        example, position = self.example, self.position
        lengths = self.lengths or [self.num_positions] * self.values.shape[0]
        if not 0 <= position < lengths[example]:
            self.set_trait("token_units", {"layer": self.layer, "example": example, "position": -1})
            return
        start = time.perf_counter()
        found = top_units_at(torch.from_numpy(self.values), position, SHOWN, example, self.layer)
        cards, note = self._cards_of(found.units.tolist())
        tokens = getattr(self, "tokens", None)
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
        self.set_trait(
            "token_units",
            {
                "layer": self.layer, "example": example, "position": position,
                "token": tokens[example][position] if tokens else str(position),
                "units": [row["unit"] for row in rows], "values": [row["value"] for row in rows],
                "rows": rows, "note": note, "seconds": round(time.perf_counter() - start, 6),
            },
        )  # fmt: skip

    def _cards_of(self, units: list[int]) -> tuple[dict[int, UnitCard], str]:
        """The units' cards from the attached scan (computed once per layer and unit), and what they lack."""
        scan, examples = getattr(self, "scan", None), getattr(self, "examples", None)
        if scan is None:
            return {}, "Cards need a scan: explore(..., data=texts) or attach_scan."
        if self.layer not in scan.layers:
            return {}, f"Cards need a scan of this layer: {self.layer!r} was not scanned."
        source = getattr(self, "_cards_from", (None, None))
        if source[0] is not scan or source[1] is not examples:  # another scan or data: other cards
            self._cards_from, self._unit_cards = (scan, examples), {}
        cache = self._unit_cards
        missing = [u for u in units if (self.layer, u) not in cache]
        if missing:
            adapter = getattr(self, "adapter", None)
            made = unit_cards(
                scan[self.layer], missing, examples=examples, probe=self.probe,
                tokenizer=adapter.tokenizer if adapter is not None else None,
            )  # fmt: skip
            cache.update({(self.layer, card.unit): card for card in made})
        note = "" if examples is not None else "Top examples need the scanned data: data=."
        return {u: cache[(self.layer, u)] for u in units}, note
