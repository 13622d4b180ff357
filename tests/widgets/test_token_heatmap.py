"""TokenHeatmap without a browser: the state it sends, and the front-end's requests replayed into it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import traitlets
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.widgets.token_heatmap import TokenHeatmap
from neurowidgets.widgets.wire import decode

LAYER = "encoder.layer.2.intermediate"
TEXTS = ["The cat sat on the mat.", "Hello <script>alert(1)</script> and <b>bold</b> text"]


@pytest.fixture
def heatmap(minilm):
    model, tokenizer = minilm
    return TokenHeatmap(model, LAYER, TEXTS, tokenizer)


def request(frontend: FakeFrontend, kind: str, request_id: int = 1, **args) -> dict:
    """Send a request exactly as js/lib/requests.ts does; return the widget's response."""
    before = len(frontend.sent)
    frontend.custom({"type": "request", "id": request_id, "kind": kind, "args": args})
    responses = [msg["content"] for msg, _ in frontend.sent[before:] if msg.get("method") == "custom"]
    assert len(responses) == 1, frontend.sent[before:]
    return responses[0]


def captured(minilm, texts: list[str]) -> np.ndarray:
    model, tokenizer = minilm
    inputs = nw.TextAdapter(tokenizer)(texts)
    return nw.Probe(model).run(inputs, [LAYER])[LAYER].values.numpy()


def test_state_sent_is_tokens_as_the_tokenizer_splits_them_and_values_per_token(heatmap, minilm):
    _, tokenizer = minilm
    state = heatmap.get_state()
    assert state["texts"] == TEXTS
    expected_tokens = [tokenizer.convert_ids_to_tokens(tokenizer(t)["input_ids"]) for t in TEXTS]
    assert state["tokens"] == expected_tokens
    assert expected_tokens[1][:6] == ["[CLS]", "hello", "<", "script", ">", "alert"]
    wire = state["values"]
    assert wire["dtype"] == "float16" and isinstance(wire["data"], bytes)
    longest = max(len(t) for t in expected_tokens)
    assert wire["shape"] == [2, longest, 1536]
    values = decode(wire)
    batch = captured(minilm, TEXTS)
    for row, tokens in enumerate(expected_tokens):
        n = len(tokens)
        np.testing.assert_allclose(values[row, :n], batch[row, :n], rtol=2e-3, atol=2e-3)
        # Position t is token t whatever the batch: the text alone gives the same values.
        alone = captured(minilm, [TEXTS[row]])[0]
        np.testing.assert_allclose(values[row, :n], alone, rtol=2e-3, atol=2e-3)
    assert state["positions_shape"] == [longest]
    assert state["max_length"] == 128 and state["notice"] == ""
    # No unit given: the strongest unit at an ordinary token is selected (not one of the few units
    # with a huge value at [CLS], which would leave every other token white).
    unit = heatmap.selected_units[0]
    ordinary = np.concatenate([batch[row, 1 : len(t) - 1] for row, t in enumerate(expected_tokens)])
    assert ordinary[:, unit].max() == pytest.approx(ordinary.max(), rel=2e-3)
    everything = np.concatenate([batch[row, : len(t)] for row, t in enumerate(expected_tokens)])
    assert everything.max() > 2 * ordinary.max(), "MiniLM has outsized activations at [CLS]"
    np.testing.assert_allclose(heatmap.row_values(1, unit), batch[1, : len(expected_tokens[1]), unit], atol=2e-3)


def test_typing_request_updates_texts_tokens_and_values_in_one_message_then_answers(heatmap, minilm):
    _, tokenizer = minilm
    frontend = FakeFrontend(heatmap)
    new = "A dog barked loudly"
    response = request(frontend, "set_text", row=0, text=new)
    assert response == {"type": "response", "id": 1, "ok": True}
    assert heatmap.texts == [new, TEXTS[1]]
    assert heatmap.tokens[0] == ["[CLS]", "a", "dog", "barked", "loudly", "[SEP]"]
    # texts, tokens and values travel together, before the response: the front-end never sees a
    # new token list with old values.
    kinds = [msg.get("method") for msg, _ in frontend.sent]
    assert kinds == ["update", "custom"], kinds
    assert len(json.dumps(frontend.sent[0][0])) < 2000, "values travel as a buffer, not JSON"
    update = frontend.updates()[0]
    assert {"texts", "tokens", "values"} <= set(update)
    assert update["tokens"][0] == tokenizer.convert_ids_to_tokens(tokenizer(new)["input_ids"])
    values = frontend.last_array("values")
    expected = captured(minilm, [new, TEXTS[1]])
    np.testing.assert_allclose(values[0, :6], expected[0, :6], rtol=2e-3, atol=2e-3)


def test_kernel_error_answers_not_ok_shows_the_error_and_changes_nothing(heatmap, minilm):
    model, _ = minilm
    frontend = FakeFrontend(heatmap)
    before = (list(heatmap.texts), [list(t) for t in heatmap.tokens], heatmap.values.copy())

    def explode(module, args):
        raise RuntimeError("the model exploded")

    handle = model.encoder.layer[0].register_forward_pre_hook(explode)
    try:
        response = request(frontend, "set_text", request_id=7, row=1, text="anything")
    finally:
        handle.remove()
    assert response["id"] == 7 and response["ok"] is False
    assert "the model exploded" in response["error"]
    assert "set text" in heatmap.error and "the model exploded" in heatmap.error
    assert frontend.last("error") == heatmap.error
    assert heatmap.texts == before[0] and heatmap.tokens == before[1]
    np.testing.assert_array_equal(heatmap.values, before[2])

    response = request(frontend, "set_text", request_id=8, row=1, text="all good now")
    assert response == {"type": "response", "id": 8, "ok": True}
    assert heatmap.error == "" and frontend.last("error") == ""
    assert heatmap.tokens[1] == ["[CLS]", "all", "good", "now", "[SEP]"]


def test_bad_request_arguments_are_errors_in_the_widget(heatmap):
    frontend = FakeFrontend(heatmap)
    response = request(frontend, "set_text", row=5, text="x")
    assert response["ok"] is False and "row 5 does not exist" in response["error"]
    response = request(frontend, "set_text", id_=3)
    assert response["ok"] is False and "unexpected keyword" in response["error"]
    assert heatmap.texts == TEXTS
    request(frontend, "set_text", row=0, text="fine")
    assert heatmap.error == ""


def test_long_text_is_truncated_and_the_widget_says_so(minilm):
    model, tokenizer = minilm
    long = " ".join(["word"] * 40)
    heatmap = TokenHeatmap(model, LAYER, ["short", long], tokenizer, max_length=16)
    assert heatmap.tokens[1] == ["[CLS]", *["word"] * 14, "[SEP]"]
    assert heatmap.notice == "row 2 truncated to 16 tokens (max_length): the rest of its text is not shown"
    assert heatmap.values.shape[:2] == (2, 16)
    frontend = FakeFrontend(heatmap)
    request(frontend, "set_text", row=0, text=long)
    assert frontend.last("notice").startswith("rows 1, 2 truncated to 16 tokens")
    request(frontend, "set_text", row=0, text="short")
    request(frontend, "set_text", row=1, text=" ".join(["word"] * 14))  # exactly 16 with [CLS], [SEP]
    assert heatmap.notice == "" and frontend.last("notice") == ""
    assert len(heatmap.tokens[1]) == 16


def test_empty_text_shows_the_special_tokens(heatmap):
    frontend = FakeFrontend(heatmap)
    response = request(frontend, "set_text", row=1, text="")
    assert response["ok"] is True
    assert heatmap.texts == [TEXTS[0], ""]
    assert heatmap.tokens[1] == ["[CLS]", "[SEP]"]
    assert heatmap.error == ""


def test_markup_in_texts_round_trips_as_text(heatmap, minilm):
    _, tokenizer = minilm
    frontend = FakeFrontend(heatmap)
    text = "<script>alert('x')</script> & <b>bold</b> &amp;"
    request(frontend, "set_text", row=0, text=text)
    assert frontend.last("texts")[0] == text
    tokens = frontend.last("tokens")[0]
    assert tokens == tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    assert {"<", "script", ">", "&", "amp"} <= set(tokens)


class WordTokenizerModel(torch.nn.Module):
    """A tiny text model whose tokens are whole words, so that a token can be `<script>` itself."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, 8)
        self.mlp = torch.nn.Linear(8, 5)

    def forward(self, input_ids, attention_mask=None, **unused):
        return self.mlp(self.embed(input_ids))


@pytest.fixture(scope="module")
def word_level():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "<script>", "</script>", "<b>bold</b>", "hello", "&lt;"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]")
    torch.manual_seed(0)
    return WordTokenizerModel(len(words)), tokenizer


def test_a_token_that_looks_like_markup_is_one_token_string(word_level):
    model, tokenizer = word_level
    text = "hello <script> &lt; </script> <b>bold</b> other"
    heatmap = TokenHeatmap(model, "mlp", [text, "hello"], nw.TextAdapter(tokenizer, max_length=32))
    assert heatmap.tokens == [["hello", "<script>", "&lt;", "</script>", "<b>bold</b>", "[UNK]"], ["hello"]]
    state = heatmap.get_state()
    assert state["tokens"][0][1] == "<script>" and state["texts"][0] == text
    assert state["values"]["shape"] == [2, 6, 5]
    expected = model(tokenizer([text], return_tensors="pt")["input_ids"]).detach().numpy()[0]
    np.testing.assert_allclose(heatmap.values[0], expected, rtol=2e-3, atol=2e-3)


def test_clicking_a_token_sets_example_and_position_and_a_shorter_row_drops_it(heatmap):
    frontend = FakeFrontend(heatmap)
    frontend.set_state(example=1, position=4)
    assert (heatmap.example, heatmap.position) == (1, 4)
    request(frontend, "set_text", row=1, text="hi")  # 3 tokens: position 4 is padding now
    assert heatmap.position == -1 and frontend.last("position") == -1
    frontend.set_state(example=0, position=2)
    request(frontend, "set_text", row=1, text="something else entirely")
    assert (heatmap.example, heatmap.position) == (0, 2)


def test_another_unit_or_layer(heatmap, minilm):
    frontend = FakeFrontend(heatmap)
    frontend.set_state(selected_units=[7])
    assert heatmap.selected_units == [7]
    assert all("values" not in u for u in frontend.updates()), "recolouring needs no new values"
    frontend.set_state(layer="encoder.layer.4.intermediate")
    assert heatmap.error == "" and heatmap.layer == "encoder.layer.4.intermediate"
    model, tokenizer = minilm
    inputs = nw.TextAdapter(tokenizer)(TEXTS)
    expected = nw.Probe(model).run(inputs, ["encoder.layer.4.intermediate"])["encoder.layer.4.intermediate"].values
    np.testing.assert_allclose(frontend.last_array("values"), expected.numpy(), rtol=2e-3, atol=2e-3)
    assert heatmap.tokens[0][0] == "[CLS]" and heatmap.selected_units == [7]


def test_python_api(minilm):
    model, tokenizer = minilm
    heatmap = TokenHeatmap(model, LAYER, "one text", nw.TextAdapter(tokenizer, max_length=32), selected_units=[3])
    assert heatmap.texts == ["one text"] and heatmap.selected_units == [3] and heatmap.max_length == 32
    frontend = FakeFrontend(heatmap)
    heatmap.set_texts(["first", "second one", "third"])
    assert len(frontend.last("tokens")) == 3 and frontend.last_array("values").shape[0] == 3
    heatmap.set_input("back to one")
    assert heatmap.texts == ["back to one"]
    with pytest.raises(traitlets.TraitError, match="read-only"):
        heatmap.texts = ["direct"]
    with pytest.raises(TypeError, match="texts must be strings"):
        heatmap.set_texts(["ok", 3])
    with pytest.raises(ValueError, match="at least one text"):
        heatmap.set_texts([])
    with pytest.raises(IndexError, match="row 1 does not exist"):
        heatmap.set_text(1, "x")
    assert heatmap.texts == ["back to one"]
    with pytest.raises(ValueError, match="conflicts with the TextAdapter"):
        TokenHeatmap(model, LAYER, "x", nw.TextAdapter(tokenizer, max_length=32), max_length=64)
    with pytest.raises(TypeError, match="unknown argument"):
        TokenHeatmap(model, LAYER, "x", tokenizer, colour="red")
    with pytest.raises(nw.LayerError, match="Closest"):
        TokenHeatmap(model, "encoder.layer.2.intermediat", "x", tokenizer)


def test_padded_rows_tell_every_view_their_length(minilm):
    model, tokenizer = minilm
    texts = ["a b", "a much longer text than the first"]
    heatmap = TokenHeatmap(model, "encoder.layer.0.intermediate", texts, tokenizer)
    assert heatmap.lengths == [len(row) for row in heatmap.tokens]
    assert heatmap.lengths[0] < heatmap.values.shape[1] == heatmap.lengths[1]


@pytest.mark.parametrize("arch", ["gpt2", "bert"])
def test_editing_one_row_runs_only_that_row_and_equals_running_them_all(tiny_lm, lm_tokenizer, arch):
    model = tiny_lm(arch)
    texts = ["The cat sat on the mat.", "A much longer second text, with more tokens than the first one has.", "Hi"]
    heatmap = TokenHeatmap(model, "transformer.h.1.mlp.act" if arch == "gpt2" else "encoder.layer.1.intermediate",
                           texts, lm_tokenizer)  # fmt: skip
    rows = []
    handle = model.register_forward_pre_hook(
        lambda m, args, kwargs: rows.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        for row, text in [
            (1, "Short now."),
            (0, "The first text grows longer than every other text in the batch."),
            (2, ""),
        ]:
            rows.clear()
            texts[row] = text
            heatmap.set_text(row, text)
            assert rows == [torch.Size([1, len(heatmap.tokens[row])])], "one row, at its real length"
            inputs = nw.TextAdapter(lm_tokenizer)(texts)
            expected = nw.Probe(model).run(inputs, [heatmap.layer])[heatmap.layer].values.numpy()
            assert heatmap.values.shape == expected.shape and heatmap.positions_shape == [expected.shape[1]]
            for r, length in enumerate(heatmap.lengths):
                np.testing.assert_allclose(heatmap.values[r, :length], expected[r, :length], rtol=1e-4, atol=1e-5)
            assert heatmap.texts == texts and heatmap.lengths == [int(n) for n in inputs["attention_mask"].sum(1)]
    finally:
        handle.remove()


# -- attribution mode ---------------------------------------------------------------------------------


def test_attribution_mode_colours_the_current_row_by_nw_attribute(heatmap, minilm):
    model, tokenizer = minilm
    frontend = FakeFrontend(heatmap)
    unit = heatmap.selected_units[0]
    assert heatmap.attribution is None  # nothing computed outside the mode

    def reference(text, method, position=None):
        inputs = nw.TextAdapter(tokenizer)([text])
        options = {"size": 1} if method == "occlusion" else {}
        return nw.attribute(nw.Probe(model), inputs, LAYER, unit, method, position=position, **options)[0].numpy()

    frontend.set_state(show="attribution")
    sent = frontend.last("attribution")
    assert sent["dtype"] == "float32" and sent["shape"] == [len(heatmap.tokens[0])]
    np.testing.assert_array_equal(decode(sent), reference(TEXTS[0], "integrated_gradients"))
    info = heatmap.attribution_info
    assert (info["method"], info["unit"], info["example"], info["nan"]) == ("integrated_gradients", unit, 0, 0)
    assert info["seconds"] > 0

    frontend.set_state(example=1, position=3, attribution_method="gradient")  # another row, one token
    np.testing.assert_array_equal(heatmap.attribution, reference(TEXTS[1], "gradient", 3))
    request(frontend, "set_text", row=1, text="Numbers like 12 and 13")  # typing: the row's new tokens
    np.testing.assert_array_equal(heatmap.attribution, reference("Numbers like 12 and 13", "gradient", 3))
    frontend.set_state(attribution_method="occlusion", position=-1)
    np.testing.assert_allclose(heatmap.attribution, reference("Numbers like 12 and 13", "occlusion"), atol=1e-6)
    frontend.set_state(show="activation")
    assert heatmap.attribution is None and heatmap.attribution_info == {}
