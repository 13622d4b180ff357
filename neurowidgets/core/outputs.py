"""What an intervention changes in a model's output: a readout per example, and a before/after comparison.

A readout is one vector per example of the batch, chosen by what the output is:

- ``"classes"``: a (batch, classes) output → class probabilities (softmax);
- ``"tokens"``: language-model logits (batch, tokens, vocab) → log-probabilities over the vocabulary at
  the predicted position (the first ``[MASK]`` token when the input has one, else the last valid token);
- ``"vector"``: any other output (embeddings, hidden states) → the output itself, flattened per example
  (averaged over the valid tokens when it is (batch, tokens, features) for a text input).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .inputs import first_tensor

KINDS = ("classes", "tokens", "vector")
MAX_CLASSES_SHOWN = 20  # more classes than this: only the top ones of before and after are compared


def logits_of(output: Any) -> torch.Tensor:
    """The model's output tensor: the output itself, ``.logits`` of a transformers output, else the first
    floating-point tensor found in it."""
    logits = getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        logits = first_tensor(output)
    if logits is None:
        raise TypeError(f"the model's output ({type(output).__name__}) holds no tensor to compare")
    if not logits.is_floating_point():
        raise TypeError(f"the model's output is a {logits.dtype} tensor; comparing outputs needs floating point")
    return logits.detach().float().cpu()


def output_kind(logits: torch.Tensor, vocab_size: int | None = None) -> str:
    """``"classes"`` for (batch, classes), ``"tokens"`` for (batch, tokens, vocab) when the last dimension
    covers the tokenizer's ``vocab_size``, else ``"vector"``."""
    if logits.ndim == 2 and logits.shape[1] > 1:
        return "classes"
    if logits.ndim == 3 and vocab_size is not None and logits.shape[2] >= vocab_size:
        return "tokens"
    return "vector"


def class_probabilities(logits: torch.Tensor) -> np.ndarray:
    """Softmax over the classes of a (batch, classes) output."""
    if logits.ndim != 2:
        raise ValueError(f"class probabilities need (batch, classes) logits, got shape {tuple(logits.shape)}")
    return torch.softmax(logits.float(), dim=1).numpy()


def prediction_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, mask_token_id: int | None = None
) -> np.ndarray:
    """Per row: the first ``mask_token_id`` among the valid tokens, else the last valid token."""
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}")
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    if valid.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(valid.shape)} does not match input_ids {tuple(input_ids.shape)}")
    lengths = valid.sum(dim=1)
    if (lengths == 0).any():
        raise ValueError(f"row {int((lengths == 0).nonzero()[0])} has no valid token (its attention mask is all 0)")
    # Right padding is not assumed: the last valid token is the last 1 of the mask.
    steps = torch.arange(input_ids.shape[1])
    positions = torch.where(valid, steps, -1).amax(dim=1)
    if mask_token_id is not None:
        masked = (input_ids == mask_token_id) & valid
        first = torch.where(masked, steps, input_ids.shape[1]).amin(dim=1)
        positions = torch.where(masked.any(dim=1), first, positions)
    return positions.numpy()


def token_log_probs(logits: torch.Tensor, positions: Sequence[int] | np.ndarray) -> np.ndarray:
    """Log-probabilities over the vocabulary at ``positions[row]`` of each row of (batch, tokens, vocab)."""
    if logits.ndim != 3:
        raise ValueError(f"token log-probabilities need (batch, tokens, vocab) logits, got {tuple(logits.shape)}")
    positions = torch.as_tensor(np.asarray(positions), dtype=torch.long)
    if positions.shape != (logits.shape[0],):
        raise ValueError(f"need one position per row ({logits.shape[0]}), got {tuple(positions.shape)}")
    picked = logits[torch.arange(logits.shape[0]), positions]
    return torch.log_softmax(picked.float(), dim=-1).numpy()


def output_vectors(logits: torch.Tensor, attention_mask: torch.Tensor | None = None) -> np.ndarray:
    """One vector per example: the mean over valid tokens of a (batch, tokens, features) output with a
    matching attention mask (how sentence embeddings pool), else the example's output flattened."""
    if logits.ndim == 0:
        raise ValueError("the model's output is a scalar: there is nothing per example to compare")
    if logits.ndim == 3 and attention_mask is not None and tuple(attention_mask.shape) == tuple(logits.shape[:2]):
        weights = attention_mask.float().unsqueeze(-1)
        return ((logits * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)).numpy()
    return logits.reshape(logits.shape[0], -1).numpy()


def readout(output: Any, kind: str, inputs: Any = None, mask_token_id: int | None = None) -> np.ndarray:
    """The (batch, d) readout of ``kind`` (see the module docstring) of a model output on ``inputs``."""
    logits = logits_of(output)
    mask = inputs.get("attention_mask") if isinstance(inputs, Mapping) else None
    if kind == "classes":
        return class_probabilities(logits)
    if kind == "tokens":
        if not isinstance(inputs, Mapping) or "input_ids" not in inputs:
            raise ValueError("token predictions need the tokenizer's inputs (a mapping with input_ids)")
        ids = inputs["input_ids"].cpu()
        if tuple(ids.shape) != tuple(logits.shape[:2]):
            raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(ids.shape)}")
        positions = prediction_positions(ids, None if mask is None else mask.cpu(), mask_token_id)
        return token_log_probs(logits, positions)
    if kind == "vector":
        return output_vectors(logits, None if mask is None else mask.cpu())
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


@dataclass(frozen=True)
class Comparison:
    """One example's readout before and after an edit, reduced to the entries worth showing.

    ``index`` are the entries of the readout shown (classes, token ids or components), ``labels`` their
    names, ``before``/``after`` their values; ``summary`` says the change in one line.
    """

    kind: str
    index: np.ndarray
    labels: list[str]
    before: np.ndarray
    after: np.ndarray
    summary: str

    @property
    def change(self) -> np.ndarray:
        return self.after - self.before


def _top(values: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-values, kind="stable")[:k]


def _union(*groups: np.ndarray) -> np.ndarray:
    return np.array(list(dict.fromkeys(int(i) for group in groups for i in group)), dtype=np.int64)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norms) if norms > 0 else float(np.array_equal(a, b))


def compare(
    kind: str, before: np.ndarray, after: np.ndarray, name: Callable[[int], str] = str, k: int = 8
) -> Comparison:
    """Compare one example's readouts. ``name(i)`` names entry ``i`` (a class name, a token's text).

    - classes: every class (the top ``k`` of before and after when there are more than 20);
      summary ``p(3): 0.92 → 0.41``, plus the new top class when it changed;
    - tokens: the union of the top ``k`` tokens before and after, log-probabilities;
    - vector: the ``k`` most changed components; summary: cosine similarity and the norm of the change.
    """
    before, after = np.asarray(before, dtype=np.float64), np.asarray(after, dtype=np.float64)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError(f"before and after must be vectors of one shape, got {before.shape} and {after.shape}")
    if kind == "classes":
        index = np.arange(len(before)) if len(before) <= MAX_CLASSES_SHOWN else _union(_top(before, k), _top(after, k))
        top, now = int(np.argmax(before)), int(np.argmax(after))
        summary = f"p({name(top)}): {before[top]:.2f} → {after[top]:.2f}"
        if now != top:
            summary += f"; now {name(now)} ({after[now]:.2f})"
    elif kind == "tokens":
        index = _union(_top(before, k), _top(after, k))
        top, now = int(np.argmax(before)), int(np.argmax(after))
        summary = f"top token {name(top)!r}: log p {before[top]:.2f} → {after[top]:.2f}"
        if now != top:
            summary += f"; now {name(now)!r} ({after[now]:.2f})"
    elif kind == "vector":
        index = _top(np.abs(after - before), k)
        summary = (
            f"cosine similarity {cosine_similarity(before, after):.3f}, "
            f"|change| {float(np.linalg.norm(after - before)):.3g}"
        )
    else:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    labels = _unique([name(int(i)) for i in index])
    return Comparison(kind, index, labels, before[index], after[index], summary)


def _unique(labels: list[str]) -> list[str]:
    """Labels are a plot's categories: two entries with one name (e.g. two tokens that print alike) get
    their position appended."""
    seen: dict[str, int] = {}
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
    return [f"{label} #{i}" if seen[label] > 1 else label for i, label in enumerate(labels)]


def next_token_hits(
    logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> tuple[int, int]:
    """For a causal language model on a batch of texts: (hits, predictions) over every pair of
    consecutive valid tokens, a hit when the top prediction at a token is the text's next token."""
    if logits.ndim != 3 or tuple(logits.shape[:2]) != tuple(input_ids.shape):
        raise ValueError(f"logits {tuple(logits.shape)} do not match input_ids {tuple(input_ids.shape)}")
    valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    scored = valid[:, :-1] & valid[:, 1:]
    hits = (logits[:, :-1].argmax(dim=-1) == input_ids[:, 1:]) & scored
    return int(hits.sum()), int(scored.sum())


def top1_changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per example (row): whether the top entry (class or token) differs after the edit."""
    return np.argmax(before, axis=1) != np.argmax(after, axis=1)


def accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows whose top class is the label."""
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(probabilities):
        raise ValueError(f"{len(labels)} labels for {len(probabilities)} examples")
    return float(np.mean(np.argmax(probabilities, axis=1) == labels))
