"""NeuronGrid without a browser: the messages the front-end sends, and what the widget sends back."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import traitlets
from frontend import FakeFrontend

import neurowidgets as nw
from neurowidgets.widgets.wire import decode, encode


@pytest.fixture
def grid(digits):
    return nw.NeuronGrid(digits.model, "conv2", digits.images[:1])


def test_initial_state_carries_the_whole_matrix_as_float16_bytes(grid, digits):
    state = grid.get_state()
    wire = state["values"]
    assert wire["dtype"] == "float16" and wire["shape"] == [1, 64, 16]
    assert isinstance(wire["data"], bytes) and len(wire["data"]) == 64 * 16 * 2
    captured = nw.Probe(digits.model).run(digits.images[:1], ["conv2"])["conv2"].values[0].numpy()
    np.testing.assert_allclose(decode(wire)[0], captured, rtol=1e-3, atol=1e-3)
    assert state["positions_shape"] == [8, 8]
    assert state["layers"] == nw.Probe(digits.model).layer_names


def test_click_from_the_frontend_sets_selected_units_and_fires_observers(grid):
    seen = []
    grid.observe(lambda change: seen.append(change["new"]), "selected_units")
    frontend = FakeFrontend(grid)
    frontend.set_state(selected_units=[5])
    frontend.set_state(selected_units=[5, 11])
    assert grid.selected_units == [5, 11]
    assert seen == [[5], [5, 11]]


def test_python_selection_reaches_the_frontend(grid):
    frontend = FakeFrontend(grid)
    grid.selected_units = [3, 3, 1]
    assert grid.selected_units == [3, 1]
    assert frontend.last("selected_units") == [3, 1]


def test_selecting_a_unit_that_does_not_exist_is_an_error_and_changes_nothing(grid):
    grid.selected_units = [2]
    with pytest.raises(traitlets.TraitError, match=r"unit 16 does not exist: layer 'conv2' has units 0…15"):
        grid.selected_units = [16]
    assert grid.selected_units == [2]


def test_layer_change_from_the_dropdown_sends_the_new_matrix(grid, digits):
    frontend = FakeFrontend(grid)
    grid.selected_units = [12]
    frontend.set_state(layer="fc1")
    values = frontend.last_array("values")
    expected = nw.Probe(digits.model).run(digits.images[:1], ["fc1"])["fc1"].values[0].numpy()
    assert values.shape == (1, 1, 64)
    np.testing.assert_allclose(values[0], expected, rtol=1e-3, atol=1e-3)
    assert frontend.last("positions_shape") == []
    assert grid.selected_units == [12] and grid.error == ""
    frontend.set_state(layer="conv1")  # 8 units: unit 12 no longer exists and is dropped
    assert grid.selected_units == []


def test_set_input_recomputes(grid, digits):
    frontend = FakeFrontend(grid)
    grid.set_input(digits.images[7:8])
    expected = nw.Probe(digits.model).run(digits.images[7:8], ["conv2"])["conv2"].values[0].numpy()
    np.testing.assert_allclose(frontend.last_array("values")[0], expected, rtol=1e-3, atol=1e-3)


def test_a_batch_shows_one_example_at_a_time_and_positions_are_checked(grid, digits):
    frontend = FakeFrontend(grid)
    grid.set_input(digits.images[:3])
    assert frontend.last_array("values").shape == (3, 64, 16)
    frontend.set_state(example=2, position=10)
    assert (grid.example, grid.position) == (2, 10)
    with pytest.raises(traitlets.TraitError, match="example 3 does not exist"):
        grid.example = 3
    with pytest.raises(traitlets.TraitError, match=r"position 64 does not exist.*0…63"):
        grid.position = 64
    grid.layer = "fc1"  # one position: the selected position no longer exists
    assert grid.position == -1


def test_wire_is_binary_not_json(grid):
    frontend = FakeFrontend(grid)
    grid.set_input(torch.rand(1, 1, 8, 8))
    msg, buffers = frontend.sent[-1]
    assert len(buffers) == 1 and memoryview(buffers[0]).nbytes == 64 * 16 * 2
    assert len(json.dumps(msg)) < 300, "no array values inside the JSON part"


def test_bad_inputs_change_nothing(grid, digits):
    before = grid.values.copy()
    with pytest.raises(nw.ModelCallError, match=r"expects input of shape \(batch, 1, H, W\)"):
        grid.set_input(torch.zeros(1, 3, 8, 8))
    with pytest.raises(nw.LayerError, match=r"Closest: 'conv2'"):
        grid.layer = "conv3"
    assert grid.layer == "conv2"
    np.testing.assert_array_equal(grid.values, before)
    with pytest.raises(TypeError, match="unknown argument"):
        nw.NeuronGrid(digits.model, "conv2", digits.images[:1], colour="red")


def test_kernel_error_during_a_frontend_change_is_shown_in_the_widget(digits):
    class Skips(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used = torch.nn.Linear(2, 2)
            self.unused = torch.nn.Linear(2, 2)

        def forward(self, x):
            return self.used(x)

    grid = nw.NeuronGrid(Skips(), "used", torch.zeros(1, 2))
    frontend = FakeFrontend(grid)
    frontend.set_state(layer="unused")
    assert "never ran" in grid.error
    assert "never ran" in frontend.last("error")
    frontend.set_state(layer="used")
    assert grid.error == ""


def test_nan_and_large_values_survive_the_wire():
    values = np.array([[np.nan, np.inf, -1.5, 1e6]], dtype=np.float32)
    wire = encode(values)
    assert wire["dtype"] == "float32"  # 1e6 does not fit in float16
    np.testing.assert_array_equal(decode(wire), values)
    small = encode(values[:, :3])
    assert small["dtype"] == "float16"
    np.testing.assert_array_equal(decode(small), values[:, :3])


# -- colour by a scan's statistics ------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_scan(digits):
    return nw.scan(digits.model, digits.test_images[:96], ["conv2", "fc1"], k=4, progress=False, cache=False)


def test_scan_statistics_travel_once_as_float32_rows_equal_to_the_scans_arrays(digits, digits_scan):
    grid = nw.NeuronGrid(digits.model, "conv2", digits.images[:1], scan=digits_scan)
    frontend = FakeFrontend(grid)
    grid.send_state()
    stats = digits_scan["conv2"]
    assert frontend.last("stat_names") == ["mean", "max", "density", "dead"]  # ReLU-free conv: no bounds
    wire = frontend.last("unit_stats")
    assert wire["dtype"] == "float32" and wire["shape"] == [4, 16] and isinstance(wire["data"], bytes)
    rows = frontend.last_array("unit_stats")
    np.testing.assert_allclose(rows[0], stats.mean, rtol=1e-6)
    np.testing.assert_allclose(rows[1], stats.max, rtol=1e-6)
    np.testing.assert_allclose(rows[2], stats.density, rtol=1e-6)
    expected_dead = np.zeros(16)
    expected_dead[stats.dead()] = 1
    np.testing.assert_array_equal(rows[3], expected_dead)

    sent = len(frontend.sent)
    grid.set_input(digits.images[3:4])  # another input: the statistics are not sent again
    assert all("unit_stats" not in msg.get("state", {}) for msg, _ in frontend.sent[sent:])


def test_statistics_follow_the_layer_and_are_empty_for_an_unscanned_layer(digits, digits_scan):
    grid = nw.NeuronGrid(digits.model, "conv2", digits.images[:1], scan=digits_scan)
    frontend = FakeFrontend(grid)
    frontend.set_state(reduce="scan:density")
    assert grid.reduce == "scan:density"
    frontend.set_state(layer="fc1")
    rows = frontend.last_array("unit_stats")
    assert rows.shape == (4, 64)
    np.testing.assert_allclose(rows[2], digits_scan["fc1"].density, rtol=1e-6)
    assert grid.reduce == "scan:density"  # fc1 was scanned too: the colouring stays
    frontend.set_state(layer="conv1")
    assert frontend.last_array("unit_stats").shape == (0, 8)
    assert frontend.last("stat_names") == []
    assert grid.reduce == "max", "a statistic the layer lacks falls back to the activation"
    frontend.set_state(reduce="scan:density")  # rejected: shown in the widget, the front-end put back
    assert grid.reduce == "max" and "reduce must be one of ['max', 'mean']" in grid.error


def test_saturated_is_offered_for_bounded_layers_and_order_is_checked():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Sigmoid())
    with torch.no_grad():
        model[0].bias[:2] = 50.0  # units 0 and 1 stuck at the sigmoid's top
        model[0].bias[2] = -50.0  # unit 2 stuck at 0: saturated, and never above the threshold 0.5
    data = torch.randn(32, 4)
    result = nw.scan(model, data, ["1"], k=2, threshold=0.5, progress=False, cache=False)
    grid = nw.NeuronGrid(model, "1", data[:1])
    assert grid.stat_names == [] and grid.unit_stats.shape == (0, 6)
    grid.attach_stats(result)
    assert grid.stat_names == ["mean", "max", "density", "dead", "saturated"]
    assert grid.unit_stats[4].tolist() == [1, 1, 1, 0, 0, 0]
    assert grid.unit_stats[3, 2] == 1
    grid.order = "value"
    with pytest.raises(traitlets.TraitError):
        grid.order = "random"
    with pytest.raises(TypeError, match="ScanResult"):
        grid.attach_stats({"1": None})
    wider = torch.nn.Sequential(torch.nn.Linear(4, 9), torch.nn.Sigmoid())  # another model, same layer names
    other = nw.NeuronGrid(wider, "1", data[:1])
    with pytest.raises(ValueError, match="the scan of layer '1' has 6 units but the layer has 9 here"):
        other.attach_stats(result)
    assert other.scan is None and other.stat_names == []  # nothing changed


def test_the_explorer_feeds_its_scan_to_the_grid(digits, digits_scan):
    view = nw.explore(
        digits.model, digits.test_images[:2], data=digits.test_images[:96], scan=digits_scan, layer="conv2"
    )
    assert view.stat_names == ["mean", "max", "density", "dead"]
    np.testing.assert_allclose(view.unit_stats[2], digits_scan["conv2"].density, rtol=1e-6)
