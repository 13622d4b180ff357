"""AttentionHeads: a block's attention heads as small multiples of their patterns, for the current text."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

from ..core.reading import TextReading, patterns
from .base import bundle, handles
from .lm_text import LMTextView
from .wire import ARRAY


def patterns_of(reading: TextReading) -> np.ndarray:
    """(blocks, heads, T, T) float16 attention patterns of the reading's text (kept with the reading)."""
    return patterns(reading).cpu().numpy()


class AttentionHeads(LMTextView):
    """The attention patterns of one block's heads on the current text, as small multiples.

    Each head's pattern is a (query, key) matrix: row ``t`` is how much token ``t`` attends to each
    token. The page draws every head of ``block`` on one canvas (texts up to 512 tokens); a click on a
    head enlarges it (``head``), hovering or clicking a token shows its row. All blocks' patterns are
    computed once per text (in the model's own forward pass; see :mod:`neurowidgets.core.attention`),
    so picking another block, head or token needs no model call.

    Synced state besides :class:`LMTextView`'s: ``heads`` (per block), ``patterns`` (heads, T, T) of
    ``block`` as float16 on the wire, ``head`` (the enlarged head, -1 for none).
    """

    _esm = bundle("attention")

    heads = traitlets.Int(0, read_only=True).tag(sync=True)
    patterns = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **ARRAY)
    head = traitlets.Int(-1).tag(sync=True)

    def __init__(self, model: Any, texts: Any, tokenizer: Any, max_length: int | None = None, **kwargs: Any):
        self._all: np.ndarray | None = None
        super().__init__(model, texts, tokenizer, max_length, **kwargs)

    @property
    def all_patterns(self) -> np.ndarray:
        """(blocks, heads, T, T) patterns of the current text."""
        assert self._all is not None
        return self._all

    @handles("select_head")
    def _select_head(self, head: int) -> None:
        self.head = int(head)

    def _show(self, reading: TextReading) -> None:
        self._all = patterns_of(reading)
        self._block_chosen()

    def _block_chosen(self) -> None:
        if self._all is None:
            return
        block = self._all[self.block]
        with self.hold_sync():
            self.set_trait("heads", int(block.shape[0]))
            if self.head >= block.shape[0]:
                self.head = -1
            self.set_trait("patterns", block)

    @traitlets.validate("head")
    def _valid_head(self, proposal: dict) -> int:
        head = int(proposal["value"])
        if self._all is not None and not -1 <= head < self._all.shape[1]:
            raise traitlets.TraitError(f"head {head} does not exist: the block has heads 0…{self._all.shape[1] - 1}")
        return head
