"""TopExamples without a browser: the card equals the scan, clicking an example sets the input."""

from __future__ import annotations

import numpy as np
import pytest
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.core.text import TextAdapter
from neurowidgets.widgets.top_examples import TopExamples
from neurowidgets.widgets.wire import decode


@pytest.fixture(scope="module")
def digits_scan(digits):
    return nw.scan(digits.model, digits.test_images[:200], ["relu2", "fc1"], k=12, progress=False, cache=False)


@pytest.fixture
def card_widget(digits, digits_scan):
    return TopExamples(digits.model, "relu2", digits_scan, digits.test_images[:200], selected_units=[3])


def test_card_numbers_equal_the_scan(card_widget, digits_scan, digits):
    card = card_widget.card
    stats = digits_scan["relu2"]
    assert (card["layer"], card["unit"]) == ("relu2", 3)
    assert card["density"] == pytest.approx(float(stats.density[3]))
    assert card["max"] == pytest.approx(float(stats.max[3]))
    top = card["groups"][0]["examples"]
    assert [(e["value"], e["index"], e["position"]) for e in top] == stats.top_k(3)[:8]
    counts, edges = stats.histogram(3)
    np.testing.assert_array_equal(decode(card["histogram"]["counts"]), counts)
    np.testing.assert_allclose(decode(card["histogram"]["edges"]), edges, rtol=1e-6)
    # Each example's map is this unit's activation on that example, re-run through the model.
    acts = decode(card["activations"])
    images = digits.test_images[[e["index"] for e in top]]
    expected = nw.Probe(digits.model).run(images, ["relu2"])["relu2"].values[:, :, 3].numpy()
    np.testing.assert_allclose(acts[: len(top)], expected, rtol=1e-3, atol=1e-3)
    assert acts[0].max() == pytest.approx(top[0]["value"], rel=1e-3)
    assert decode(card["pixels"]).shape == (len(acts), 8, 8, 4)


def test_selecting_another_unit_updates_the_card(card_widget):
    frontend = FakeFrontend(card_widget)
    frontend.set_state(selected_units=[7])
    assert card_widget.card["unit"] == 7
    assert frontend.last("card")["unit"] == 7
    frontend.set_state(selected_units=[])
    assert "Select a unit" in card_widget.card["message"]


def test_clicking_an_example_makes_it_the_current_input(card_widget, digits):
    frontend = FakeFrontend(card_widget)
    index = card_widget.card["groups"][0]["examples"][2]["index"]
    frontend.custom({"type": "request", "id": 4, "kind": "open_example", "args": {"index": index}})
    reply = frontend.sent[-1][0]["content"]
    assert reply == {"type": "response", "id": 4, "ok": True}
    assert card_widget.current_index == index
    expected = nw.Probe(digits.model).run(digits.test_images[index : index + 1], ["relu2"])["relu2"].values
    np.testing.assert_allclose(card_widget.values, expected.numpy(), rtol=1e-6)
    frontend.custom({"type": "request", "id": 5, "kind": "open_example", "args": {"index": 10_000}})
    reply = frontend.sent[-1][0]["content"]
    assert reply["ok"] is False and "example 10000 is not in this data" in reply["error"]
    assert card_widget.current_index == index


def test_a_layer_missing_from_the_scan_says_which_were_scanned(card_widget):
    card_widget.layer = "conv1"
    assert card_widget.card["message"] == "Layer 'conv1' was not scanned; scanned layers: relu2, fc1."


def test_text_cards_show_tokens(minilm):
    model, tokenizer = minilm
    texts = ["def f(x): return x + 1", "The cat sat on the mat.", "<script>alert(1)</script> 42", "import os"]
    layer = "encoder.layer.1.intermediate"
    result = nw.scan(model, texts, [layer], k=4, tokenizer=tokenizer, max_length=32, progress=False, cache=False)
    widget = TopExamples(model, layer, result, texts, tokenizer=tokenizer, selected_units=[5])
    card = widget.card
    assert card["modality"] == "text"
    top = card["groups"][0]["examples"]
    adapter = TextAdapter(tokenizer, max_length=32)
    for row, example in enumerate(top):
        assert card["tokens"][row] == adapter.tokens(texts[example["index"]])
    assert len(decode(card["activations"])) == len(card["tokens"])
    assert widget.current_index == 0
