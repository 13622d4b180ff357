"""Top units for a token: the units (or attached SAE features) of a layer that fire most at one position
of a text, each with what a one-line card shows (Neuronpedia's search by text, on your model).

:func:`top_units_at` reads an activation capture that is already there (the text's forward pass of
the heatmap), so that clicking a token costs a top-k over the layer's units, not a model call;
:func:`unit_cards` adds, from a scan of the layer, each unit's firing density, its top example
(as a window of tokens around the firing one) and its top logit (the token its output raises most
along the direct path, :func:`neurowidgets.core.lm.top_logits`); :func:`units_at_token` does both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .activations import Activations
from .examples import Examples
from .lm import top_logits
from .probe import Capture, Probe
from .stats import LayerStats


@dataclass
class TokenUnits:
    """The units firing most at ``position`` of ``example``: ``units`` (int64) and their ``values``
    (float32), highest first; ``order``: every unit of the layer, highest first (to order a grid by
    it; units whose value is NaN last)."""

    layer: str
    example: int
    position: int
    units: np.ndarray
    values: np.ndarray
    order: np.ndarray
    cards: list[UnitCard] = field(default_factory=list)


@dataclass
class UnitCard:
    """One line about a unit: its ``value`` at the selected token; from a scan, its firing ``density``
    and its top example (``top_value`` at ``top_example``, ``top_position``), with ``tokens`` a window
    of that example's tokens and ``focus`` the index of the firing one in it; ``top_logit`` (token id,
    token text, effect) or ``None`` with ``logit_error`` saying why."""

    unit: int
    value: float
    density: float | None = None
    top_value: float | None = None
    top_example: int | None = None
    top_position: int | None = None
    tokens: list[str] = field(default_factory=list)
    focus: int = -1
    top_logit: tuple[int, str, float] | None = None
    logit_error: str = ""

    @property
    def snippet(self) -> str:
        """The window as text, the firing token in ⟦ ⟧."""
        return " ".join(f"⟦{t}⟧" if i == self.focus else t for i, t in enumerate(self.tokens))


def top_units_at(
    activations: Activations | torch.Tensor, position: int, k: int = 20, example: int = 0, layer: str = ""
) -> TokenUnits:
    """The ``k`` units of a layer firing most at one position: from an :class:`Activations` of a capture
    (e.g. ``probe.run(inputs, [layer])[layer]``) or a (batch, positions, units) tensor."""
    values = activations.values if isinstance(activations, Activations) else activations
    if values.ndim != 3:
        raise ValueError(f"expected (batch, positions, units) activations, got {tuple(values.shape)}")
    batch, positions, units = values.shape
    if not 0 <= example < batch:
        raise IndexError(f"example {example} is out of range: the capture holds {batch}")
    if not -positions <= position < positions:
        raise IndexError(f"position {position} is out of range: the text has {positions} positions")
    position %= positions
    row = values[example, position].detach().float().cpu()
    order = torch.argsort(row.nan_to_num(nan=-torch.inf), descending=True, stable=True)
    top = order[: min(int(k), units)]
    return TokenUnits(layer, example, position, top.numpy(), row[top].numpy(), order.numpy())


def unit_cards(
    stats: LayerStats | None,
    units: Sequence[int],
    values: Sequence[float] | None = None,
    examples: Examples | None = None,
    probe: Probe | None = None,
    tokenizer: Any = None,
    window: int = 6,
) -> list[UnitCard]:
    """A :class:`UnitCard` for each unit: density and top example from ``stats`` (a scan of the layer),
    the example's tokens from ``examples`` (text), the top logit from ``probe``'s model (one product of
    the units' output vectors with the unembedding for all of them). What is missing is left empty."""
    units = [int(u) for u in units]
    values = [float("nan")] * len(units) if values is None else [float(v) for v in values]
    cards = [UnitCard(u, v) for u, v in zip(units, values, strict=True)]
    if stats is not None:
        density = stats.density
        for card in cards:
            card.density = float(density[card.unit])
            top = stats.top_k(card.unit)
            if top:
                card.top_value, card.top_example, card.top_position = top[0]
        if examples is not None and examples.is_text:
            for card in cards:
                if card.top_example is not None:
                    card.tokens, card.focus = _window(examples, card.top_example, card.top_position, window)
    if probe is not None and stats is not None and units:
        if tokenizer is None and examples is not None and examples.text is not None:
            tokenizer = examples.text.tokenizer
        try:
            logits = top_logits(probe, stats.layer, units, k=1, tokenizer=tokenizer)
        except (ValueError, LookupError) as error:
            for card in cards:
                card.logit_error = str(error)
        else:
            for card in cards:
                card.top_logit = logits[card.unit][0][0]
    return cards


def units_at_token(
    probe: Probe,
    inputs: Any,
    layer: str,
    position: int,
    k: int = 20,
    example: int = 0,
    stats: LayerStats | None = None,
    examples: Examples | None = None,
    capture: Capture | None = None,
    tokenizer: Any = None,
) -> TokenUnits:
    """:func:`top_units_at` and :func:`unit_cards` for a text: the capture of ``inputs`` is reused when
    given (one forward pass otherwise, stopping after ``layer``)."""
    if capture is None or layer not in capture:
        capture = probe.run(inputs, [layer], output=False)
    found = top_units_at(capture[layer], position, k, example, layer)
    found.cards = unit_cards(stats, found.units.tolist(), found.values.tolist(), examples, probe, tokenizer)
    return found


def _window(examples: Examples, index: int, position: int, window: int) -> tuple[list[str], int]:
    """Up to ``window`` tokens either side of ``position`` in example ``index``, and the focus in them."""
    inputs = examples.batch([index])
    tokens = examples.tokens(inputs)[0]
    if not 0 <= position < len(tokens):
        return tokens[-2 * window :], -1
    start = max(0, position - window)
    return tokens[start : position + window + 1], position - start
