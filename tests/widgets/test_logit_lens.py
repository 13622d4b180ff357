"""LogitLens without a browser: the logit lens and the direct logit attribution it sends, checked against
the model's own logits and the core's one-call readings, and the page's requests replayed into it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.core.reading import lens_table, read_text
from neurowidgets.widgets import background
from neurowidgets.widgets.logit_lens import LogitLens

TEXT = "The cat sat on the mat because it was warm <b>here</b>"


def request(frontend: FakeFrontend, kind: str, **args) -> dict:
    before = len(frontend.sent)
    frontend.custom({"type": "request", "id": 7, "kind": kind, "args": args})
    responses = [m["content"] for m, _ in frontend.sent[before:] if m.get("method") == "custom"]
    assert len(responses) == 1
    return responses[0]


def own_logits(model, tokenizer, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer([text], return_tensors="pt")).logits[0].float()


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox"])
def test_lens_at_the_last_block_is_the_models_prediction(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    view = LogitLens(model, TEXT, lm_tokenizer)
    page = FakeFrontend(view)
    background.wait(view, timeout=60)  # the table is computed in the background
    assert view.lens_progress == 1.0
    logits = own_logits(model, lm_tokenizer, TEXT)
    probs = torch.softmax(logits, -1)
    ids = view.lens_ids
    assert ids.shape == (2, len(view.tokens))
    assert (ids[-1] == probs.argmax(-1).numpy()).all()
    np.testing.assert_allclose(view.lens_probs[-1], probs.max(-1).values.numpy(), rtol=1e-5)
    assert view.lens_tokens[-1] == lm_tokenizer.convert_ids_to_tokens(ids[-1].tolist())
    # The same row computed through the final norm and the unembedding (not the model's output).
    reading = read_text(nw.Probe(model), nw.TextAdapter(lm_tokenizer)(TEXT))
    reading.logits = None
    again = lens_table(reading)
    assert (again.ids == ids).all()
    np.testing.assert_allclose(again.probs, view.lens_probs, rtol=1e-4, atol=1e-7)
    # Every block's row equals the core's one-call logit lens.
    core = nw.logit_lens(nw.Probe(model), nw.TextAdapter(lm_tokenizer)(TEXT), k=5)
    assert (core.ids[:, :, 0] == ids).all()
    # A click on a token: its top 5 per block, and the attribution there.
    assert request(page, "select_position", position=3)["ok"]
    assert view.position == view.shown_position == 3
    assert (page.last_array("top_ids") == core.ids[:, 3]).all()
    np.testing.assert_allclose(page.last_array("top_probs"), core.probs[:, 3], rtol=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_attribution_parts_add_up_to_the_logit(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    view = LogitLens(model, TEXT, lm_tokenizer)
    page = FakeFrontend(view)
    request(page, "select_position", position=4)
    info = view.dla_info
    ids = lm_tokenizer([TEXT], return_tensors="pt")
    assert view.target == int(ids["input_ids"][0, 5]) and view.target_note == "the next token"
    logits = own_logits(model, lm_tokenizer, TEXT)
    assert info["logit"] == pytest.approx(float(logits[4, view.target]), rel=1e-5, abs=1e-6)
    # Exact given the final norm's scale of this residual (the shares are divided by it).
    assert float(view.dla.sum()) + info["constant"] == pytest.approx(info["logit"], abs=1e-5)
    core = nw.direct_logit_attribution(nw.Probe(model), ids, 4)
    assert view.dla_layers == list(core.parts)
    np.testing.assert_allclose(view.dla, list(core.parts.values()), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(view.dla_heads, list(core.heads.values()), rtol=1e-4, atol=1e-6)
    assert info["scale"] == pytest.approx(core.scale, rel=1e-5)
    # The heads' shares add up to their attention's share (the projections' biases are zero here).
    for row, name in zip(view.dla_heads, [p for p in view.dla_layers if ".attn" in p or "self_attn" in p], strict=True):
        assert float(row.sum()) == pytest.approx(float(view.dla[view.dla_layers.index(name)]), abs=1e-5)

    # A typed target token; a word of several tokens takes its first; "" goes back to the next token.
    assert request(page, "set_target", text="cat")["ok"]
    assert view.target == lm_tokenizer.convert_tokens_to_ids("cat") and view.target_token == "cat"
    assert view.dla_info["logit"] == pytest.approx(float(logits[4, view.target]), rel=1e-5, abs=1e-6)
    request(page, "select_position", position=2)  # the typed target stays while the position changes
    assert view.target == lm_tokenizer.convert_tokens_to_ids("cat")
    assert request(page, "set_target", text="unbelievably")["ok"]
    assert "first of its" in view.target_note
    bad = request(page, "set_target", text="#99999999")
    assert not bad["ok"] and "does not exist" in bad["error"]
    assert view.target_text == "unbelievably"  # unchanged by the refused target
    request(page, "set_target", text="")
    assert view.target == int(ids["input_ids"][0, 3])


def test_follows_and_drives_a_text_explorer(tiny_lm, lm_tokenizer):
    model = tiny_lm("gpt2")
    explorer = nw.explore(model, [TEXT, "Another short text"], tokenizer=lm_tokenizer)
    view = LogitLens(model, "unused", lm_tokenizer).link(explorer)
    assert view.texts == [TEXT, "Another short text"] and view.tokens == explorer.tokens[0]
    explorer.position = 2
    assert view.position == 2 and view.shown_position == 2
    page = FakeFrontend(view)
    request(page, "select_position", position=5)
    assert explorer.position == 5
    explorer.example = 1
    assert view.tokens == explorer.tokens[1] and view.example == 1
    # A bar's click opens its layer in the explorer: an MLP opens its neurons, an attention its output.
    mlp = next(i for i, name in enumerate(view.dla_layers) if name.endswith("h.1.mlp"))
    assert request(page, "open_component", index=mlp)["ok"]
    assert explorer.layer == "transformer.h.1.mlp.act" and view.block == 1
    attn = view.dla_layers.index("transformer.h.0.attn")
    request(page, "open_component", index=attn)
    assert explorer.layer == "transformer.h.0.attn" and view.block == 0
    explorer.layer = "transformer.h.1.mlp.act"
    assert view.block == 1


def test_a_model_without_an_unembedding_shows_its_tokens_and_says_why(tiny_lm, lm_tokenizer):
    view = LogitLens(tiny_lm("bert"), TEXT, lm_tokenizer)
    assert "no unembedding" in view.unavailable and "logit views need one" in view.unavailable
    assert view.tokens[0] == "[CLS]" and view.lens_probs is None and view.dla is None
    assert "<" in view.tokens  # tokens travel as the tokenizer writes them: the page sets them as text


def test_a_text_longer_than_the_context_is_truncated_with_a_note(lm_tokenizer):
    import transformers

    config = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, n_positions=16, vocab_size=lm_tokenizer.vocab_size,
        bos_token_id=lm_tokenizer.cls_token_id, eos_token_id=lm_tokenizer.sep_token_id,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    view = LogitLens(model, " ".join(["word"] * 40), lm_tokenizer)
    background.wait(view, timeout=60)
    assert len(view.tokens) == 16 and view.lens_probs.shape == (1, 16)
    assert "truncated to its first 16" in view.notice and "context" in view.notice
