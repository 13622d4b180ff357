"""Language-model readings checked against brute force and against the model's own outputs."""

from __future__ import annotations

import pytest
import torch
import transformers

import neurowidgets as nw
from neurowidgets.core.lm import logit_lens, readout_of, top_logits
from neurowidgets.core.reading import direct_logit_attribution

NEURONS = {"gpt2": "transformer.h.1.mlp.act", "llama": "model.layers.1.mlp.down_proj:input"}


def batch(tokenizer, texts=("The cat sat on the mat because it was warm.",)):
    return tokenizer(list(texts), padding=True, return_tensors="pt")


@pytest.mark.parametrize("arch", sorted(NEURONS))
def test_top_logits_equal_the_brute_force_product(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    probe = nw.Probe(model)
    layer = NEURONS[arch]
    probe.run(batch(lm_tokenizer), [layer], output=False)  # the layer's width is known once it ran
    result = top_logits(probe, layer, [3, 17], k=5, tokenizer=lm_tokenizer)
    with torch.no_grad():
        if arch == "gpt2":
            out = model.transformer.h[1].mlp.c_proj.weight  # Conv1D: (in, out)
            norm = model.transformer.ln_f
            vectors = out[[3, 17]]
            vectors = (vectors - vectors.mean(-1, keepdim=True)) * norm.weight  # a layer norm centres
        else:
            out = model.model.layers[1].mlp.down_proj.weight  # Linear: (out, in)
            vectors = out[:, [3, 17]].T * model.model.norm.weight  # an RMS norm does not
        effects = vectors @ model.get_output_embeddings().weight.T
    for unit, row in zip([3, 17], effects, strict=True):
        raised, lowered = result[unit]
        assert [i for i, _, _ in raised] == torch.topk(row, 5).indices.tolist()
        assert [i for i, _, _ in lowered] == torch.topk(row, 5, largest=False).indices.tolist()
        assert [v for _, _, v in raised] == pytest.approx(torch.topk(row, 5).values.tolist(), rel=1e-5)
        assert raised[0][1] == lm_tokenizer.convert_ids_to_tokens(raised[0][0])
        assert raised[0][2] >= raised[-1][2] and lowered[0][2] <= lowered[-1][2]


def test_top_logits_of_sae_features_use_its_decoder_rows(tiny_lm, lm_tokenizer):
    from sae_lens import StandardSAE, StandardSAEConfig

    model = tiny_lm("gpt2")
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=model.config.n_embd, d_sae=128)).eval()
    probe = nw.Probe(model)
    probe.attach("transformer.h.1", sae, name="sae")
    result = top_logits(probe, "sae", 5, k=3)
    with torch.no_grad():
        v = sae.W_dec[5]
        v = (v - v.mean()) * model.transformer.ln_f.weight
        expected = torch.topk(v @ model.lm_head.weight.T, 3).indices.tolist()
    assert [i for i, _, _ in result[5][0]] == expected


def test_logit_lens_at_the_last_block_is_the_models_own_prediction(tiny_lm, lm_tokenizer):
    for arch in ("gpt2", "llama", "neox"):
        model = tiny_lm(arch)
        inputs = batch(lm_tokenizer)
        lens = logit_lens(nw.Probe(model), inputs, k=3)
        with torch.no_grad():
            logits = model(**inputs).logits[0]
        probs = torch.softmax(logits, -1)
        assert lens.ids.shape == (2, logits.shape[0], 3)
        assert (lens.ids[-1] == torch.topk(probs, 3).indices.numpy()).all()
        torch.testing.assert_close(torch.from_numpy(lens.probs[-1]), torch.topk(probs, 3).values)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox"])
def test_direct_logit_attribution_parts_sum_to_the_logit(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    inputs = batch(lm_tokenizer)
    result = direct_logit_attribution(nw.Probe(model), inputs, position=3)
    with torch.no_grad():
        logits = model(**inputs).logits[0, 3]
    assert result.target == int(inputs["input_ids"][0, 4])  # the next token by default
    assert result.logit == pytest.approx(float(logits[result.target]), rel=1e-4, abs=1e-4)
    assert result.total == pytest.approx(result.logit, rel=1e-4, abs=1e-4)
    assert len(result.parts) == 1 + 2 * 2  # embeddings, then attention and MLP of both blocks
    # the heads of each attention add up to its output's share, less the projection's bias
    for attention, heads in result.heads.items():
        assert len(heads) == model.config.num_attention_heads
        if arch == "llama":  # no bias in its output projection
            assert sum(heads) == pytest.approx(result.parts[attention], rel=1e-4, abs=1e-5)


def test_a_model_without_an_unembedding_says_logit_views_need_one(tiny_lm, lm_tokenizer):
    with pytest.raises(ValueError, match="no unembedding"):
        readout_of(tiny_lm("bert"))


def test_a_post_norm_model_is_refused_for_attribution(lm_tokenizer):
    config = transformers.BertConfig(
        num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
        vocab_size=lm_tokenizer.vocab_size, pad_token_id=lm_tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.BertForMaskedLM(config).eval()
    inputs = batch(lm_tokenizer)
    with pytest.raises(ValueError, match="post-norm"):
        direct_logit_attribution(nw.Probe(model), inputs, position=2)
    lens = logit_lens(nw.Probe(model), inputs, k=1)  # the lens works: the head reads any block
    assert lens.ids.shape[:2] == (2, inputs["input_ids"].shape[1])
