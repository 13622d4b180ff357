"""explore(): one widget, one state; the views it composes follow each other without a browser."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
import traitlets
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.widgets import ImageExplorer, TensorExplorer, TextExplorer
from neurowidgets.widgets.base import handles
from neurowidgets.widgets.image_view import ImageView
from neurowidgets.widgets.layer_view import LayerView
from neurowidgets.widgets.panel import Panel
from neurowidgets.widgets.top_examples import CardPanel


@pytest.fixture(scope="module")
def digit_scan(digits, tmp_path_factory):
    result = nw.scan(digits.model, digits.test_images, ["relu2"], k=8, progress=False, cache=False)
    path = result.save(tmp_path_factory.mktemp("scan") / "relu2.npz")
    return nw.load_scan(path)


def test_image_explorer_links_selection_card_and_input(digits, digit_scan):
    view = nw.explore(digits.model, digits.test_images[:3], data=digits.test_images, scan=digit_scan)
    assert isinstance(view, ImageExplorer) and view.layer == "relu2"
    frontend = FakeFrontend(view)
    frontend.set_state(selected_units=[5])  # a click in the grid
    assert view.card["unit"] == 5 and frontend.last("card")["unit"] == 5
    top = view.card["groups"][0]["examples"][0]
    frontend.custom({"type": "request", "id": 1, "kind": "open_example", "args": {"index": top["index"]}})
    assert view.current_index == top["index"]
    expected = nw.Probe(digits.model).run(digits.test_images[top["index"]][None], ["relu2"])["relu2"].values
    np.testing.assert_allclose(view.values, expected.numpy(), rtol=1e-6)
    assert view.pixels.shape == (1, 8, 8, 4)
    assert float(view.values[0, top["position"], 5]) == pytest.approx(top["value"], rel=1e-5)
    # A patch dragged in the overlay changes the values every view reads.
    frontend.custom({"type": "request", "id": 2, "kind": "occlude", "args": {"rect": [0, 0, 4, 4]}})
    assert view.patch == [0, 0, 4, 4] and not np.allclose(view.values, expected.numpy())


def test_text_explorer_labels_traces_with_tokens_and_opens_examples(minilm):
    model, tokenizer = minilm
    texts = ["def f(x): return x", "The cat sat.", "42 is a number", "import os"]
    layer = "encoder.layer.1.intermediate"
    view = nw.explore(model, ["A small test."], data=texts, tokenizer=tokenizer, max_length=32, layer=layer, k=4)
    assert isinstance(view, TextExplorer)
    expected = tokenizer.convert_ids_to_tokens(tokenizer("A small test.")["input_ids"])
    assert view.position_labels == view.tokens == [expected]
    assert view.selected_units and view.card["unit"] == view.selected_units[0]
    index = view.card["groups"][0]["examples"][0]["index"]
    FakeFrontend(view).custom({"type": "request", "id": 1, "kind": "open_example", "args": {"index": index}})
    assert view.texts == [texts[index]] and view.current_index == index
    assert view.position_labels == view.tokens
    view.set_texts(["typed by the user"])
    assert view.current_index == -1
    # Texts of different lengths: the shorter one's padded positions are labelled "".
    view.set_texts(["short", "a much longer sentence than the other one"])
    assert not view.error
    short, long = view.tokens
    assert view.position_labels == [short + [""] * (len(long) - len(short)), long]
    assert view.lengths == [len(short), len(long)]


def test_live_views_without_a_scan(digits):
    view = nw.explore(digits.model, digits.test_images[:2], layer="conv1")
    assert "No data" in view.card["message"]
    view.selected_units = [1]
    assert "No data" in view.card["message"]


def test_other_inputs_get_the_grid_and_traces():
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU())
    view = nw.explore(model, torch.randn(3, 5))
    assert isinstance(view, TensorExplorer) and view.layer in ("0", "1")


def test_text_without_a_tokenizer_is_a_clear_error(digits):
    with pytest.raises(ValueError, match="tokenizer"):
        nw.explore(digits.model, ["some text"])


def test_a_model_that_raises_is_named_in_the_error_and_left_as_it_was(digits):
    with pytest.raises(nw.ModelCallError, match=r"tensor\(2, 3, 8, 8\).*expects input of shape \(batch, 1, H, W\)"):
        nw.explore(digits.model, torch.zeros(2, 3, 8, 8))  # the first forward pass is the traced one
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in digits.model.modules())


def test_panels_are_chosen_by_input_kind_or_by_name(digits):
    images = digits.test_images[:2]
    assert nw.explore(digits.model, images, layer="relu2").panels == ["grid", "overlay", "trace", "card"]
    view = nw.explore(digits.model, images, layer="relu2", panels=["overlay", "grid"], compact=True)
    assert view.panels == ["overlay", "grid"] and view.collapsed == []  # nothing of compact's is shown
    shared = nw.explore(digits.model, images, layer="relu2", panels=["grid", "strongest_units"])  # any explorer's
    assert shared.panels == ["grid", "strongest_units"]
    with pytest.raises(traitlets.TraitError, match="no panel named 'heatmap'; this view's panels: grid, overlay"):
        nw.explore(digits.model, images, layer="relu2", panels=["grid", "heatmap"])
    view = nw.explore(digits.model, images, layer="relu2", compact=True)
    assert view.collapsed == ["trace", "card"]
    frontend = FakeFrontend(view)
    frontend.set_state(collapsed=["input"])  # a name no panel has: rejected, the page is put back
    assert view.collapsed == ["trace", "card"] and "no panel named 'input'" in view.error


def test_each_widget_names_its_page_store(digits):
    """The page keeps one store per model (js/lib/store.ts), found by ``_id``: unique per widget."""
    a = nw.explore(digits.model, digits.test_images[:1], layer="relu2")
    b = nw.NeuronGrid(digits.model, "relu2", digits.test_images[:1])
    assert a._id and b._id and a._id != b._id and a.get_state()["_id"] == a._id


def test_composing_refuses_two_owners_of_a_trait_or_a_request():
    class Card(Panel):
        name = "other_card"
        state: ClassVar = {"card": traitlets.Dict().tag(sync=True)}

    class Opener(Panel):
        name = "opener"

        @handles("open_example")
        def open_example(self, index: int) -> None: ...

    class Occluder(Panel):
        name = "occluder"

        @handles("occlude")
        def occlude(self, rect: list) -> None: ...

    with pytest.raises(TypeError, match="panel 'other_card' declares 'card', which panel 'card' already has"):
        LayerView.composed(CardPanel, Card)
    with pytest.raises(TypeError, match="panel 'opener' handles request 'open_example', which panel 'card' handles"):
        LayerView.composed(CardPanel, Opener)
    with pytest.raises(TypeError, match="panel 'occluder' handles request 'occlude', which ImageView handles"):
        ImageView.composed(Occluder)
    with pytest.raises(TypeError, match="handles request 'open_example', which panel 'card' handles"):
        LayerView.composed(CardPanel).composed(Opener)  # a panel of the base composition counts too
