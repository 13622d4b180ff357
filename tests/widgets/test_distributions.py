"""Distributions: every drawn number comes from the scan or from the explorer's current values; the
plot follows the explorer's units, layer, input and position in place."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from frontend import FakeFrontend
from traitlets import TraitError

import neurowidgets as nw
from neurowidgets.figures import BINS, CURRENT, SERIES_COLOURS, TOP
from neurowidgets.widgets.distributions import Distributions


def drawn(widget, name: str) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in widget.sources[name].data.items()}


def check_unit(widget, stats, unit: int, colour: str) -> None:
    """The drawn bars of ``unit`` are its scan histogram's non-empty bins, its triangles its top-k."""
    bins = drawn(widget, BINS)
    mine = bins["unit"] == unit
    counts, edges = stats.histogram(unit)
    edges = np.where(np.isneginf(edges), stats.min[unit], np.where(np.isposinf(edges), stats.max[unit], edges))
    full = counts > 0
    assert bins["count"][mine].tolist() == counts[full].tolist() == bins["top"][mine].tolist()
    assert bins["left"][mine] == pytest.approx(edges[:-1][full])
    assert bins["right"][mine] == pytest.approx(edges[1:][full])
    assert set(bins["colour"][mine]) == {colour}
    assert set(bins["label"][mine]) == {f"unit {unit} · fires {stats.density[unit]:.1%}"}
    top = drawn(widget, TOP)
    mine = top["unit"] == unit
    values, examples, positions = zip(*stats.top_k(unit), strict=True)
    assert top["x"][mine] == pytest.approx(values)
    assert top["example"][mine].tolist() == list(examples) and top["position"][mine].tolist() == list(positions)
    assert top["rank"][mine].tolist() == list(range(1, len(values) + 1))
    row = set(top["y"][mine])
    assert len(row) == 1 and widget.figure.y_range.start < row.pop() < 0.5  # below the bars, in the plot


def test_histograms_and_top_examples_equal_the_scan(scan):
    dist = Distributions(scan, layer="relu3", units=[5, 39])
    stats = scan["relu3"]
    for i, unit in enumerate([5, 39]):
        check_unit(dist, stats, unit, SERIES_COLOURS[i])
    bins = drawn(dist, BINS)
    assert dist.figure.y_range.end == 4 * bins["top"].max()
    assert len(set(drawn(dist, TOP)["y"])) == 2  # a row of triangles for each unit
    assert dist.figure.x_range.start < min(bins["left"]) and dist.figure.x_range.end > max(bins["right"])
    assert len(drawn(dist, CURRENT)["x"]) == 0  # no followed view: no current input
    assert dist.figure.title.text == "relu3: activations over 449 scanned examples"
    # What the page receives: the same columns, numbers as binary arrays.
    wire = dist.get_state()["patches"][dist.sources[BINS].id]["data"]
    assert isinstance(wire["left"]["data"], bytes) and wire["label"] == list(bins["label"])


def test_infinite_edges_are_clipped_and_bad_values_reported():
    """Values beyond ±2**20 fall in the outer bins, whose edges are ±inf: drawn up to the unit's min / max."""
    values = torch.tensor([[3.0e6, 1.0], [-5.0e6, float("nan")], [2.0, float("inf")], [0.0, 2.0]])
    scan = nw.scan(torch.nn.Sequential(torch.nn.Identity()), values, ["0"], k=2, progress=False, cache=False)
    dist = Distributions(scan, units=[0, 1])
    bins = drawn(dist, BINS)
    assert all(np.isfinite(column).all() for column in bins.values() if column.dtype.kind == "f")
    unit0 = bins["unit"] == 0
    assert bins["left"][unit0].min() == -5.0e6 and bins["right"][unit0].max() == 3.0e6
    assert dist.figure.x_range.start < -5.0e6 and dist.figure.x_range.end > 3.0e6
    assert set(bins["label"][bins["unit"] == 1]) == {"unit 1 · fires 100.0% · 1 NaN, 1 inf"}
    assert set(bins["label"][unit0]) == {"unit 0 · fires 50.0%"}


def test_current_input_follows_the_explorer(scan, explorer):
    dist = Distributions(scan, follow=explorer)
    frontend = FakeFrontend(dist)
    item = dist.item
    explorer.selected_units = [3, 7, 11]
    assert dist.selected_units == [3, 7, 11]
    for i, unit in enumerate([3, 7, 11]):
        check_unit(dist, scan["relu3"], unit, SERIES_COLOURS[i])

    def current():
        data = drawn(dist, CURRENT)
        return dict(zip(data["unit"].tolist(), data["x"].tolist(), strict=True))

    assert current() == pytest.approx({u: explorer.values[0, :, u].max() for u in (3, 7, 11)})
    assert drawn(dist, CURRENT)["colour"].tolist() == list(SERIES_COLOURS[:3])
    explorer.example = 2
    assert current() == pytest.approx({u: explorer.values[2, :, u].max() for u in (3, 7, 11)})

    explorer.layer = "relu2"  # 16 channels over 4×4 positions: the max, then one position
    explorer.selected_units = [0, 9]
    values = explorer.values
    assert values.shape[1] > 1
    assert current() == pytest.approx({u: values[2, :, u].max() for u in (0, 9)})
    explorer.position = 5
    assert current() == pytest.approx({u: values[2, 5, u] for u in (0, 9)})
    check_unit(dist, scan["relu2"], 9, SERIES_COLOURS[1])
    sent = frontend.patches()[dist.sources[CURRENT].id]["data"]["x"]
    assert isinstance(sent["data"], (bytes, memoryview))
    assert dist.item is item  # every change went through update: nothing re-embedded


def test_layer_and_units_given_with_an_explorer_are_set_on_it(scan, explorer):
    dist = Distributions(scan, layer="relu2", units=[3, 4], follow=explorer)
    assert (explorer.layer, explorer.selected_units) == ("relu2", [3, 4])
    assert set(drawn(dist, BINS)["unit"].tolist()) == {3, 4}
    assert drawn(dist, CURRENT)["x"] == pytest.approx(explorer.values[0, :, [3, 4]].max(axis=1))


def test_an_unscanned_layer_shows_an_empty_plot_and_says_why(scan, explorer):
    dist = Distributions(scan, follow=explorer)
    explorer.layer = "conv1"
    assert dist.layer == "conv1" and not dist.error
    assert dist.figure.title.text == "layer 'conv1' was not scanned; this scan has ['relu2', 'relu3']"
    assert all(len(v) == 0 for name in (BINS, TOP, CURRENT) for v in dist.sources[name].data.values())
    explorer.layer = "relu3"
    explorer.selected_units = [5]  # conv1's 8 units kept none of relu3's selection
    assert set(dist.sources[BINS].data["unit"]) == {5} and dist.figure.title.text.startswith("relu3")


def test_tapping_a_top_example_opens_it_in_the_explorer(scan, explorer):
    dist = Distributions(scan, follow=explorer)
    explorer.selected_units = [12]
    value, example, _ = scan["relu3"].top_k(12)[2]
    row = int(np.flatnonzero(drawn(dist, TOP)["example"] == example)[0])
    FakeFrontend(dist).tap(**{BINS: [], TOP: [example]})  # the page sends the triangle's example
    assert explorer.current_index == example
    assert drawn(dist, CURRENT)["x"][0] == pytest.approx(value, rel=1e-5)  # the line sits on its triangle
    assert dist.selected(TOP) == [row] and not dist.error
    shown = set(drawn(dist, TOP)["example"].tolist())
    missing = next(i for i in range(1000) if i not in shown)
    FakeFrontend(dist).tap(**{TOP: [missing]})  # an example the page does not show
    assert dist.error == f"tap: ValueError: example {missing} is not a top example shown here"
    FakeFrontend(dist).tap(**{TOP: ["seven"]})
    assert "carries its index" in dist.error
    assert explorer.current_index == example


def test_more_units_than_max_units_and_selection_without_an_explorer(scan):
    dist = Distributions(scan, layer="relu3", max_units=2)
    assert dist.figure.title.text == "relu3: select units to see their activation histograms"
    dist.selected_units = [4, 8, 15]
    assert sorted(set(drawn(dist, BINS)["unit"].tolist())) == [4, 8]
    assert dist.figure.title.text.endswith("(the first 2 of 3 selected)")
    dist.layer = "relu2"
    assert set(drawn(dist, BINS)["unit"].tolist()) == {4, 8}
    check_unit(dist, scan["relu2"], 8, SERIES_COLOURS[1])


def test_bad_inputs_give_clear_errors_and_change_nothing(scan):
    with pytest.raises(TypeError, match="scan must be a ScanResult"):
        Distributions({"relu3": None})
    with pytest.raises(nw.LayerError, match=r"'conv1' was not scanned; scanned: \['relu2', 'relu3'\]"):
        Distributions(scan, layer="conv1")
    with pytest.raises(ValueError, match="unit 64 does not exist: layer 'relu3' has units 0…63"):
        Distributions(scan, layer="relu3", units=[1, 64])
    with pytest.raises(ValueError, match="max_units must be a positive int"):
        Distributions(scan, max_units=0)
    dist = Distributions(scan, layer="relu3", units=[1])
    before = dict(dist.sources[BINS].data)
    with pytest.raises(TraitError, match=r"'fc9' was not scanned; this scan has \['relu2', 'relu3'\]"):
        dist.layer = "fc9"
    with pytest.raises(TraitError, match="unit 70 does not exist"):
        dist.selected_units = [70]
    assert (dist.layer, dist.selected_units) == ("relu3", [1])
    assert dict(dist.sources[BINS].data) == before


def test_tapping_a_units_bars_makes_it_the_first_selected_unit(scan, explorer):
    explorer.selected_units = [5, 39, 7]
    dist = Distributions(scan, follow=explorer)
    FakeFrontend(dist).tap(**{BINS: [39], TOP: []})  # the page sends the bar's unit
    assert explorer.selected_units == dist.selected_units == [39, 5, 7]
    assert dist.selections[BINS] == [] and not dist.error
    assert dist.sources[BINS].data["colour"][0] == SERIES_COLOURS[0]  # unit 39 drawn first now
    assert dist.sources[BINS].data["unit"][0] == 39
    FakeFrontend(dist).tap(**{BINS: [8]})  # not shown
    assert dist.error.startswith("tap: ValueError: unit 8 is not shown here")
    assert explorer.selected_units == [39, 5, 7]


def test_a_replayed_tap_changes_nothing(scan, explorer):
    """marimo applies each state write twice. A bar tap is a request carrying the unit (not the row,
    which the first application reordered): applied twice, it leaves the unit first; a state write
    replayed by the host is no tap."""
    explorer.selected_units = [5, 39, 7]
    dist = Distributions(scan, follow=explorer)
    frontend = FakeFrontend(dist)
    row_of_39 = int(np.flatnonzero(drawn(dist, BINS)["unit"] == 39)[0])
    for _ in range(2):
        frontend.tap(**{BINS: [39.0], TOP: []})  # a float-typed column sends 39.0
        assert explorer.selected_units == [39, 5, 7]
    frontend.set_state(selections={BINS: [row_of_39], TOP: []})  # the old kind of tap, replayed: ignored
    frontend.set_state(selections={BINS: [row_of_39], TOP: []})
    assert explorer.selected_units == [39, 5, 7] and dist.selections[BINS] == []
    example = int(drawn(dist, TOP)["example"][0])
    for _ in range(2):
        frontend.tap(**{TOP: [example]})
        assert explorer.current_index == example
    assert not dist.error
