"""TokenHeatmap: texts as their tokens, each coloured by the selected unit's activation at that token."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import traitlets
from torch import nn

from ..core import Activations, Capture, Probe
from ..core.attribution import METHODS, attribute
from ..core.text import TextAdapter
from .base import bundle, handles
from .image_overlay import ARRAY32
from .layer_view import LayerView


@dataclass(frozen=True)
class _TextBatch:
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
        raise ValueError("TokenHeatmap needs at least one text")
    return texts


def _rows(rows: list[int]) -> str:
    names = ", ".join(str(r + 1) for r in rows)
    return f"row {names}" if len(rows) == 1 else f"rows {names}"


class TokenHeatmap(LayerView):
    """One row per text: its tokens, each coloured by the selected unit's activation at that token.

    The rows are the examples of the batch (``example`` is a row, ``position`` a token index). The
    whole (rows, tokens, units) matrix is sent once; the front-end colours the tokens by the first of
    ``selected_units`` locally, so picking another unit needs no kernel round trip. Each row has a
    text box: typing re-runs the model here (see ``debounce_ms``; the latest edit wins) and every
    view of this state updates.

    Parameters
    ----------
    model: a ``torch.nn.Module`` (called as ``model(**tokenizer_output)``) or a :class:`neurowidgets.Probe`.
    layer: a layer name, as in ``model.named_modules()``, whose positions are the tokens.
    texts: a string or a list of strings, one row each.
    tokenizer: a Hugging Face tokenizer, or a :class:`neurowidgets.TextAdapter` (then ``max_length``
        is the adapter's).
    max_length: longer texts are truncated to this many tokens (special tokens included), and
        ``notice`` says so. Default 128.

    With no ``selected_units`` given, the unit with the strongest activation at an ordinary (not
    special) token of the texts is selected (:meth:`most_active_unit`).

    Synced state besides :class:`LayerView`'s: ``texts`` (list of str), ``tokens`` (one list of token
    strings per row, exactly as the tokenizer splits them, without padding), ``notice`` (what the
    widget says about its input, e.g. truncation), ``max_length``, ``debounce_ms``. ``texts`` and
    ``tokens`` change together with ``values``: use :meth:`set_texts` or :meth:`set_text`.

    ``show="attribution"`` colours the tokens of the current row (``example``) by how much each drives
    the first selected unit at ``position`` (at all the row's tokens when -1), by ``attribution_method``
    (see :func:`neurowidgets.attribute`: taken on the input embeddings, one value per token);
    ``attribution`` is that (tokens,) float32 array and ``attribution_info`` says ``method``, ``unit``,
    ``example``, ``position``, ``seconds`` (kernel time) and ``nan`` (tokens with a NaN gradient).

    ``debounce_ms`` (default 150) is the longest an edit waits for a pause in typing. While the
    kernel answers edits faster than that, an edit is sent at once (one request in flight, the newest
    edit replaces a pending one); a slower kernel gets the full debounce, so that it does not start
    runs the user has already typed past. 0 sends every edit at once.
    """

    _esm = bundle("token_heatmap")

    texts = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    tokens = traitlets.List(traitlets.List(traitlets.Unicode()), read_only=True).tag(sync=True)
    notice = traitlets.Unicode("", read_only=True).tag(sync=True)
    max_length = traitlets.Int(128, read_only=True).tag(sync=True)
    debounce_ms = traitlets.Int(150, min=0).tag(sync=True)
    show = traitlets.Enum(["activation", "attribution"], "activation").tag(sync=True)
    attribution_method = traitlets.Enum(list(METHODS), "integrated_gradients").tag(sync=True)
    attribution = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **ARRAY32)
    attribution_info = traitlets.Dict(read_only=True).tag(sync=True)

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
        self._batch = self._prepare(texts)
        choose_unit = "selected_units" not in kwargs
        super().__init__(model, layer, self._batch.inputs, **kwargs)
        self.set_trait("max_length", self.adapter.max_length)
        if choose_unit and self.num_units:
            self.selected_units = [self.most_active_unit()]

    # -- public --------------------------------------------------------------------------------

    def set_texts(self, texts: str | Sequence[str]) -> None:
        """Show other texts (one row each). On error nothing changes."""
        batch = self._prepare(texts)
        capture = self._run(self.layer, batch.inputs)
        self._batch = batch
        self._inputs = batch.inputs
        self._show(capture, self.layer)

    def set_text(self, row: int, text: str) -> None:
        """Replace the text of one row (what typing in a row's text box does). On error nothing changes."""
        if isinstance(row, bool) or not isinstance(row, int):
            raise TypeError(f"row must be an int, got {type(row).__name__}")
        if not 0 <= row < len(self.texts):
            raise IndexError(f"row {row} does not exist: the heatmap has rows 0…{len(self.texts) - 1}")
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        texts = list(self.texts)
        texts[row] = text
        if len(texts) == 1 or self.values is None:
            self.set_texts(texts)
            return
        # Only the edited row runs, at its real length: the other rows' activations do not change
        # (each row sees only its own tokens; padding is masked out).
        batch = self._prepare(texts)
        capture = self._run(self.layer, self.adapter([text]))
        self._batch = batch
        self._inputs = batch.inputs
        self._show(self._with_row(capture, row, batch), self.layer)

    def _with_row(self, capture: Capture, row: int, batch: _TextBatch) -> Capture:
        """A capture of the whole batch: the current values with ``row`` replaced by ``capture``'s one row,
        every row padded (with zeros, which no view draws) to the batch's token count."""
        fresh = capture[self.layer]
        new = fresh.values[0].float().cpu()
        positions = int(batch.inputs["input_ids"].shape[1])
        values = torch.zeros(len(batch.texts), positions, new.shape[-1])
        kept = min(positions, self.num_positions)
        values[:, :kept] = torch.from_numpy(self.values[:, :kept])
        values[row] = 0
        values[row, : new.shape[0]] = new
        return Capture({self.layer: Activations(self.layer, values, "last")}, capture.output)

    def set_input(self, inputs: str | Sequence[str]) -> None:
        """The same as :meth:`set_texts`: a TokenHeatmap's inputs are texts."""
        self.set_texts(inputs)

    def most_active_unit(self) -> int:
        """The unit with the largest activation at an ordinary token of the texts.

        The tokenizer's special tokens (``[CLS]``, ``[SEP]``, …) do not count unless there are no
        others: transformers put outsized activations on them in a few units, which would then
        colour every other token white.
        """
        ids = self._batch.inputs["input_ids"]
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

    # -- internals -----------------------------------------------------------------------------

    def _prepare(self, texts: str | Sequence[str]) -> _TextBatch:
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
        return _TextBatch(texts, inputs, tokens, notice)

    def _show(self, capture: Capture, layer: str) -> None:
        batch = self._batch
        with self.hold_sync():
            self.set_trait("texts", list(batch.texts))
            self.set_trait("tokens", batch.tokens)
            self.set_trait("notice", batch.notice)
            self.set_trait("lengths", [len(row) for row in batch.tokens])
            super()._show(capture, layer)
            if self.position >= len(batch.tokens[self.example]):  # a padded position of that row
                self.position = -1
            self._update_attribution()

    def _update_attribution(self) -> None:
        """The current row's attributions to the selected unit, when that is what is shown."""
        if self.show != "attribution" or self.values is None or not self.selected_units:
            with self.hold_sync():
                self.set_trait("attribution", None)
                self.set_trait("attribution_info", {})
            return
        unit, method, row = self.selected_units[0], self.attribution_method, self.example
        position = self.position if self.position >= 0 else None
        info = {"method": method, "layer": self.layer, "unit": unit, "example": row, "position": self.position}
        with self.reporting_errors(f"computing the {method} attribution of unit {unit}"):
            start = time.perf_counter()
            inputs = self.adapter([self.texts[row]])  # the row alone, unpadded: its tokens are the positions
            options = {"size": 1} if method == "occlusion" else {}
            values = attribute(self.probe, inputs, self.layer, unit, method, position=position, **options)
            tokens = values[0].float().cpu().numpy()
            with self.hold_sync():
                self.set_trait("attribution", tokens)
                seconds = round(time.perf_counter() - start, 6)
                self.set_trait("attribution_info", {**info, "seconds": seconds, "nan": int(np.isnan(tokens).sum())})

    @traitlets.observe("show", "selected_units", "position", "example", "attribution_method")
    def _attribution_target_changed(self, change: dict) -> None:
        if self.values is not None and (change["name"] == "show" or self.show == "attribution"):
            self._update_attribution()

    @handles("set_text")
    def _on_set_text(self, row: int, text: str) -> None:
        self.set_text(row, text)
