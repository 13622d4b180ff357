"""Attention patterns computed from the model's queries and keys, against its own eager weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from neurowidgets.core.attention import attention_patterns, pattern_from

TEXTS = ["The cat sat on the mat because it was warm.", "Short one."]  # padded: the mask counts


def eager_weights(model, batch) -> torch.Tensor:
    """What the model's own eager attention returns (output_attentions), stacked (layers, B, H, T, T).
    (transformers records them with hooks it leaves on the model: use a model of this test's own.)"""
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            output = model(**batch, output_attentions=True)
    finally:
        model.set_attn_implementation(before)
    return torch.stack(output.attentions)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox", "bert"])
def test_patterns_equal_the_models_eager_weights_while_it_runs_sdpa(lm_tokenizer, arch):
    from language_models import build

    model = build(arch, lm_tokenizer, size="tiny")
    assert model.config._attn_implementation == "sdpa"  # a fused kernel: no weights of its own
    batch = lm_tokenizer(TEXTS, padding=True, return_tensors="pt")
    found = attention_patterns(model, batch)
    assert found.source == "kernel inputs" and found.patterns.shape[:3] == (2, 2, 4)
    expected = eager_weights(model, batch)
    valid = batch["attention_mask"].bool()  # padding queries aside (their rows are the model's convention)
    for layer in range(2):
        for example in range(2):
            got, want = found.patterns[layer, example], expected[layer, example]
            torch.testing.assert_close(got[:, valid[example]], want[:, valid[example]], rtol=1e-5, atol=1e-6)
    assert found.layers == [f"{name}.{i}" for name in [found.layers[0].rsplit(".", 1)[0]] for i in range(2)]
    rows = found.patterns[:, 1][..., valid[1], :]
    torch.testing.assert_close(rows.sum(-1), torch.ones_like(rows.sum(-1)))
    assert (rows[..., ~valid[1]] == 0).all()  # padding keys get nothing
    if arch != "bert":  # causal: no weight on later tokens
        assert torch.equal(found.patterns[0, 0].triu(1), torch.zeros_like(found.patterns[0, 0]))


def test_grouped_query_attention_with_rotary_embeddings(lm_tokenizer):
    from language_models import build

    model = build("llama", lm_tokenizer, size="tiny", num_key_value_heads=2)
    batch = lm_tokenizer(TEXTS[:1], return_tensors="pt")
    found = attention_patterns(model, batch, layers=[1])
    assert found.layers == ["model.layers.1"] and found.patterns.shape == (1, 1, 4, 13, 13)
    torch.testing.assert_close(found.patterns, eager_weights(model, batch)[1:], rtol=1e-5, atol=1e-6)
    assert attention_patterns(model, batch).layer("model.layers.1").shape == (1, 4, 13, 13)


def test_an_eager_model_gives_its_own_weights(lm_tokenizer):
    from language_models import build

    model = build("gpt2", lm_tokenizer, size="tiny", attn_implementation="eager")
    batch = lm_tokenizer(TEXTS, padding=True, return_tensors="pt")
    found = attention_patterns(model, batch)
    assert found.source == "eager weights" and found.layers == ["transformer.h.0", "transformer.h.1"]
    torch.testing.assert_close(found.patterns, eager_weights(model, batch), rtol=0, atol=0)


class Block(nn.Module):
    """A hand-written causal self-attention block that calls the fused kernel."""

    def __init__(self, width=16, heads=2):
        super().__init__()
        self.heads, self.qkv, self.out = heads, nn.Linear(width, 3 * width), nn.Linear(width, width)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, -1).transpose(1, 2) for z in self.qkv(x).chunk(3, -1))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.out(y.transpose(1, 2).reshape(b, t, d))


def test_a_hand_written_model_that_calls_scaled_dot_product_attention():
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Sequential(*[Block() for _ in range(3)]))
    model[1] = nn.ModuleList(list(model[1]))
    model.forward = lambda x: [x := b(x) for b in model[1]][-1] if (x := model[0](x)) is not None else None
    x = torch.randn(2, 5, 4)
    kernel, local = F.scaled_dot_product_attention, dict(ALL_ATTENTION_FUNCTIONS._local_mapping)
    found = attention_patterns(model, x)
    assert F.scaled_dot_product_attention is kernel and ALL_ATTENTION_FUNCTIONS._local_mapping == local  # restored
    assert found.source == "scaled_dot_product_attention" and found.layers == ["1.0", "1.1", "1.2"]
    with torch.no_grad():  # the first block's pattern by hand
        h = model[0](x)
        q, k, _ = (z.view(2, 5, 2, -1).transpose(1, 2) for z in model[1][0].qkv(h).chunk(3, -1))
        scores = (q @ k.transpose(-1, -2) / 8**0.5).masked_fill(torch.ones(5, 5).triu(1).bool(), -torch.inf)
    torch.testing.assert_close(found.patterns[0], scores.softmax(-1))


def test_pattern_from_masks_and_a_model_without_attention():
    q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    blocked = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    assert torch.equal(pattern_from(q, k, blocked), torch.zeros(1, 2, 3, 3))  # nothing to attend: zeros
    additive = torch.zeros(1, 1, 3, 3).masked_fill(torch.ones(3, 3).triu(1).bool(), torch.finfo(torch.float32).min)
    torch.testing.assert_close(pattern_from(q, k, additive), pattern_from(q, k, causal=True))
    with pytest.raises(ValueError, match="found no attention"):
        attention_patterns(nn.Linear(3, 3), torch.randn(2, 3))


def test_record_attention_during_a_capture_of_activations(lm_tokenizer):
    from language_models import build

    import neurowidgets as nw
    from neurowidgets.core.attention import record_attention

    model = build("neox", lm_tokenizer, size="tiny")
    batch = lm_tokenizer(TEXTS, padding=True, return_tensors="pt")
    probe = nw.Probe(model)
    with record_attention(probe) as recording:
        capture = probe.run(batch, ["gpt_neox.layers.1"])  # one pass: activations and patterns
    found = recording.result()
    assert capture["gpt_neox.layers.1"].values.shape[:2] == batch["input_ids"].shape
    assert found.layers == ["gpt_neox.layers.0", "gpt_neox.layers.1"]
    torch.testing.assert_close(found.patterns, attention_patterns(model, batch).patterns, rtol=0, atol=0)
