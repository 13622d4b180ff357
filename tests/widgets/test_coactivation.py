"""CoActivation: the sample's maxima, the correlations and the scatter equal a hand-run forward pass
and numpy; clicks in the plot select units and examples in the explorer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from frontend import FakeFrontend
from gate import Gate
from refuses import Refuses

import neurowidgets as nw
from neurowidgets.figures import MATRIX, PAIR, SCATTER
from neurowidgets.widgets import background, coactivation
from neurowidgets.widgets.coactivation import CoActivation


def by_hand(explorer, layer: str, indices) -> np.ndarray:
    """Each example's max over positions, from one forward pass of the examples by global index."""
    inputs = explorer.examples.batch(list(indices))
    return explorer.probe.run(inputs, [layer])[layer].values.amax(dim=1).numpy()


def corrcoef(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant columns: NaN, as expected
        return np.corrcoef(values, rowvar=False)


def matrix_of(widget) -> dict:
    data = widget.sources[MATRIX].data
    return {(int(a), int(b)): float(r) for a, b, r in zip(data["a"], data["b"], data["r"], strict=True)}


def test_sample_matrix_and_scatter_equal_numpy(data, explorer):
    co = CoActivation(explorer, sample=100, max_units=6)
    expected_sample = np.sort(np.random.default_rng(0).choice(449, 100, replace=False))
    assert co.sample_indices.tolist() == expected_sample.tolist()
    acts = by_hand(explorer, "relu3", expected_sample)
    assert co.activations() == pytest.approx(acts, abs=1e-5)
    top = sorted(np.argsort(-acts.var(axis=0))[:6].tolist())
    assert co.matrix_units == top
    assert co.correlation == pytest.approx(corrcoef(acts[:, top]), abs=1e-5)
    assert matrix_of(co) == pytest.approx(
        {(a, b): corrcoef(acts[:, top])[i, j] for i, a in enumerate(top) for j, b in enumerate(top)}, abs=1e-5
    )
    assert list(co._matrix.x_range.factors) == [str(u) for u in top] == list(co._matrix.y_range.factors)[::-1]
    # One unit selected (the explorer's most active): it is paired with its most correlated matrix unit.
    (unit,) = explorer.selected_units
    assert unit in co.matrix_units
    partners = [u for u in top if u != unit]
    a, b = co.pair
    assert a == unit and b == max(partners, key=lambda u: abs(corrcoef(acts[:, [unit, u]])[0, 1]))
    scatter = co.sources[SCATTER].data
    assert np.asarray(scatter["x"]) == pytest.approx(acts[:, a], abs=1e-5)
    assert np.asarray(scatter["y"]) == pytest.approx(acts[:, b], abs=1e-5)
    assert np.asarray(scatter["example"]).tolist() == expected_sample.tolist()
    r = corrcoef(acts[:, [a, b]])[0, 1]
    assert co._scatter.title.text == f"unit {a} vs unit {b}: r = {r:.3f}"
    assert co._scatter.xaxis[0].axis_label == f"unit {a} (max over positions)"
    assert sorted(zip(co.sources[PAIR].data["x"], co.sources[PAIR].data["y"], strict=True)) == sorted(
        [(str(a), str(b)), (str(b), str(a))]
    )


def test_clicking_a_cell_selects_both_units_and_keeps_the_matrix(explorer):
    co = CoActivation(explorer, sample=64)
    co.wait()
    frontend = FakeFrontend(co)
    item, units = co.item, co.matrix_units
    assert len(units) == 12
    assert f"{units[7]} {units[2]}" in co.sources[MATRIX].data["cell"]
    frontend.tap(**{MATRIX: [f"{units[7]} {units[2]}"]})
    frontend.tap(**{MATRIX: [f"{units[7]} {units[2]}"]})  # replayed (marimo applies writes twice): no change
    assert explorer.selected_units == [units[7], units[2]] == co.selected_units
    assert co.matrix_units == units  # not collapsed to 2×2
    assert co.pair == (units[7], units[2])
    assert co.sources[SCATTER].data["x"] == pytest.approx(co.activations()[:, units[7]])
    assert not co.selections.get(MATRIX)  # the page shows the kernel's selections again: the outline marks the pair
    assert set(co.sources[PAIR].data["x"]) == {str(units[7]), str(units[2])}
    # The mirrored cell: the same units, the other way round.
    frontend.tap(**{MATRIX: [f"{units[2]} {units[7]}"]})
    assert co.pair == (units[2], units[7]) and co.matrix_units == units
    # A selection in the explorer outside the matrix: the matrix becomes the selected units.
    outside = next(u for u in range(64) if u not in units)
    explorer.selected_units = [outside, units[0], units[1]]
    assert co.matrix_units == sorted([outside, units[0], units[1]])
    assert co.pair == (outside, units[0])
    assert co.correlation == pytest.approx(corrcoef(co.activations()[:, co.matrix_units]), abs=1e-6)
    assert co.item is item and not co.error


def test_one_forward_pass_per_layer(explorer, monkeypatch):
    calls = []
    co = CoActivation(explorer, sample=32)
    co.wait()
    for probe in (explorer.probe, background.twin(explorer.probe)):  # the foreground's, the background's

        def counting(inputs, layers, *args, run=probe.run, **kwargs):
            calls.append((len(inputs), list(layers)))
            return run(inputs, layers, *args, **kwargs)

        monkeypatch.setattr(probe, "run", counting)
    explorer.layer = "relu2"
    assert co.layer == "relu2" and co.activations().shape == (32, 16)
    explorer.selected_units = [1, 2]
    explorer.layer = "relu3"
    explorer.layer = "relu2"
    co.wait()
    # relu2 once for the sample (32) and the explorer's own passes on its 4 images; relu3 was kept.
    assert [c for c in calls if c[0] == 32] == [(32, ["relu2"])]
    assert co.activations("relu2") == pytest.approx(by_hand(explorer, "relu2", co.sample_indices), abs=1e-5)


def test_constant_units_have_no_correlation(data, scan):
    dead = scan["relu2"].dead().tolist()
    assert dead  # the healthy digits model has two dead relu2 units: constant 0
    explorer = nw.explore(data.model, data.test_images[:4], layer="relu2", data=data.test_images, scan=scan)
    co = CoActivation(explorer)
    explorer.selected_units = [dead[0], 3, 5]  # while the sample computes: drawn when it arrives
    co.wait()
    matrix = matrix_of(co)
    assert np.isnan(matrix[(dead[0], 3)]) and np.isnan(matrix[(dead[0], dead[0])])
    assert matrix[(3, 3)] == pytest.approx(1.0)
    cells = co.sources[MATRIX].data
    texts = {(int(a), int(b)): t for a, b, t in zip(cells["a"], cells["b"], cells["r_text"], strict=True)}
    assert texts[(dead[0], 5)] == "n/a (a constant unit)" and texts[(3, 5)] == f"{matrix[(3, 5)]:.3f}"
    assert co._scatter.title.text == f"unit {dead[0]} vs unit 3: r = n/a (a constant unit)"
    assert co._scatter.y_range.start < co._scatter.y_range.end  # a flat unit still gets a range
    assert not co.error


def test_tapping_a_point_shows_that_example(explorer):
    co = CoActivation(explorer, sample=50)
    co.wait()
    frontend = FakeFrontend(co)
    row = 17
    example = int(co.sample_indices[row])
    frontend.tap(**{SCATTER: [example]})
    frontend.tap(**{SCATTER: [example]})  # replayed: the same example, no second forward pass needed
    assert explorer.current_index == example
    assert explorer.values[0].max(axis=0) == pytest.approx(by_hand(explorer, "relu3", [example])[0], abs=1e-5)
    assert co.selected(SCATTER) == [row]  # the current example stays marked
    explorer.show_example(int(co.sample_indices[3]))
    assert co.selected(SCATTER) == [3]
    explorer.show_example(next(i for i in range(449) if i not in co.sample_indices))
    assert co.selected(SCATTER) == []


def test_without_data_the_sample_is_the_explorers_batch(data):
    explorer = nw.explore(data.model, data.test_images[:20], layer="relu3")
    co = CoActivation(explorer)
    assert co.sample_indices is None
    assert co.activations() == pytest.approx(explorer.values.max(axis=1), abs=1e-5)
    FakeFrontend(co).tap(**{SCATTER: [6]})
    assert explorer.example == 6
    explorer.set_input(data.test_images[20:50])
    assert co.activations().shape == (30, 64)
    assert co.activations() == pytest.approx(explorer.values.max(axis=1), abs=1e-5)
    assert len(co.sources[SCATTER].data["x"]) == 30


def test_bad_inputs_give_clear_errors(explorer):
    with pytest.raises(TypeError, match="follows an explorer"):
        CoActivation("relu3")
    with pytest.raises(ValueError, match="sample must be an int ≥ 2, got 1"):
        CoActivation(explorer, sample=1)
    with pytest.raises(ValueError, match=r"max_units must be an int ≥ 2, got 1\.5"):
        CoActivation(explorer, max_units=1.5)
    co = CoActivation(explorer, sample=40)
    units = co.matrix_units
    explorer.layer = "conv1"  # not scanned: CoActivation needs no scan
    assert co.activations().shape == (40, 8) and not co.error
    assert co.matrix_units != units


def test_a_stale_tap_from_the_page_is_reported_and_changes_nothing(explorer):
    co = CoActivation(explorer, sample=30)
    co.wait()
    selected, pair = explorer.selected_units, co.pair
    page = FakeFrontend(co)
    page.tap(**{MATRIX: ["500 501"]})
    assert co.error.startswith("tap: ValueError: cell '500 501' is not in the matrix")
    assert (explorer.selected_units, co.pair) == (selected, pair)
    page.tap(**{SCATTER: [100000]})
    assert co.error.startswith("tap: ValueError: example 100000 is not a point") and explorer.current_index == -1
    page.tap(**{MATRIX: ["<b>x</b>"]})
    assert "carries its cell as 'unit unit'" in co.error
    # a page's own selections write (a host replaying state) is not an action
    page.set_state(selections={MATRIX: [0], SCATTER: []})
    assert (explorer.selected_units, co.pair) == (selected, pair)


def test_units_with_nan_or_inf_values_are_named_as_such():
    model = torch.nn.Sequential(torch.nn.Identity())
    values = torch.tensor([[1.0, 2.0, 5.0], [2.0, 1.0, 5.0], [3.0, float("inf"), 5.0], [4.0, 0.0, 5.0]])
    explorer = nw.explore(model, values, layer="0", selected_units=[0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning leaks out of the correlation
        co = CoActivation(explorer)
    data = co.sources[MATRIX].data
    text = {(int(a), int(b)): t for a, b, t in zip(data["a"], data["b"], data["r_text"], strict=True)}
    assert text[(0, 1)] == "n/a (NaN/inf values)" and text[(0, 2)] == "n/a (a constant unit)"
    assert text[(0, 0)] == "1.000"


def test_a_newer_layer_cancels_the_sample_and_no_stale_layer_is_drawn(monkeypatch):
    monkeypatch.setattr(coactivation, "CHUNK_POSITIONS", 4)  # four examples per chunk: progress to see
    torch.manual_seed(0)
    gate = Gate()
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3), gate
    )
    data = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
    explorer = nw.explore(model, data[:2], layer="1", data=data)
    co = CoActivation(explorer, sample=32)  # returns while the sample is held in the background
    frontend = FakeFrontend(co)
    gate.reached()
    assert co.matrix_units == [] and co._matrix.title.text == "1: sampling 0/32 examples"
    explorer.layer = "3"  # a newer layer: the held sample of layer 1 is cancelled
    explorer.selected_units = [0, 2]  # while it computes: drawn when it arrives
    assert co.matrix_units == [] and background.running(co)
    gate.open()
    co.wait(timeout=30)
    acts = by_hand(explorer, "3", range(32))
    assert co.matrix_units == [0, 2] and co.activations() == pytest.approx(acts, abs=1e-6)
    assert "1" not in co._cache  # layer 1's sample never finished: nothing of it is kept or drawn
    titles = [p[co._matrix.title.id]["text"] for p in patch_history(frontend) if co._matrix.title.id in p]
    assert all(not t.startswith("1:") for t in titles)
    assert "3: sampling 4/32 examples" in {t.split(",")[0] for t in titles}
    assert titles[-1] == "3: correlation of unit maxima over 32 examples" and not co.error


def test_an_error_in_the_sample_is_shown_once_and_the_view_stays_usable():
    torch.manual_seed(0)
    refuses = Refuses()
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), refuses, torch.nn.Linear(8, 3))
    data = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    data[5] = 1e4
    explorer = nw.explore(model, data[:2], layer="1", data=data)
    co = CoActivation(explorer, sample=20)
    frontend = FakeFrontend(co)
    co.wait(timeout=30)
    assert co.error.startswith("correlating the units of '1': ModelCallError") and "activation too large" in co.error
    assert [e for e in (s.get("error") for s in frontend.updates()) if e] == [co.error]
    refuses.armed = False
    background.forget(explorer.probe)  # the background's twin of the model is made again
    explorer.layer = "0"
    co.wait(timeout=30)
    assert not co.error and co.activations().shape == (20, 8)


def patch_history(frontend: FakeFrontend) -> list[dict]:
    """Every patch message a BokehHost sent, in order (model id → properties)."""
    return [msg["content"]["patches"] for msg, _ in frontend.sent if msg.get("method") == "custom"
            and msg["content"].get("type") == "patch"]  # fmt: skip


def test_inside_a_handler_activations_are_computed_and_waiting_is_refused(explorer):
    gate = Gate()  # a held sample: waiting for it inside a handler would never end
    model = torch.nn.Sequential(explorer.probe.model, gate)
    held = nw.explore(model, explorer.inputs, layer="0.relu3", data=explorer.examples.data)
    co = CoActivation(held, sample=16)
    gate.reached()
    with background.foreground():  # what a message handler runs inside (NeuroWidget._handle_msg)
        with pytest.raises(RuntimeError, match="cannot wait for the background work inside a message handler"):
            co.wait()
        acts = co.activations()  # computed in the handler, not waited for
    assert acts == pytest.approx(by_hand(held, "0.relu3", co.sample_indices), abs=1e-5)
    gate.open()
    co.wait(timeout=30)
    assert co.matrix_units and not co.error
