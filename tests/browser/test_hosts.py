"""Hosts whose widget manager does not hand binary buffers over as bytes (Colab has been seen to drop
them): the front-end decodes an array's bytes given as base64 text, a plain array or a typed array that
went through JSON exactly as from a DataView. Simulated with a minimal manager in a plain page
(fake_host.py) rendering the real bundles with the state of real widgets."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import artifact_path
from fake_host import open_host, show

import neurowidgets as nw
from neurowidgets.datasets import digits
from neurowidgets.widgets.distributions import BINS, TOP

FORMS = ("dataview", "base64", "list", "json")


@pytest.fixture(scope="module")
def data():
    return digits()


def test_the_grid_draws_the_same_whatever_form_its_bytes_arrive_in(page, data):
    grid = nw.NeuronGrid(data.model, "conv2", data.test_images[:1], selected_units=[3])
    assert grid.get_state()["values"]["dtype"] == "float16"
    open_host(page)
    drawn = {}
    for form in FORMS:
        host = show(page, "neuron_grid", grid, form)
        canvas = host.locator("canvas.nw-grid-canvas")
        canvas.wait_for()
        assert host.locator(".nw-error").inner_text() == ""
        drawn[form] = canvas.evaluate("c => c.toDataURL()")
    assert len(set(drawn.values())) == 1, "every form draws the DataView's pixels"
    assert drawn["dataview"] != host.locator("canvas.nw-grid-canvas").evaluate(
        "c => { const blank = document.createElement('canvas'); blank.width = c.width; blank.height = c.height;"
        " return blank.toDataURL(); }"
    )
    page.locator('.nw-host[data-form="base64"]').screenshot(path=str(artifact_path("hosts/grid_base64.png")))
    assert not [line for line in page.console_log if "error" in line.lower()], page.console_log


def test_bokeh_patches_decode_whatever_form_their_bytes_arrive_in(page, data):
    scan = nw.scan(data.model, data.test_images[:64], ["relu3"], k=4, progress=False, cache=False)
    dist = nw.Distributions(scan, layer="relu3", units=[5, 9])
    units = np.asarray(dist.sources[BINS].data["unit"]).tolist()
    left = np.asarray(dist.sources[BINS].data["left"], dtype=np.float32).tolist()
    examples = np.asarray(dist.sources[TOP].data["example"]).tolist()
    open_host(page)
    for form in FORMS:
        host = show(page, "bokeh_host", dist, form)
        host.locator(".nw-bokeh-plot[data-ready]").wait_for()
        columns = host.evaluate(
            """(el, names) => {
              const doc = window.Bokeh.documents[window.Bokeh.documents.length - 1];
              const get = (source, column) => Array.from(doc.get_model_by_name(source).get_column(column));
              return [get(names[0], "unit"), get(names[0], "left"), get(names[1], "example")];
            }""",
            [BINS, TOP],
        )
        assert columns == [units, left, examples], form
        assert host.locator(".nw-error").inner_text() == ""
    page.locator('.nw-host[data-form="list"]').screenshot(path=str(artifact_path("hosts/distributions_list.png")))
