"""What an edit does to a model's output over a sample of data.

Each batch of the sample is read out with and without the edit (see outputs.py for the readouts);
:func:`sample_effect` adds the two up: how many examples' top prediction the edit changed (the mean
cosine similarity for vector outputs), and the accuracy before and after, against labels for a
classifier or against the texts' own next tokens for a causal language model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .edits import Edit
from .outputs import accuracy, cosine_similarity, logits_of, next_token_hits, readout, top1_changed
from .probe import Probe


@dataclass(frozen=True)
class Readouts:
    """A sample's readouts (one row per example) and, for a causal language model, how many of the
    next tokens of its texts the model predicted right (``hits``) out of how many (``predictions``)."""

    values: np.ndarray
    hits: int = 0
    predictions: int = 0

    def __len__(self) -> int:
        return len(self.values)

    @classmethod
    def concat(cls, parts: Sequence[Readouts]) -> Readouts:
        """The readouts of the batches ``parts`` one after the other."""
        return cls(
            np.concatenate([part.values for part in parts]),
            sum(part.hits for part in parts),
            sum(part.predictions for part in parts),
        )


def edited_output(probe: Probe, inputs: Any, layer: str, edit: Edit | None) -> Any:
    """The model's output on ``inputs`` with ``edit`` applied to ``layer`` (``None``: the plain output)."""
    if edit is None:
        return probe.run(inputs, []).output
    with probe.edit({layer: edit}):
        return probe.run(inputs, []).output


def is_causal_lm(model: Any, kind: str) -> bool:
    """Whether ``model`` predicts the next token (a transformers model that can generate; a masked
    language model cannot): then its accuracy over the data's own texts is measurable."""
    can_generate = getattr(model, "can_generate", None)
    return kind == "tokens" and callable(can_generate) and bool(can_generate())


def batch_readouts(
    probe: Probe,
    inputs: Any,
    kind: str,
    layer: str,
    edit: Edit | None = None,
    mask_token_id: int | None = None,
    causal: bool = False,
) -> Readouts:
    """One batch's readouts (``kind``, see outputs.py) with ``edit`` applied to ``layer``; with
    ``causal`` (see :func:`is_causal_lm`) and token ids in ``inputs``, its next-token hits too."""
    output = edited_output(probe, inputs, layer, edit)
    ids = inputs.get("input_ids") if isinstance(inputs, Mapping) else None
    hits = predictions = 0
    if causal and ids is not None and tuple(logits_of(output).shape[:2]) == tuple(ids.shape):
        mask = inputs.get("attention_mask")
        hits, predictions = next_token_hits(logits_of(output), ids.cpu(), None if mask is None else mask.cpu())
    return Readouts(readout(output, kind, inputs, mask_token_id), hits, predictions)


def sample_effect(
    kind: str, before: Readouts, after: Readouts, labels: np.ndarray | None = None
) -> tuple[dict[str, Any], str]:
    """The effect of an edit over a sample, from its readouts without and with the edit: a dict
    (``examples``; ``changed``, the examples whose top prediction changed, or ``cosine_similarity``, the
    mean over the examples for ``"vector"`` outputs; ``accuracy_before`` and ``accuracy_after`` given a
    classifier's ``labels``, one per example, or a causal language model's hits), and a sentence."""
    count = len(before)
    if kind == "vector":
        similarity = float(np.mean([cosine_similarity(b, a) for b, a in zip(before.values, after.values, strict=True)]))
        text = f"over {count} examples of the data: mean cosine similarity of the output {similarity:.3f}"
        return {"examples": count, "cosine_similarity": similarity}, text
    changed = int(top1_changed(before.values, after.values).sum())
    effect: dict[str, Any] = {"examples": count, "changed": changed}
    # For a language model: the one prediction shown, at the [MASK] or the last token.
    what = "top class" if kind == "classes" else "top predicted token"
    parts = [f"{what} changed on {changed} ({changed / count:.0%})"]
    if labels is not None and kind == "classes":
        effect.update(accuracy_before=accuracy(before.values, labels), accuracy_after=accuracy(after.values, labels))
        parts.insert(0, f"accuracy {effect['accuracy_before']:.1%} → {effect['accuracy_after']:.1%}")
    if before.predictions:  # a causal language model: does it still predict the texts' next tokens?
        effect.update(accuracy_before=before.hits / before.predictions, accuracy_after=after.hits / after.predictions)
        parts.insert(
            0,
            f"next-token accuracy {effect['accuracy_before']:.1%} → {effect['accuracy_after']:.1%} "
            f"({before.predictions} predictions)",
        )
    return effect, f"over {count} examples of the data: {'; '.join(parts)}"
