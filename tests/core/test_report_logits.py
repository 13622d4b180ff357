"""nw.report shows each unit's top logits for a text scan given the model (issue 12, item 1)."""

from __future__ import annotations

import html

import neurowidgets as nw
from neurowidgets.core.lm import top_logits

LAYER = "transformer.h.1.mlp.act"
TEXTS = [f"Item {i} <b> & {i * 3} of the list." for i in range(12)]


def test_the_report_lists_each_units_top_logits_escaped(tiny_lm, lm_tokenizer, tmp_path):
    model = tiny_lm("gpt2")
    scan = nw.scan(model, TEXTS, LAYER, tokenizer=lm_tokenizer, max_length=16, k=2, cache=False, progress=False)
    page = nw.report(scan, tmp_path / "r.html", {LAYER: [3, 7]}, TEXTS, tokenizer=lm_tokenizer, model=model, k=2)
    text = page.read_text()
    assert text.count("<h3>Top logits</h3>") == 2
    found = top_logits(model, LAYER, [3, 7], k=8, tokenizer=lm_tokenizer, width=scan[LAYER].num_units)
    for unit in (3, 7):
        raised, lowered = found[unit]
        for _, token, _ in raised + lowered:
            assert f"<span class='token'>{html.escape(token, quote=True)}</span>" in text
    assert (
        nw.report(scan, tmp_path / "plain.html", {LAYER: [3]}, TEXTS, tokenizer=lm_tokenizer)
        .read_text()
        .count("Top logits")
        == 0
    )  # no model given: no logits


def test_an_encoder_without_an_unembedding_says_so_in_the_report(tiny_lm, lm_tokenizer, tmp_path):
    model, layer = tiny_lm("bert"), "encoder.layer.1.intermediate"
    scan = nw.scan(model, TEXTS, layer, tokenizer=lm_tokenizer, max_length=16, k=2, cache=False, progress=False)
    text = nw.report(scan, tmp_path / "r.html", {layer: [1]}, TEXTS, tokenizer=lm_tokenizer, model=model).read_text()
    assert "Top logits:" in text and "unembedding" in text and "<h3>Top logits</h3>" not in text
