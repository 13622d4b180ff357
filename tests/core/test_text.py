"""TextAdapter: strings → a padded tokenizer batch, ids → token strings as the tokenizer splits them."""

from __future__ import annotations

import pytest
import torch

import neurowidgets as nw


@pytest.fixture(scope="module")
def tokenizer(minilm):
    return minilm[1]


def test_a_batch_is_padded_on_the_right_and_truncated(tokenizer):
    adapter = nw.TextAdapter(tokenizer, max_length=8)
    batch = adapter(["Hello world", "a much longer sentence that goes past the limit of eight tokens"])
    assert set(batch) >= {"input_ids", "attention_mask"}
    assert batch["input_ids"].shape == (2, 8) and batch["input_ids"].dtype == torch.int64
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0, 0], [1] * 8]
    one = adapter("Hello world")  # a single string is a batch of one
    assert one["input_ids"].shape == (1, 4)


def test_padding_stays_on_the_right_whatever_the_tokenizer_says(tokenizer):
    before = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        mask = nw.TextAdapter(tokenizer, max_length=16)(["a", "a b c d"])["attention_mask"]
    finally:
        tokenizer.padding_side = before
    assert mask[0].tolist() == [1, 1, 1, 0, 0, 0]


def test_tokens_are_the_tokenizers_own_split(tokenizer):
    adapter = nw.TextAdapter(tokenizer, max_length=32)
    text = "Tokenizers split unbelievably long words."
    ids = tokenizer(text)["input_ids"]
    expected = tokenizer.convert_ids_to_tokens(ids)
    assert adapter.tokens(text) == expected
    assert expected[0] == "[CLS]" and expected[-1] == "[SEP]" and "##s" in expected
    assert adapter.tokens(torch.tensor(ids)) == expected
    assert adapter.tokens(ids) == expected
    assert adapter.ids(text) == ids
    row = adapter([text, "short"])["input_ids"][1]  # a padded row converts as it is
    assert adapter.tokens(row)[-1] == "[PAD]"
    assert len(nw.TextAdapter(tokenizer, max_length=5).tokens(text)) == 5
    with pytest.raises(ValueError, match="one sequence"):
        adapter.tokens(torch.zeros(2, 3, dtype=torch.int64))


def test_fingerprint_follows_what_decides_the_tokens(tokenizer):
    a = nw.TextAdapter(tokenizer, max_length=16)
    a(["warm the tokenizer up"])  # a call leaves padding/truncation state in the backend
    assert a.fingerprint() == nw.TextAdapter(tokenizer, max_length=16).fingerprint()
    assert a.fingerprint() != nw.TextAdapter(tokenizer, max_length=17).fingerprint()
    assert a.fingerprint() != nw.TextAdapter(tokenizer, 16, add_special_tokens=False).fingerprint()


def test_bad_arguments(tokenizer):
    with pytest.raises(TypeError, match="Hugging Face tokenizer"):
        nw.TextAdapter(str.split)
    with pytest.raises(ValueError, match="max_length"):
        nw.TextAdapter(tokenizer, max_length=0)
    with pytest.raises(TypeError, match="takes strings"):
        nw.TextAdapter(tokenizer)(["fine", 3])
