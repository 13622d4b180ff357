"""The effect of an edit over a sample equals a hand computation: readouts by hand-written hooks and numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import neurowidgets as nw
from neurowidgets.core.edits import unit_direction
from neurowidgets.core.effects import Readouts, batch_readouts, edited_output, is_causal_lm, sample_effect


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 5)).eval()


def by_hand(model, x, units, value):
    """The classifier's probabilities with ``units`` of the ReLU clamped at ``value``, by a hand-written hook."""

    def hook(module, args, out):
        out = out.clone()
        out[:, units] = value
        return out

    handle = model[1].register_forward_hook(hook)
    try:
        with torch.no_grad():
            return torch.softmax(model(x), 1).numpy()
    finally:
        handle.remove()


def test_batch_readouts_with_and_without_an_edit_equal_hand_hooks(classifier):
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    probe = nw.Probe(classifier)
    plain = batch_readouts(probe, x, "classes", "1")
    np.testing.assert_allclose(plain.values, torch.softmax(classifier(x), 1).detach().numpy(), rtol=1e-6)
    assert (plain.hits, plain.predictions) == (0, 0)
    edited = batch_readouts(probe, x, "classes", "1", nw.clamp([2, 5], 3.0))
    np.testing.assert_allclose(edited.values, by_hand(classifier, x, [2, 5], 3.0), rtol=1e-5, atol=1e-7)
    assert torch.equal(edited_output(probe, x, "1", None), classifier(x).detach())
    assert sum(len(m._forward_hooks) for m in classifier.modules()) == 0  # the edit is gone again


def test_sample_effect_of_a_classifier_equals_numpy():
    rng = np.random.default_rng(0)
    before = rng.dirichlet(np.ones(4), 50)
    after = rng.dirichlet(np.ones(4), 50)
    labels = rng.integers(0, 4, 50)
    effect, _ = sample_effect("classes", Readouts(before[:20]), Readouts.concat([Readouts(after[:20])]), None)
    assert effect == {"examples": 20, "changed": int((before[:20].argmax(1) != after[:20].argmax(1)).sum())}
    whole = Readouts.concat([Readouts(before[:20]), Readouts(before[20:])])
    effect, text = sample_effect("classes", whole, Readouts(after), labels)
    changed = int((before.argmax(1) != after.argmax(1)).sum())
    accuracy_before, accuracy_after = (before.argmax(1) == labels).mean(), (after.argmax(1) == labels).mean()
    assert effect == {
        "examples": 50,
        "changed": changed,
        "accuracy_before": pytest.approx(accuracy_before),
        "accuracy_after": pytest.approx(accuracy_after),
    }
    assert text == (
        f"over 50 examples of the data: accuracy {accuracy_before:.1%} → {accuracy_after:.1%}; "
        f"top class changed on {changed} ({changed / 50:.0%})"
    )


def test_sample_effect_of_vectors_is_the_mean_cosine_similarity():
    rng = np.random.default_rng(1)
    before, after = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    effect, text = sample_effect("vector", Readouts(before), Readouts(after))
    cosines = (before * after).sum(1) / np.linalg.norm(before, axis=1) / np.linalg.norm(after, axis=1)
    assert effect == {"examples": 7, "cosine_similarity": pytest.approx(cosines.mean())}
    assert text == f"over 7 examples of the data: mean cosine similarity of the output {cosines.mean():.3f}"


def test_a_causal_language_models_next_token_accuracy(tiny_lm, lm_tokenizer):
    model = tiny_lm("gpt2")
    assert is_causal_lm(model, "tokens") and not is_causal_lm(model, "vector")
    assert not is_causal_lm(nn.Linear(2, 2), "tokens")
    texts = ["the cat sat on the mat", "a short one"]
    batch = lm_tokenizer(texts, padding=True, return_tensors="pt")
    probe = nw.Probe(model)
    layer = "transformer.h.0.mlp.act"
    parts = [
        batch_readouts(probe, {k: v[i : i + 1] for k, v in batch.items()}, "tokens", layer, causal=True)
        for i in range(2)
    ]
    whole = batch_readouts(probe, batch, "tokens", layer, causal=True)
    with torch.no_grad():
        logits = model(**batch).logits
    mask = batch["attention_mask"].bool()
    right = (logits[:, :-1].argmax(-1) == batch["input_ids"][:, 1:]) & mask[:, 1:]
    assert (whole.hits, whole.predictions) == (int(right.sum()), int(mask[:, 1:].sum()))
    joined = Readouts.concat(parts)
    assert (joined.hits, joined.predictions) == (whole.hits, whole.predictions) and len(joined) == 2
    edited = batch_readouts(probe, batch, "tokens", layer, nw.ablate(), causal=True)
    effect, text = sample_effect("tokens", whole, edited)
    assert effect["accuracy_before"] == whole.hits / whole.predictions
    assert effect["accuracy_after"] == edited.hits / edited.predictions
    assert text.startswith(f"over 2 examples of the data: next-token accuracy {effect['accuracy_before']:.1%} → ")
    assert f"({whole.predictions} predictions); top predicted token changed on " in text


def test_unit_direction_is_the_normalised_sum_of_the_units_basis_vectors():
    assert unit_direction([], 8) is None
    vector = unit_direction([1, 6], 8)
    assert vector.tolist() == pytest.approx([0, 2**-0.5, 0, 0, 0, 0, 2**-0.5, 0])
    assert float(vector.norm()) == pytest.approx(1.0)
