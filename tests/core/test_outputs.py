"""Readouts of a model's output (class probabilities, token log-probabilities, vectors) and their
before/after comparison, against numpy written out by hand."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from neurowidgets.core.outputs import (
    accuracy,
    class_probabilities,
    compare,
    cosine_similarity,
    logits_of,
    next_token_hits,
    output_kind,
    output_vectors,
    prediction_positions,
    readout,
    token_log_probs,
    top1_changed,
)


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class LMOutput:  # like transformers' MaskedLMOutput: loss first (None), then logits
    loss: torch.Tensor | None
    logits: torch.Tensor


def test_logits_of_finds_the_output_tensor():
    logits = torch.randn(2, 3)
    assert torch.equal(logits_of(logits), logits)
    assert torch.equal(logits_of((logits, torch.randn(5))), logits)
    assert torch.equal(logits_of(LMOutput(None, logits)), logits)
    assert torch.equal(logits_of({"hidden": logits.double()}), logits)  # made float32
    with pytest.raises(TypeError, match="holds no tensor"):
        logits_of({"a": "b"})
    with pytest.raises(TypeError, match=r"torch\.int64 tensor"):
        logits_of(torch.arange(4).reshape(2, 2))


def test_output_kind():
    assert output_kind(torch.zeros(4, 10)) == "classes"
    assert output_kind(torch.zeros(4, 1)) == "vector"  # one logit is a score, not a choice of classes
    assert output_kind(torch.zeros(2, 5, 100), vocab_size=100) == "tokens"
    assert output_kind(torch.zeros(2, 5, 128), vocab_size=100) == "tokens"  # a padded vocabulary
    assert output_kind(torch.zeros(2, 5, 32), vocab_size=100) == "vector"  # hidden states
    assert output_kind(torch.zeros(2, 5, 100)) == "vector"  # no tokenizer: not known to be tokens


def test_class_probabilities_are_the_softmax():
    logits = torch.randn(3, 7) * 4
    np.testing.assert_allclose(class_probabilities(logits), np_softmax(logits.numpy()), rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(batch, classes\)"):
        class_probabilities(torch.zeros(2, 3, 4))


def test_prediction_positions_mask_else_last_valid_token():
    ids = torch.tensor([[1, 5, 9, 2, 0, 0], [1, 5, 6, 7, 8, 2], [0, 0, 1, 9, 9, 2]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6, [0, 0, 1, 1, 1, 1]])
    # Row 0: the mask token 9 at 2; row 1: no mask token, last token; row 2 (left padded): the first 9.
    assert prediction_positions(ids, mask, mask_token_id=9).tolist() == [2, 5, 3]
    assert prediction_positions(ids, mask).tolist() == [3, 5, 5]
    assert prediction_positions(ids).tolist() == [5, 5, 5]
    padded_mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    assert prediction_positions(torch.tensor([[1, 2, 3, 4, 9, 9]]), padded_mask, 9).tolist() == [3]  # padding
    with pytest.raises(ValueError, match="row 1 has no valid token"):
        prediction_positions(ids[:2], torch.tensor([[1] * 6, [0] * 6]))
    with pytest.raises(ValueError, match="does not match"):
        prediction_positions(ids, mask[:, :3])
    with pytest.raises(ValueError, match=r"\(batch, tokens\)"):
        prediction_positions(ids[0])


def test_token_log_probs_at_the_positions():
    logits = torch.randn(2, 4, 11)
    got = token_log_probs(logits, [3, 1])
    for row, position in enumerate([3, 1]):
        x = logits[row, position].numpy()
        np.testing.assert_allclose(got[row], x - np.log(np.exp(x).sum()), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"one position per row \(2\)"):
        token_log_probs(logits, [1])
    with pytest.raises(ValueError, match="vocab"):
        token_log_probs(torch.zeros(2, 11), [0, 0])


def test_output_vectors_pool_valid_tokens_else_flatten():
    hidden = torch.randn(2, 3, 4)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    pooled = output_vectors(hidden, mask)
    np.testing.assert_allclose(pooled[0], hidden[0, :2].mean(dim=0).numpy(), rtol=1e-5)
    np.testing.assert_allclose(pooled[1], hidden[1].mean(dim=0).numpy(), rtol=1e-5)
    assert output_vectors(hidden).shape == (2, 12)
    assert output_vectors(torch.zeros(5, 2, 2, 2)).shape == (5, 8)
    with pytest.raises(ValueError, match="scalar"):
        output_vectors(torch.tensor(1.0))


def test_readout_of_a_language_model_output():
    logits = torch.randn(2, 4, 10)
    inputs = {
        "input_ids": torch.tensor([[1, 7, 3, 2], [1, 3, 2, 0]]),
        "attention_mask": torch.tensor([[1] * 4, [1, 1, 1, 0]]),
    }
    got = readout(LMOutput(None, logits), "tokens", inputs, mask_token_id=7)
    np.testing.assert_allclose(got, token_log_probs(logits, [1, 2]))
    np.testing.assert_allclose(readout(logits, "vector", inputs), output_vectors(logits, inputs["attention_mask"]))
    with pytest.raises(ValueError, match="input_ids"):
        readout(logits, "tokens", torch.zeros(2, 4))
    with pytest.raises(ValueError, match="do not match input_ids"):
        readout(logits[:, :3], "tokens", inputs)
    with pytest.raises(ValueError, match="kind must be one of"):
        readout(logits, "pixels", inputs)


def test_compare_classes_summary_and_entries():
    before = np.array([0.05, 0.92, 0.03])
    after = np.array([0.5, 0.41, 0.09])
    c = compare("classes", before, after, name=lambda i: "abc"[i])
    assert c.summary == "p(b): 0.92 → 0.41; now a (0.50)"
    assert c.labels == ["a", "b", "c"] and c.index.tolist() == [0, 1, 2]
    np.testing.assert_allclose(c.change, after - before)
    assert compare("classes", before, before).summary == "p(1): 0.92 → 0.92"
    many = np.linspace(0, 1, 50)
    shown = compare("classes", many, many[::-1], k=3)
    assert shown.index.tolist() == [49, 48, 47, 0, 1, 2]  # the top 3 before, then the top 3 after


def test_compare_tokens_union_of_top_k():
    before = np.log(np.array([0.5, 0.3, 0.1, 0.05, 0.05]))
    after = np.log(np.array([0.05, 0.3, 0.1, 0.05, 0.5]))
    c = compare("tokens", before, after, name=lambda i: f"t{i}", k=2)
    assert c.labels == ["t0", "t1", "t4"]
    np.testing.assert_allclose(c.before, before[[0, 1, 4]])
    assert c.summary == f"top token 't0': log p {before[0]:.2f} → {after[0]:.2f}; now 't4' ({after[4]:.2f})"


def test_compare_vectors_most_changed_components():
    before = np.array([1.0, 0.0, 2.0, 0.0])
    after = np.array([1.0, 3.0, 1.0, 0.0])
    c = compare("vector", before, after, k=2)
    assert c.index.tolist() == [1, 2]
    cos = before @ after / (np.linalg.norm(before) * np.linalg.norm(after))
    assert c.summary == f"cosine similarity {cos:.3f}, |change| {np.linalg.norm(after - before):.3g}"


def test_compare_errors_and_duplicate_names():
    with pytest.raises(ValueError, match="one shape"):
        compare("classes", np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="kind must be one of"):
        compare("pixels", np.zeros(3), np.zeros(3))
    c = compare("classes", np.array([0.2, 0.3, 0.5]), np.array([0.2, 0.3, 0.5]), name=lambda i: "xx"[:1] if i else "y")
    assert c.labels == ["y", "x #1", "x #2"]  # two classes named alike stay two categories


def test_top1_accuracy_and_cosine():
    before = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    after = np.array([[0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])
    assert top1_changed(before, after).tolist() == [True, False, False]
    assert accuracy(before, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="2 labels for 3 examples"):
        accuracy(before, [0, 1])
    assert cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert cosine_similarity(np.zeros(2), np.zeros(2)) == 1.0
    assert cosine_similarity(np.zeros(2), np.ones(2)) == 0.0


def test_next_token_hits_count_consecutive_valid_tokens():
    ids = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    logits = torch.full((2, 4, 10), -1.0)
    for row, col, top in [(0, 0, 6), (0, 1, 1), (0, 2, 0), (1, 0, 9), (1, 1, 0)]:
        logits[row, col, top] = 1.0  # predicts 6 (hit), 1 (miss), then padding; 9 (hit), then padding
    assert next_token_hits(logits, ids, mask) == (2, 3)
    assert next_token_hits(logits, ids) == (5, 6)  # without a mask the padding counts too (it predicts 0s)
    with pytest.raises(ValueError, match="do not match input_ids"):
        next_token_hits(logits[:, :3], ids, mask)
