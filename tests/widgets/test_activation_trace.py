"""ActivationTrace without a browser: the state it sends, and the front-end's updates replayed into it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import traitlets
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.widgets.activation_trace import ActivationTrace
from neurowidgets.widgets.base import STATIC
from neurowidgets.widgets.wire import decode

MINILM_LAYER = "encoder.layer.2.intermediate"
SENTENCES = ["The cat sat on the mat.", "Neurons fire on some tokens and stay silent on others."]


@pytest.fixture
def trace(digits):
    return ActivationTrace(digits.model, "relu2", digits.images[:3], selected_units=[2, 5])


@pytest.fixture(scope="module")
def minilm_batch(minilm):
    model, tokenizer = minilm
    batch = dict(tokenizer(SENTENCES, padding=True, return_tensors="pt"))
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"].tolist()]
    return model, batch, tokens


def captured(model, inputs, layer: str) -> np.ndarray:
    return nw.Probe(model).run(inputs, [layer])[layer].values.float().numpy()


# -- the state sent -------------------------------------------------------------------------------


def test_digits_state_is_the_probes_capture_as_float16_bytes(trace, digits):
    state = trace.get_state()
    wire = state["values"]
    assert wire["dtype"] == "float16" and wire["shape"] == [3, 64, 16]
    assert isinstance(wire["data"], bytes) and len(wire["data"]) == 3 * 64 * 16 * 2
    np.testing.assert_allclose(decode(wire), captured(digits.model, digits.images[:3], "relu2"), rtol=1e-3, atol=1e-3)
    assert state["positions_shape"] == [8, 8]
    assert state["selected_units"] == [2, 5]
    assert (state["along"], state["position_labels"], state["position"], state["example"]) == (
        "positions",
        [],
        -1,
        0,
    )
    assert trace.num_examples == 3


def test_the_bundle_exports_its_panel_for_the_explorer():
    source = (STATIC / "activation_trace.js").read_text()
    assert "tracePanel" in source and "export" in source


def test_minilm_tokens_are_positions_and_labels_travel_as_strings(minilm_batch):
    model, batch, tokens = minilm_batch
    trace = ActivationTrace(model, MINILM_LAYER, batch, selected_units=[0, 1535], position_labels=tokens)
    frontend = FakeFrontend(trace)
    expected = captured(model, batch, MINILM_LAYER)
    n_tokens = batch["input_ids"].shape[1]
    assert expected.shape == (2, n_tokens, 1536)
    state = trace.get_state()
    assert state["positions_shape"] == [n_tokens]
    assert state["position_labels"] == tokens and tokens[0][0] == "[CLS]"
    np.testing.assert_allclose(decode(state["values"]), expected, rtol=2e-3, atol=2e-3)
    # A front-end click on a token, then across examples on the second sentence.
    frontend.set_state(position=3)
    frontend.set_state(along="examples", example=1)
    assert (trace.position, trace.along, trace.example) == (3, "examples", 1)
    np.testing.assert_allclose(trace.trace(1535), expected[:, :, 1535].max(axis=1), rtol=2e-3, atol=2e-3)
    with pytest.raises(traitlets.TraitError, match=r"unit 1536 does not exist: .* has units 0…1535"):
        trace.selected_units = [1536]
    assert trace.selected_units == [0, 1535]


# -- front-end updates land ------------------------------------------------------------------------


def test_frontend_position_clicks_land_and_clear(trace):
    seen = []
    trace.observe(lambda change: seen.append(change["new"]), "position")
    frontend = FakeFrontend(trace)
    frontend.set_state(position=10)
    assert trace.position == 10
    frontend.set_state(position=-1)  # the second click on the same position
    assert trace.position == -1
    assert seen == [10, -1]


def test_frontend_selection_and_example_land(trace, digits):
    frontend = FakeFrontend(trace)
    frontend.set_state(selected_units=[7, 2])
    frontend.set_state(example=2)
    assert trace.selected_units == [7, 2] and trace.example == 2
    values = captured(digits.model, digits.images[:3], "relu2")
    np.testing.assert_allclose(trace.trace(7), values[2, :, 7], rtol=1e-3, atol=1e-3)
    sent = len(frontend.sent)
    trace.selected_units = [7]  # from Python: reaches the front-end, which redraws from its values
    assert frontend.last("selected_units") == [7]
    assert [list(state) for state in frontend.updates()[-1:]] == [["selected_units"]]
    assert len(frontend.sent) == sent + 1, "no values resent for another selection"


def test_along_examples_plots_each_examples_max_and_python_sees_it(trace, digits):
    frontend = FakeFrontend(trace)
    frontend.set_state(along="examples")
    assert trace.along == "examples"
    values = captured(digits.model, digits.images[:3], "relu2")
    np.testing.assert_allclose(trace.trace(5), values[:, :, 5].max(axis=1), rtol=1e-3, atol=1e-3)
    frontend.set_state(example=1)  # a click on example 1
    assert trace.example == 1
    frontend.set_state(along="positions")
    assert trace.along == "positions"
    with pytest.raises(IndexError, match="unit 16 does not exist"):
        trace.trace(16)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"position": 64}, "position 64 does not exist: layer 'relu2' has positions 0…63 (or -1 for none)"),
        ({"position": -2}, "position -2 does not exist"),
        ({"selected_units": [2, 16]}, "unit 16 does not exist: layer 'relu2' has units 0…15"),
        ({"example": 3}, "example 3 does not exist: the input has 3"),
        ({"along": "tokens"}, "'along' trait of an ActivationTrace instance expected any of ['positions', 'examples']"),
    ],
)
def test_bad_frontend_updates_are_rejected_with_a_clear_error_and_change_nothing(trace, state, message):
    frontend = FakeFrontend(trace)
    frontend.set_state(position=5)
    before = {name: getattr(trace, name) for name in ("position", "selected_units", "example", "along")}
    frontend.set_state(**state)
    assert message in trace.error, "shown in the widget"
    name = next(iter(state))
    assert frontend.last(name) == before[name], "the front-end is put back on the kernel's value"
    assert {name: getattr(trace, name) for name in before} == before
    # Python gets the error itself when it sets the same value.
    with pytest.raises(traitlets.TraitError, match=re.escape(message)):
        setattr(trace, *next(iter(state.items())))
    assert {name: getattr(trace, name) for name in before} == before


def test_along_examples_needs_a_batch(digits):
    single = ActivationTrace(digits.model, "relu2", digits.images[:1], selected_units=[2])
    needs_batch = "along='examples' needs a batch of more than one input; this one has 1"
    with pytest.raises(traitlets.TraitError, match=needs_batch):
        single.along = "examples"
    assert single.along == "positions"
    batch = ActivationTrace(digits.model, "relu2", digits.images[:3], along="examples")
    assert batch.along == "examples"
    frontend = FakeFrontend(batch)
    batch.set_input(digits.images[5:6])  # one input left: back to positions
    assert batch.along == "positions" and frontend.last("along") == "positions"
    # Built on a single input, along="examples" falls back rather than failing.
    assert ActivationTrace(digits.model, "relu2", digits.images[:1], along="examples").along == "positions"


# -- position labels -------------------------------------------------------------------------------


def test_position_labels_are_checked_against_the_input(trace):
    labels = [[f"p{i}" for i in range(64)] for _ in range(3)]
    trace.position_labels = labels
    trace.position_labels = [labels[0], [], labels[2]]  # [] for one example: index labels there
    with pytest.raises(traitlets.TraitError, match=r"position_labels has 2 list\(s\) but the input has 3"):
        trace.position_labels = labels[:2]
    with pytest.raises(traitlets.TraitError, match=r"position_labels\[1\] has 63 label\(s\) but layer 'relu2' has 64"):
        trace.position_labels = [labels[0], labels[1][:63], labels[2]]
    assert trace.position_labels == [labels[0], [], labels[2]]
    trace.position_labels = []
    assert trace.position_labels == []


def test_set_input_takes_the_new_inputs_labels_atomically(trace, digits):
    frontend = FakeFrontend(trace)
    trace.position_labels = [[str(i) for i in range(64)]] * 3
    labels = [[f"a{i}" for i in range(64)], [f"b{i}" for i in range(64)]]
    trace.set_input(digits.images[10:12], position_labels=labels)
    assert trace.position_labels == labels and frontend.last("position_labels") == labels
    assert frontend.last_array("values").shape == (2, 64, 16)
    before = trace.values.copy()
    with pytest.raises(traitlets.TraitError, match="position_labels has 1 list"):
        trace.set_input(digits.images[:4], position_labels=labels[:1])
    np.testing.assert_array_equal(trace.values, before)
    assert trace.position_labels == labels
    trace.set_input(digits.images[:4])  # no labels for the new input: the old ones are dropped
    assert trace.position_labels == [] and trace.num_examples == 4


def test_bad_constructor_arguments(digits):
    with pytest.raises(traitlets.TraitError, match="position_labels has 1 list"):
        ActivationTrace(digits.model, "relu2", digits.images[:3], position_labels=[["x"] * 64])
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['labels'\].*position_labels"):
        ActivationTrace(digits.model, "relu2", digits.images[:3], labels=[])


def test_layer_change_keeps_the_selection_and_labels(trace):
    frontend = FakeFrontend(trace)
    trace.position_labels = [[str(i) for i in range(64)]] * 3
    frontend.set_state(layer="pool")  # 4×4 positions: the front-end falls back to (row, col) labels
    assert trace.error == "" and trace.positions_shape == [4, 4]
    assert trace.selected_units == [2, 5]
    assert frontend.last_array("values").shape == (3, 16, 16)
    frontend.set_state(layer="fc1")  # 64 units, one position
    assert trace.selected_units == [2, 5] and trace.positions_shape == []


# -- NaN and infinities ----------------------------------------------------------------------------


def test_nan_and_inf_reach_the_frontend():
    layer = torch.nn.Linear(3, 4)
    with torch.no_grad():
        layer.bias[1] = float("nan")
        layer.bias[2] = float("inf")
    model = torch.nn.Sequential(layer, torch.nn.ReLU())
    inputs = torch.randn(5, 3)
    trace = ActivationTrace(model, "0", inputs, selected_units=[0, 1, 2])
    values = decode(trace.get_state()["values"])
    assert values.dtype == np.float16 and values.shape == (5, 1, 4)
    assert np.isnan(values[:, 0, 1]).all() and np.isposinf(values[:, 0, 2]).all()
    assert np.isfinite(values[:, 0, 0]).all()
    trace.along = "examples"
    assert np.isnan(trace.trace(1)).all()
