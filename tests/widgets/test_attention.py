"""AttentionHeads without a browser: the patterns it sends against the model's own attention weights
(eager attention's ``output_attentions``), and the page's requests replayed into it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.widgets.attention import AttentionHeads

TEXT = "The cat sat on the mat because it was warm <b>here</b>"


def request(frontend: FakeFrontend, kind: str, **args) -> dict:
    before = len(frontend.sent)
    frontend.custom({"type": "request", "id": 3, "kind": kind, "args": args})
    responses = [m["content"] for m, _ in frontend.sent[before:] if m.get("method") == "custom"]
    assert len(responses) == 1
    return responses[0]


def eager_attentions(model, tokenizer, text: str) -> np.ndarray:
    """The model's own attention weights, from an eager copy (fused attention kernels give none)."""
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        output = eager(**tokenizer([text], return_tensors="pt"), output_attentions=True)
    return torch.stack(output.attentions)[:, 0].numpy()


@pytest.mark.parametrize("arch", ["gpt2", "llama", "neox", "bert"])
def test_patterns_equal_the_models_own_attention_weights(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    view = AttentionHeads(model, TEXT, lm_tokenizer)
    expected = eager_attentions(model, lm_tokenizer, TEXT)
    assert view.all_patterns.shape == expected.shape  # (blocks, heads, T, T)
    np.testing.assert_allclose(view.all_patterns.astype(np.float32), expected, atol=2e-3)  # float16 on the wire
    page = FakeFrontend(view)
    assert request(page, "select_block", block=1)["ok"]
    sent = page.last_array("patterns")
    assert sent.dtype == np.float16 and sent.shape == expected[1].shape
    np.testing.assert_allclose(sent.astype(np.float32), expected[1], atol=2e-3)
    assert view.heads == expected.shape[1]


def test_head_and_token_requests(tiny_lm, lm_tokenizer):
    model = tiny_lm("gpt2")
    view = AttentionHeads(model, TEXT, lm_tokenizer)
    page = FakeFrontend(view)
    assert request(page, "select_head", head=2)["ok"] and view.head == 2
    assert request(page, "select_position", position=4)["ok"] and view.position == 4
    bad = request(page, "select_head", head=9)
    assert not bad["ok"] and "head 9 does not exist" in bad["error"]
    assert view.head == 2
    request(page, "select_head", head=-1)
    assert view.head == -1
    # Causal attention: no query attends to a later key.
    assert np.allclose(np.triu(view.all_patterns.astype(np.float32), k=1), 0)
    # A new text: new patterns, and a position past its end is dropped.
    view.select(position=12)
    view.set_texts("Short one")
    assert view.position == -1 and view.patterns.shape[-1] == len(view.tokens)


def test_follows_a_text_explorer_and_shares_its_forward_pass(tiny_lm, lm_tokenizer):
    from neurowidgets.widgets.logit_lens import LogitLens

    model = tiny_lm("gpt2")
    text = TEXT + " (a text no other test reads)"
    explorer = nw.explore(model, text, tokenizer=lm_tokenizer)
    calls = []
    handle = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        heads = AttentionHeads(model, text, lm_tokenizer).link(explorer)
        lens = LogitLens(model, text, lm_tokenizer).link(explorer)
        # One forward pass gives the patterns (read at the attention kernel), the lens and the attribution.
        assert len(calls) == 1
    finally:
        handle.remove()
    explorer.layer = "transformer.h.1.mlp.act"
    assert heads.block == 1 and lens.block == 1
    page = FakeFrontend(heads)
    request(page, "select_position", position=3)
    assert explorer.position == 3 and lens.position == 3


def test_a_long_text_is_drawn_up_to_the_context(tiny_lm, lm_tokenizer):
    # The tiny GPT-2 has 512 positions: a longer text is truncated there, with a note.
    view = AttentionHeads(tiny_lm("gpt2"), " ".join(["word"] * 600), lm_tokenizer)
    assert len(view.tokens) == 512 and "truncated to its first 512" in view.notice
    page = FakeFrontend(view)
    request(page, "select_block", block=1)
    sent = page.last_array("patterns")
    assert sent.shape == (4, 512, 512) and sent.dtype == np.float16  # 2 MB for the page, drawn on one canvas
    np.testing.assert_allclose(sent.astype(np.float32).sum(-1), 1.0, atol=2e-2)
