"""LayerHealth: the plot's numbers come from the scan; a front-end selection picks a layer."""

from __future__ import annotations

import bokeh
import numpy as np
import pytest
from frontend import FakeFrontend
from traitlets import TraitError

import neurowidgets as nw
from neurowidgets.datasets import digits
from neurowidgets.widgets.bokeh_host import BokehHost, bokehjs_source
from neurowidgets.widgets.layer_health import SOURCE_NAME, LayerHealth

LAYERS = ["relu1", "relu2", "relu3"]


def find_source(node, name):
    """The serialized bokeh model named ``name`` anywhere in a JSON item."""
    if isinstance(node, dict):
        if node.get("name") == "ColumnDataSource" and node.get("attributes", {}).get("name") == name:
            return node
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = find_source(child, name)
        if found is not None:
            return found
    return None


@pytest.fixture(scope="module")
def hot_scan():
    data = digits(lr=0.05)
    return nw.scan(data.model, data.test_images, LAYERS, k=4, progress=False, cache=False)


def test_source_numbers_equal_the_scan(hot_scan):
    health = LayerHealth(hot_scan)
    data = health.source.data
    assert list(data["layer"]) == LAYERS
    for i, layer in enumerate(LAYERS):
        stats = hot_scan[layer]
        assert data["units"][i] == stats.num_units
        assert data["dead_count"][i] == len(stats.dead())
        assert data["dead"][i] == len(stats.dead()) / stats.num_units
        assert data["density"][i] == pytest.approx(float(np.median(stats.density)))
        assert data["saturation_tracked"][i] is False  # ReLU: no bounds tracked
        assert data["saturated"][i] == 0
    assert sum(data["dead_count"]) > 0  # the lr=0.05 model has dead units
    # The embedded JSON item (what BokehJS draws) carries the same table, under the source's name.
    embedded = find_source(health.item["doc"], SOURCE_NAME)
    entries = dict(embedded["attributes"]["data"]["entries"])
    assert entries["layer"] == LAYERS
    assert entries["dead"] == [len(hot_scan[lay].dead()) / hot_scan[lay].num_units for lay in LAYERS]
    assert entries["density"] == pytest.approx([float(np.median(hot_scan[lay].density)) for lay in LAYERS])
    assert health.selection_source == SOURCE_NAME


def test_front_end_selection_sets_layer_and_dead_units(hot_scan):
    health = LayerHealth(hot_scan)
    frontend = FakeFrontend(health)
    frontend.set_state(selected_indices=[1])
    assert health.selected_layer == "relu2"
    assert health.selected_units == hot_scan["relu2"].dead().tolist()
    assert health.selected_units
    assert frontend.last("selected_units") == health.selected_units
    frontend.set_state(selected_indices=[])
    assert (health.selected_layer, health.selected_units) == ("", [])


def test_python_selection_syncs_indices_and_rejects_unknown_layers(hot_scan):
    health = LayerHealth(hot_scan)
    health.selected_layer = "relu3"
    assert health.selected_indices == [2]
    assert health.selected_units == hot_scan["relu3"].dead().tolist()
    with pytest.raises(TraitError, match="not a scanned layer"):
        health.selected_layer = "fc9"
    assert health.selected_layer == "relu3"


def test_bokehjs_comes_from_the_installed_package():
    host = BokehHost()
    assert host.bokeh_version == bokeh.__version__
    assert host._bokehjs == bokehjs_source()
    assert bokeh.__version__ in host._bokehjs[:2000] or "Bokeh" in host._bokehjs[:5000]
    assert "cdn.bokeh.org" not in str(host.item)
