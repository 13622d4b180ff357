"""Top units for a token: against a brute-force ranking of the capture, and cards against the scan."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import neurowidgets as nw
from neurowidgets.core.examples import Examples
from neurowidgets.core.lm import top_logits
from neurowidgets.core.token_units import top_units_at, units_at_token

LAYER = "transformer.h.1.mlp.act"


@pytest.fixture(scope="module")
def scanned(tiny_lm, lm_tokenizer):
    texts = [f"The number {i} follows {i - 1} and comes before {i + 1} in the list." for i in range(24)]
    adapter = nw.TextAdapter(lm_tokenizer, max_length=24)
    probe = nw.Probe(tiny_lm("gpt2"))
    result = nw.scan(probe, texts, LAYER, adapter=adapter, k=3, batch_size=8, cache=False, progress=False)
    return probe, adapter, Examples(texts, text=adapter), result[LAYER]


def test_the_units_firing_most_at_a_token_with_their_cards(scanned):
    probe, adapter, examples, stats = scanned
    inputs = adapter(["The number 7 follows 6 in the list.", "A second text in the batch."])
    capture = probe.run(inputs, [LAYER], output=False)  # the heatmap's forward pass, reused
    calls = []
    hook = probe.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        start = time.perf_counter()
        found = units_at_token(probe, inputs, LAYER, 3, k=5, example=1, stats=stats, examples=examples, capture=capture)
        seconds = time.perf_counter() - start
    finally:
        hook.remove()
    assert calls == [] and seconds < 1.0  # no model call (the budget, < 100 ms, is measured in benchmarks)
    row = capture[LAYER].values[1, 3]
    top = torch.topk(row, 5)
    assert found.units.tolist() == top.indices.tolist() and found.values.tolist() == top.values.tolist()
    assert (
        sorted(found.order.tolist()) == list(range(row.shape[0])) and found.order[:5].tolist() == found.units.tolist()
    )
    assert (np.diff(row[found.order].numpy()) <= 0).all()
    logits = top_logits(probe, LAYER, found.units.tolist(), k=1, tokenizer=adapter.tokenizer)
    for card in found.cards:
        assert card.density == stats.density[card.unit]
        assert (card.top_value, card.top_example, card.top_position) == stats.top_k(card.unit)[0]
        tokens = adapter.tokens(examples.batch([card.top_example])["input_ids"][0])
        assert card.tokens[card.focus] == tokens[card.top_position] and card.snippet.count("⟦") == 1
        assert card.top_logit == logits[card.unit][0][0] and card.top_logit[
            1
        ] == adapter.tokenizer.convert_ids_to_tokens(card.top_logit[0])


def test_bad_positions_and_a_model_without_an_unembedding(scanned, tiny_lm, lm_tokenizer):
    values = torch.randn(1, 4, 6)
    values[0, 2, 1] = float("nan")
    found = top_units_at(values, -2, k=3)
    assert found.position == 2 and found.order[-1] == 1 and 1 not in found.units
    with pytest.raises(IndexError, match="position 4 is out of range"):
        top_units_at(values, 4)
    bert = nw.Probe(tiny_lm("bert"))
    inputs = lm_tokenizer(["A text for an encoder."], return_tensors="pt")
    layer = "encoder.layer.1.intermediate"
    stats = nw.scan(bert, [inputs], layer, k=1, cache=False, progress=False, inputs=lambda b: b)[layer]
    found = units_at_token(bert, inputs, layer, 1, k=2, stats=stats)
    assert all(card.top_logit is None and "unembedding" in card.logit_error for card in found.cards)
    assert all(card.density is not None for card in found.cards)


def test_attached_sae_features_at_a_token(tiny_lm, lm_tokenizer):
    from sae_lens import StandardSAE, StandardSAEConfig

    model = tiny_lm("gpt2")
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=model.config.n_embd, d_sae=96)).eval()
    probe = nw.Probe(model)
    probe.attach("transformer.h.1", sae, name="sae")
    texts = [f"Feature text {i} with a few words." for i in range(10)]
    adapter = nw.TextAdapter(lm_tokenizer, max_length=16)
    stats = nw.scan(probe, texts, "sae", adapter=adapter, k=2, batch_size=5, cache=False, progress=False)["sae"]
    inputs = adapter(texts[:1])
    found = units_at_token(probe, inputs, "sae", 2, k=4, stats=stats, examples=Examples(texts, text=adapter))
    with torch.no_grad():
        hidden = probe.run(inputs, ["transformer.h.1"], output=False)["transformer.h.1"].values[0, 2]
        features = sae.encode(hidden)
    assert found.order.shape == (96,)
    torch.testing.assert_close(torch.from_numpy(found.values), torch.topk(features, 4).values)
    torch.testing.assert_close(features[torch.from_numpy(found.units)], torch.from_numpy(found.values))  # any tie order
    logits = top_logits(probe, "sae", found.units.tolist(), k=1, tokenizer=lm_tokenizer)
    assert [card.top_logit for card in found.cards] == [logits[u][0][0] for u in found.units.tolist()]
