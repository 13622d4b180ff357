"""LogitLens: the logit lens of the current text and the direct logit attribution of its selected token."""

from __future__ import annotations

from typing import Any

import numpy as np
import traitlets

from ..core.layers import MLP, map_layers
from ..core.reading import LensTable, TextReading, attribution, default_target, lens_at, lens_table_steps
from . import background
from .base import bundle, handles
from .lm_text import LMTextView
from .wire import FLOAT32_ARRAY, encode

INTS = {
    "to_json": lambda value, widget: None if value is None else encode(value, "int32"),
    "from_json": lambda value, widget: value,
}
TOP = 5


class LogitLens(LMTextView):
    """What each block's residual stream predicts (the logit lens), and which blocks and heads write the
    selected token's prediction (direct logit attribution), for the current text.

    - The lens: each block's output through the model's final norm and unembedding. ``lens_tokens``
      (blocks × positions) are the top tokens (text), ``lens_probs`` their probabilities and ``lens_ids``
      their ids; the last block's row is the model's own prediction. The table costs about two forward
      passes of a GPT-2-size model (the unembedding on every block), so it is computed in the
      background after the rest is shown (``lens_progress`` goes from 0 to 1; a new text cancels it;
      in a script, ``neurowidgets.widgets.background.wait(view)`` waits for it). ``top_tokens``, ``top_probs`` and
      ``top_ids`` give the top 5 of every block at ``shown_position`` (the selected position, else the
      last).
    - The attribution at ``shown_position`` of ``target`` (a token id: the next token of the text by
      default, the model's own prediction at the last position, or the token the user typed,
      ``target_text``): ``dla`` holds the share of each of ``dla_labels`` (the embeddings, then each
      block's attention and MLP outputs, named by ``dla_layers``) in the target's logit, ``dla_heads``
      (blocks, heads) each head's share. Shares are exact given the final norm's scale of this
      position's residual (``dla_info["scale"]``, which they are divided by): they add up, with
      ``dla_info["constant"]`` (the norm's and the unembedding's biases), to the logit.
      A bar's click opens that layer (:meth:`open_layer`: the shared layer of a linked explorer).

    A model without an unembedding (an encoder with no language-model head) shows its tokens and
    ``unavailable`` says that these readings need one; a post-norm model (BERT) shows the lens and
    ``attribution_note`` says why there is no attribution.
    """

    _esm = bundle("logit_lens")

    unavailable = traitlets.Unicode("", read_only=True).tag(sync=True)
    attribution_note = traitlets.Unicode("", read_only=True).tag(sync=True)
    lens_tokens = traitlets.List(traitlets.List(traitlets.Unicode()), read_only=True).tag(sync=True)
    lens_probs = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY)
    lens_ids = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **INTS)
    lens_progress = traitlets.Float(1.0, read_only=True).tag(sync=True)
    shown_position = traitlets.Int(-1, read_only=True).tag(sync=True)
    top_tokens = traitlets.List(traitlets.List(traitlets.Unicode()), read_only=True).tag(sync=True)
    top_probs = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY)
    top_ids = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **INTS)
    target_text = traitlets.Unicode("", read_only=True).tag(sync=True)
    target = traitlets.Int(-1, read_only=True).tag(sync=True)
    target_token = traitlets.Unicode("", read_only=True).tag(sync=True)
    target_note = traitlets.Unicode("", read_only=True).tag(sync=True)
    dla_labels = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    dla_layers = traitlets.List(traitlets.Unicode(), read_only=True).tag(sync=True)
    dla = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY)
    dla_heads = traitlets.Any(None, allow_none=True, read_only=True).tag(sync=True, **FLOAT32_ARRAY)
    dla_info = traitlets.Dict(read_only=True).tag(sync=True)

    def __init__(self, model: Any, texts: Any, tokenizer: Any, max_length: int | None = None, **kwargs: Any):
        self._neuron_layers: list[str] | None = None
        super().__init__(model, texts, tokenizer, max_length, **kwargs)

    # -- public --------------------------------------------------------------------------------

    def set_target(self, text: str) -> None:
        """Attribute the logit of the token ``text`` (a token as the tokenizer writes it, or a word whose
        first token is taken; ``"#123"`` is id 123); ``""`` goes back to the next token."""
        previous = self.target_text
        self.set_trait("target_text", str(text))
        try:
            self._attribute()
        except Exception:
            self.set_trait("target_text", previous)
            raise

    # -- requests from the page ----------------------------------------------------------------

    @handles("set_target")
    def _set_target(self, text: str) -> None:
        self.set_target(text)

    @handles("open_component")
    def _open_component(self, index: int) -> None:
        self.open_layer(self._layer_to_open(int(index)))

    # -- what is drawn ---------------------------------------------------------------------------

    def _show(self, reading: TextReading) -> None:
        self.set_trait("unavailable", reading.logit_error)
        self.set_trait("attribution_note", reading.attribution_error if not reading.logit_error else "")
        if reading.readout is None:
            for name in ("lens_probs", "lens_ids", "top_probs", "top_ids", "dla", "dla_heads"):
                self.set_trait(name, None)
            for name in ("lens_tokens", "top_tokens", "dla_labels", "dla_layers"):
                self.set_trait(name, [])
            self.set_trait("dla_info", {})
            return
        self._position_chosen()  # first what the selected position needs, then the whole table
        table = reading.derived.get("lens")
        if table is not None:
            self._publish_table(reading, table)
            return
        for name in ("lens_probs", "lens_ids"):
            self.set_trait(name, None)
        self.set_trait("lens_tokens", [])
        self.set_trait("lens_progress", 0.0)
        background.submit(
            self,
            "lens",
            self.probe,
            lambda probe: lens_table_steps(reading),
            lambda table, seconds: self._publish_table(reading, table),
            lambda done, seconds: self.set_trait("lens_progress", float(done)) if self.reading is reading else None,
            "computing the logit lens table",
        )

    def _publish_table(self, reading: TextReading, table: LensTable) -> None:
        reading.derived["lens"] = table
        if self.reading is not reading:
            return
        with self.hold_sync():
            self.set_trait("lens_ids", table.ids.astype(np.int32))
            self.set_trait("lens_tokens", [self._strings(row) for row in table.ids])
            self.set_trait("lens_probs", table.probs)
            self.set_trait("lens_progress", 1.0)

    def _position_chosen(self) -> None:
        reading = self.reading
        if reading is None or reading.readout is None:
            return
        position = self.position if self.position >= 0 else reading.length - 1
        ids, probs = lens_at(reading, position, TOP)
        with self.hold_sync():
            self.set_trait("shown_position", position)
            self.set_trait("top_ids", ids.astype(np.int32))
            self.set_trait("top_tokens", [self._strings(row) for row in ids])
            self.set_trait("top_probs", probs)
            self._attribute()

    def _attribute(self) -> None:
        reading = self.reading
        if reading is None or reading.readout is None:
            return
        position = self.shown_position
        target, note = self._target_id(reading, position)
        with self.hold_sync():
            self.set_trait("target", target)
            self.set_trait("target_token", self._strings([target])[0])
            self.set_trait("target_note", note)
            if not reading.components:
                self.set_trait("dla", None)
                self.set_trait("dla_heads", None)
                self.set_trait("dla_info", {})
                return
            result = attribution(reading, position, target)
            names = list(result.parts)
            self.set_trait("dla_layers", names)
            self.set_trait("dla_labels", [self._label(name) for name in names])
            self.set_trait("dla", np.array([result.parts[n] for n in names], np.float32))
            heads = [result.heads.get(p.attention, []) for p in reading.parts]
            width = max((len(h) for h in heads), default=0)
            table = np.full((len(heads), width), np.nan, np.float32)
            for i, row in enumerate(heads):
                table[i, : len(row)] = row
            self.set_trait("dla_heads", table)
            self.set_trait(
                "dla_info",
                {
                    "position": position,
                    "target": target,
                    "logit": result.logit,
                    "constant": result.constant,
                    "scale": result.scale,
                    "total": result.total,
                },
            )

    def _target_id(self, reading: TextReading, position: int) -> tuple[int, str]:
        text = self.target_text
        if not text:
            default = default_target(reading, position)
            why = "the next token" if position + 1 < reading.length else "the model's prediction (last position)"
            return default, why
        tokenizer = self.adapter.tokenizer
        vocab = int(reading.readout.weight.shape[0])
        if text.startswith("#") and text[1:].isdigit():
            token = int(text[1:])
            if not 0 <= token < vocab:
                raise IndexError(f"token id {token} does not exist: the vocabulary has ids 0…{vocab - 1}")
            return token, f"token id {token}"
        token = tokenizer.convert_tokens_to_ids(text)
        unknown = getattr(tokenizer, "unk_token_id", None)
        if isinstance(token, int) and token != unknown and 0 <= token < vocab:
            return token, "the typed token"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"{text!r} has no tokens")
        pieces = tokenizer.convert_ids_to_tokens(ids)
        note = "the typed token" if len(ids) == 1 else f"the first of its {len(ids)} tokens ({' '.join(pieces)})"
        return int(ids[0]), note

    def _strings(self, ids: Any) -> list[str]:
        return [str(t) for t in self.adapter.tokenizer.convert_ids_to_tokens([int(i) for i in ids])]

    def _label(self, name: str) -> str:
        if name == "embeddings":
            return "embeddings"
        index = self._block_of(name)
        kind = "attn" if any(p.attention == name for p in self.reading.parts) else "mlp"
        return f"{index} {kind}"

    def _layer_to_open(self, index: int) -> str:
        names = self.dla_layers
        if not 0 <= index < len(names):
            raise IndexError(f"component {index} does not exist: there are {len(names)}")
        name = names[index]
        if name == "embeddings":
            return self.reading.parts[0].name
        block = self._block_of(name)
        if block is not None and any(p.mlp == name for p in self.reading.parts):
            prefix = self.blocks[block] + "."
            neurons = [n for n in self._neurons() if n.startswith(prefix)]
            if neurons:
                return neurons[0]
        return name

    def _neurons(self) -> list[str]:
        """The MLP neuron layers (the linked explorer's picker, else traced once)."""
        explorer = self._explorer
        groups = getattr(explorer, "layer_groups", None) or []
        for group in groups:
            if group.get("label") == MLP:
                return list(group.get("layers", []))
        if self._neuron_layers is None:
            self._neuron_layers = map_layers(self.probe, self.reading.inputs).neurons
        return self._neuron_layers
