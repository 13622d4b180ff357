"""TextView: a LayerView whose inputs are texts, one row each, editable from the page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..core import Probe
from ..core.text import TextAdapter
from .base import handles
from .layer_view import LayerView


@dataclass(frozen=True)
class TextBatch:
    """Texts and everything derived from them before the model runs."""

    texts: list[str]
    inputs: dict[str, torch.Tensor]
    tokens: list[list[str]]
    notice: str


def as_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a string or a list of strings, got {type(texts).__name__}")
    texts = list(texts)
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(f"texts must be strings, got a {type(bad).__name__}: {bad!r}")
    if not texts:
        raise ValueError("a text view needs at least one text")
    return texts


def _rows(rows: list[int]) -> str:
    names = ", ".join(str(r + 1) for r in rows)
    return f"row {names}" if len(rows) == 1 else f"rows {names}"


class TextView(LayerView):
    """One layer of a model on a few texts (the examples are the rows; positions are tokens).

    ``tokenizer``: a Hugging Face tokenizer, or a :class:`neurowidgets.TextAdapter` (then ``max_length``
    is the adapter's). ``max_length``: longer texts are truncated to this many tokens (special tokens
    included), and ``notice`` says so. Default 128.

    Synced state besides :class:`LayerView`'s: ``texts`` (list of str), ``tokens`` (one list of token
    strings per row, exactly as the tokenizer splits them, without padding), ``notice`` (what the view
    says about its input, e.g. truncation), ``max_length``, ``debounce_ms``. ``texts`` and ``tokens``
    change together with ``values``: use :meth:`set_texts` or :meth:`set_text`.

    ``debounce_ms`` (default 150) is the longest an edit waits for a pause in typing. While the kernel
    answers edits faster than that, an edit is sent at once (one request in flight, the newest edit
    replaces a pending one); a slower kernel gets the full debounce, so that it does not start runs the
    user has already typed past. 0 sends every edit at once.
    """

    texts = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    tokens = traitlets.List(traitlets.List(traitlets.Unicode()), read_only=True).tag(sync=True)
    notice = traitlets.Unicode("", read_only=True).tag(sync=True)
    max_length = traitlets.Int(128, read_only=True).tag(sync=True)
    debounce_ms = traitlets.Int(150, min=0).tag(sync=True)

    def __init__(
        self,
        model: nn.Module | Probe,
        layer: str,
        texts: str | Sequence[str],
        tokenizer: Any,
        max_length: int | None = None,
        **kwargs: Any,
    ):
        if isinstance(tokenizer, TextAdapter):
            if max_length is not None and int(max_length) != tokenizer.max_length:
                raise ValueError(
                    f"max_length={max_length} conflicts with the TextAdapter's max_length="
                    f"{tokenizer.max_length}: set it on the adapter"
                )
            self.adapter = tokenizer
        else:
            self.adapter = TextAdapter(tokenizer, 128 if max_length is None else max_length)
        choose_unit = "selected_units" not in kwargs
        super().__init__(model, layer, texts, **kwargs)
        self.set_trait("max_length", self.adapter.max_length)
        if choose_unit and self.num_units:
            self.selected_units = [self.most_active_unit()]

    # -- public --------------------------------------------------------------------------------

    @property
    def tokenizer(self) -> Any:
        return self.adapter.tokenizer

    def set_texts(self, texts: str | Sequence[str]) -> None:
        """Show other texts (one row each). On error nothing changes."""
        self.set_input(texts)

    def set_text(self, row: int, text: str) -> None:
        """Replace the text of one row (what typing in a row's text box does). On error nothing changes."""
        if isinstance(row, bool) or not isinstance(row, int):
            raise TypeError(f"row must be an int, got {type(row).__name__}")
        if not 0 <= row < len(self.texts):
            raise IndexError(f"row {row} does not exist: the view has rows 0…{len(self.texts) - 1}")
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        texts = list(self.texts)
        texts[row] = text
        if len(texts) == 1:
            self.set_texts(texts)
            return
        # Only the edited row runs, at its real length: the other rows' activations do not change
        # (each row sees only its own tokens; padding is masked out).
        batch = self._batch_of(texts)
        fresh = self._run(self.layer, self.adapter([text]))[self.layer].values[0].float().cpu().numpy()
        positions = int(batch.inputs["input_ids"].shape[1])
        values = np.zeros((len(texts), positions, fresh.shape[-1]), np.float32)
        kept = min(positions, self.num_positions)
        values[:, :kept] = self.values[:, :kept]
        values[row] = 0  # padding, with zeros no panel draws
        values[row, : fresh.shape[0]] = fresh
        self._inputs = batch
        with self._publishing():
            self._publish_batch(batch)
            self._publish(values, [positions])
            self.current_index = -1

    def most_active_unit(self) -> int:
        """The unit with the largest activation at an ordinary token of the texts.

        The tokenizer's special tokens (``[CLS]``, ``[SEP]``, …) do not count unless there are no
        others: transformers put outsized activations on them in a few units, which would then
        colour every other token white.
        """
        ids = self._inputs.inputs["input_ids"]
        special = torch.tensor(sorted(set(getattr(self.adapter.tokenizer, "all_special_ids", []))), dtype=ids.dtype)
        real = torch.zeros(ids.shape, dtype=torch.bool)
        for row, tokens in enumerate(self.tokens):
            real[row, : len(tokens)] = True
        ordinary = real & ~torch.isin(ids, special)
        mask = (ordinary if ordinary.any() else real)[:, : self.num_positions].numpy()
        if not mask.any():
            return 0
        best = np.fmax.reduce(self.values[mask], axis=0)  # fmax: NaN never wins over a number
        return int(np.nan_to_num(best, nan=-np.inf).argmax())

    def row_values(self, row: int, unit: int) -> np.ndarray:
        """The activations of ``unit`` at each real token of ``row`` (what the row's colours show)."""
        return self.values[row, : len(self.tokens[row]), unit]

    @property
    def inputs(self) -> dict[str, torch.Tensor]:
        """The tokenizer's batch of the texts shown (what the model is called with)."""
        return self._inputs.inputs

    def example_input(self, index: int) -> list[str]:
        return [self.examples.get(index)]

    def position_names(self) -> list[list[str]]:
        return [row + [""] * (self.num_positions - len(row)) for row in self.tokens]

    # -- internals -----------------------------------------------------------------------------

    def _prepare(self, texts: str | Sequence[str]) -> TextBatch:
        return self._batch_of(texts)

    def _run(self, layer: str, inputs: TextBatch | dict[str, torch.Tensor]) -> Any:
        return super()._run(layer, inputs.inputs if isinstance(inputs, TextBatch) else inputs)

    def _batch_of(self, texts: str | Sequence[str]) -> TextBatch:
        texts = as_texts(texts)
        adapter = self.adapter
        inputs = adapter(texts)
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        lengths = mask.sum(dim=1).tolist() if mask is not None else [ids.shape[1]] * len(texts)
        tokens = [adapter.tokens(ids[row, : int(n)]) for row, n in enumerate(lengths)]
        # One more token than allowed tells which texts were cut.
        longer = adapter.tokenizer(
            texts, truncation=True, max_length=adapter.max_length + 1, **adapter.tokenizer_kwargs
        )["input_ids"]
        cut = [row for row, row_ids in enumerate(longer) if len(row_ids) > adapter.max_length]
        notice = ""
        if cut:
            notice = (
                f"{_rows(cut)} truncated to {adapter.max_length} tokens (max_length): "
                f"the rest of {'its' if len(cut) == 1 else 'their'} text is not shown"
            )
        return TextBatch(texts, inputs, tokens, notice)

    def _publish_batch(self, batch: TextBatch) -> None:
        self.set_trait("texts", list(batch.texts))
        self.set_trait("tokens", batch.tokens)
        self.set_trait("notice", batch.notice)
        self.set_trait("lengths", [len(row) for row in batch.tokens])

    def _show(self, capture: Any, layer: str) -> None:
        with self._publishing():
            self._publish_batch(self._inputs)
            super()._show(capture, layer)

    @handles("set_text")
    def _on_set_text(self, row: int, text: str) -> None:
        self.set_text(row, text)
