"""LMTextView: what the language-model views (attention heads, logit lens and attribution) share.

One text at a time (``texts[example]``), run once through the model; the reading of that forward pass
(:func:`neurowidgets.core.reading.read_text`) is cached by model and token ids, so several views of one
text cost one forward pass. ``position`` (a token index, -1 for none) and ``block`` (an index into
``blocks``) are the shared selection; :meth:`link` makes a view follow a
:class:`~neurowidgets.widgets.explorer.TextExplorer` (its texts, current example, position and layer)
and write the position and the layer the user picks back to it.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import traitlets
from torch import nn

from ..core import Probe
from ..core.lm import block_parts
from ..core.reading import TextReading, read_text
from ..core.text import TextAdapter
from .base import NeuroWidget, as_probe, handles
from .text_view import TextView

# The last two readings, by (model, token ids, edits): the attention view and the logit lens of one text
# share one forward pass. A reading of a 512-token text on GPT-2's shape holds about 250 MB (the attention
# patterns in float16, the logits, the residual stream and the components), so few are kept.
_READINGS: OrderedDict[tuple, tuple[weakref.ref, TextReading]] = OrderedDict()
_KEEP = 2


def reading_of(probe: Probe, inputs: dict[str, torch.Tensor]) -> TextReading:
    ids = inputs["input_ids"][0]
    key = (id(probe.model), tuple(int(i) for i in ids), repr(sorted(probe._edits.items())))  # edits change the reading
    found = _READINGS.get(key)
    if found is not None and found[0]() is probe.model:
        _READINGS.move_to_end(key)
        return found[1]
    reading = read_text(probe, inputs)
    _READINGS[key] = (weakref.ref(probe.model), reading)
    while len(_READINGS) > _KEEP:
        _READINGS.popitem(last=False)
    return reading


def context_length(model: nn.Module) -> int | None:
    """The longest input the model's positions allow (None when its config does not say)."""
    config = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class LMTextView(NeuroWidget):
    """Base of the language-model views: one text of ``texts`` (``example``) through ``model``.

    Parameters
    ----------
    model: a Hugging Face (or similar) language model, or a :class:`neurowidgets.Probe` of one.
    texts: a string or a list of strings; the views show ``texts[example]``.
    tokenizer: a Hugging Face tokenizer or a :class:`neurowidgets.TextAdapter`.
    max_length: the most tokens shown (default: the model's context, at most 512); a longer text is
        truncated and ``notice`` says so.

    Synced state: ``texts``, ``example``, ``tokens`` (the current text's tokens as the tokenizer splits
    them: text, never HTML), ``notice``, ``blocks`` (the repeated blocks' names), ``block``,
    ``position``. The page sends requests (``select_position``, ``select_block``); it never writes
    these traits itself.
    """

    texts = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    example = traitlets.Int(0, read_only=True).tag(sync=True)
    tokens = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    notice = traitlets.Unicode("", read_only=True).tag(sync=True)
    blocks = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    block = traitlets.Int(0).tag(sync=True)
    position = traitlets.Int(-1).tag(sync=True)

    def __init__(
        self,
        model: nn.Module | Probe,
        texts: str | Sequence[str],
        tokenizer: Any,
        max_length: int | None = None,
        **kwargs: Any,
    ):
        self.probe = as_probe(model)
        parts = block_parts(self.probe.model)
        if not parts:
            raise ValueError(
                f"{type(self.probe.model).__name__} has no repeated blocks (a ModuleList of layers): "
                "the language-model views need a transformer"
            )
        context = context_length(self.probe.model)
        if isinstance(tokenizer, TextAdapter):
            self.adapter = tokenizer
        else:
            limit = min(context or 512, 512) if max_length is None else int(max_length)
            self.adapter = TextAdapter(tokenizer, limit)
        if context is not None and self.adapter.max_length > context:
            self.adapter = TextAdapter(self.adapter.tokenizer, context, **self.adapter.tokenizer_kwargs)
        self._explorer: Any = None
        self._following = False
        self.reading: TextReading | None = None
        texts = _as_texts(texts)
        super().__init__(**kwargs)
        self.set_trait("blocks", [p.name for p in parts])
        self._read(texts, 0)

    # -- public --------------------------------------------------------------------------------

    def set_texts(self, texts: str | Sequence[str], example: int = 0) -> None:
        """Show other texts (``texts[example]``). On error nothing changes."""
        self._read(_as_texts(texts), example)

    def select(self, position: int | None = None, block: int | None = None) -> None:
        """Select a token position (-1: none) and/or a block, as a click in the page does."""
        with self.hold_sync():
            if block is not None:
                self.block = block
            if position is not None:
                self.position = position

    def link(self, explorer: Any) -> LMTextView:
        """Follow ``explorer`` (a TextExplorer or TokenHeatmap): its texts, current example, position and
        layer; a position or layer picked here is written back to it. Returns self."""
        if not isinstance(explorer, TextView):
            raise TypeError(f"link follows a text explorer or a TokenHeatmap, got {type(explorer).__name__}")
        if self._explorer is not None:
            self._explorer.unobserve(self._follow, names=["texts", "example", "position", "layer"])
        self._explorer = explorer
        self.adapter = explorer.adapter  # the same tokens, so positions agree
        explorer.observe(self._follow, names=["texts", "example", "position", "layer"])
        self._read(list(explorer.texts), explorer.example)
        self._follow_layer(explorer.layer)
        if explorer.position < len(self.tokens):
            self.position = explorer.position
        return self

    # -- requests from the page ----------------------------------------------------------------

    @handles("select_position")
    def _select_position(self, position: int) -> None:
        self.select(position=int(position))

    @handles("select_block")
    def _select_block(self, block: int) -> None:
        self.select(block=int(block))

    # -- the one forward pass per text ---------------------------------------------------------

    def _read(self, texts: list[str], example: int) -> None:
        if not 0 <= example < len(texts):
            raise IndexError(f"example {example} does not exist: there are {len(texts)} texts")
        text = texts[example]
        inputs = self.adapter([text])
        full = len(self.adapter.tokenizer(text)["input_ids"])
        reading = reading_of(self.probe, inputs)
        tokens = self.adapter.tokens(reading.ids)
        notice = ""
        if full > reading.length:
            limit = "the model's context" if reading.length == context_length(self.probe.model) else "max_length"
            notice = f"The text has {full} tokens: truncated to its first {reading.length} ({limit})."

        self.reading = reading
        with self.hold_sync():
            self.set_trait("texts", texts)
            self.set_trait("example", example)
            self.set_trait("tokens", tokens)
            self.set_trait("notice", notice)
            if self.position >= reading.length:
                self.position = -1
            self._show(reading)

    def _show(self, reading: TextReading) -> None:
        """Publish what a view draws of a new reading (subclasses)."""

    def _position_chosen(self) -> None:
        """The selected position changed (subclasses)."""

    def _block_chosen(self) -> None:
        """The selected block changed (subclasses)."""

    # -- traits and linking ----------------------------------------------------------------------

    @traitlets.validate("position")
    def _valid_position(self, proposal: dict) -> int:
        position = int(proposal["value"])
        if not -1 <= position < max(len(self.tokens), 1) and self.reading is not None:
            raise traitlets.TraitError(
                f"position {position} does not exist: the text has positions 0…{len(self.tokens) - 1} (or -1 for none)"
            )
        return position

    @traitlets.validate("block")
    def _valid_block(self, proposal: dict) -> int:
        block = int(proposal["value"])
        if self.blocks and not 0 <= block < len(self.blocks):
            raise traitlets.TraitError(f"block {block} does not exist: the model has blocks 0…{len(self.blocks) - 1}")
        return block

    @traitlets.observe("position")
    def _on_position(self, change: dict) -> None:
        with self.reporting_errors("selecting a position"):
            self._position_chosen()
        explorer = self._explorer
        if explorer is not None and not self._following and explorer.position != change["new"]:
            if change["new"] < explorer.num_positions:
                explorer.position = change["new"]

    @traitlets.observe("block")
    def _on_block(self, change: dict) -> None:
        with self.reporting_errors("selecting a block"):
            self._block_chosen()

    def open_layer(self, layer: str) -> None:
        """Make ``layer`` the shared layer (the linked explorer's), and select its block here."""
        self.probe._check_name(layer)
        index = self._block_of(layer)
        if index is not None:
            self.block = index
        if self._explorer is not None:
            self._explorer.layer = layer

    def _block_of(self, layer: str) -> int | None:
        for i, name in enumerate(self.blocks):
            if layer == name or layer.startswith(name + "."):
                return i
        return None

    def _follow_layer(self, layer: str) -> None:
        index = self._block_of(layer)
        if index is not None:
            self.block = index

    def _follow(self, change: dict) -> None:
        explorer = self._explorer
        self._following = True
        try:
            with self.reporting_errors(f"following the explorer's {change['name']}"):
                if change["name"] in ("texts", "example"):
                    self._read(list(explorer.texts), explorer.example)
                elif change["name"] == "position":
                    if change["new"] < len(self.tokens):
                        self.position = change["new"]
                elif change["name"] == "layer":
                    self._follow_layer(change["new"])
        finally:
            self._following = False


def _as_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a string or a non-empty list of strings")
    return list(texts)
