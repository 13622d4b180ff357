"""Text as model input: strings → a tokenizer batch, token ids → the token strings a view draws."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch


class TextAdapter:
    """Turn strings into model inputs with a Hugging Face tokenizer, and ids back into tokens.

    ``adapter(texts)`` returns a dict of tensors (``input_ids``, ``attention_mask``, ...) padded on the
    right to the longest text of the batch and truncated to ``max_length`` tokens, so that position
    ``t`` of a layer is token ``t`` of ``adapter.tokens(text)`` whatever the batch. Any other keyword
    goes to the tokenizer call (e.g. ``add_special_tokens=False``).
    """

    def __init__(self, tokenizer: Any, max_length: int = 128, **tokenizer_kwargs: Any):
        if not callable(tokenizer) or not hasattr(tokenizer, "convert_ids_to_tokens"):
            raise TypeError(
                "TextAdapter needs a Hugging Face tokenizer (callable, with convert_ids_to_tokens), "
                f"got {type(tokenizer).__name__}"
            )
        if int(max_length) < 1:
            raise ValueError(f"max_length must be at least 1, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.tokenizer_kwargs = tokenizer_kwargs

    def __call__(self, texts: str | Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"TextAdapter takes strings, got {type(bad).__name__}")
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            padding_side="right",
            **self.tokenizer_kwargs,
        )
        return dict(encoded)

    def ids(self, text: str) -> list[int]:
        """The token ids of one text, as the adapter feeds them (truncated, unpadded)."""
        encoded = self.tokenizer(text, truncation=True, max_length=self.max_length, **self.tokenizer_kwargs)
        return list(encoded["input_ids"])

    def tokens(self, text_or_ids: str | Sequence[int] | torch.Tensor) -> list[str]:
        """The token strings exactly as the tokenizer splits them (``convert_ids_to_tokens``).

        A string is tokenized as :meth:`__call__` does (same truncation and special tokens); ids
        (a list or a 1-D tensor, e.g. a row of a batch's ``input_ids``) are converted as they are.
        """
        if isinstance(text_or_ids, str):
            ids = self.ids(text_or_ids)
        elif isinstance(text_or_ids, torch.Tensor):
            if text_or_ids.ndim != 1:
                shape = tuple(text_or_ids.shape)
                raise ValueError(f"tokens takes one sequence of ids, got a tensor of shape {shape}")
            ids = text_or_ids.tolist()
        else:
            ids = [int(i) for i in text_or_ids]
        return list(self.tokenizer.convert_ids_to_tokens(ids))

    def fingerprint(self) -> str:
        """A hash of everything that decides the tokens: the tokenizer's definition and the settings."""
        digest = hashlib.sha256()
        tok = self.tokenizer
        digest.update(type(tok).__qualname__.encode())
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "to_str"):
            definition = json.loads(backend.to_str())
            for transient in ("truncation", "padding"):  # left over from the last call
                definition.pop(transient, None)
            digest.update(json.dumps(definition, sort_keys=True).encode())
        else:
            digest.update(json.dumps(sorted(tok.get_vocab().items())).encode())
        specials = getattr(tok, "special_tokens_map", {})
        settings = {"max_length": self.max_length, "kwargs": self.tokenizer_kwargs, "special": specials}
        digest.update(json.dumps(settings, sort_keys=True, default=repr).encode())
        return digest.hexdigest()

    def settings(self) -> dict[str, Any]:
        """What a scan records to tokenize its examples again as it did (see :func:`scanned_adapter`):
        ``max_length`` and the tokenizer options that can be saved (JSON values)."""
        kept = {}
        for key, value in self.tokenizer_kwargs.items():
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            kept[key] = value
        return {"max_length": self.max_length, "tokenizer_kwargs": kept}

    def __repr__(self) -> str:
        return f"TextAdapter({type(self.tokenizer).__name__}, max_length={self.max_length})"


def scanned_adapter(info: dict[str, Any], text: Any) -> TextAdapter | None:
    """The adapter that tokenizes examples as the scan whose ``info`` this is did: ``text`` (a tokenizer
    or a TextAdapter) with the scan's recorded ``max_length`` and tokenizer options, not the live
    input's (a card must show exactly the tokens that were scanned). None when ``text`` is None."""
    if text is None:
        return None
    if not isinstance(text, TextAdapter):
        text = TextAdapter(text)
    max_length = info.get("max_length", text.max_length)
    kwargs = info.get("tokenizer_kwargs", text.tokenizer_kwargs)
    if max_length == text.max_length and kwargs == text.tokenizer_kwargs:
        return text
    return TextAdapter(text.tokenizer, max_length, **kwargs)
