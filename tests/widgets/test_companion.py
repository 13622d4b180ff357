"""Companion: the one link between a bokeh view and an explorer, and its release."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from frontend import FakeFrontend
from traitlets import TraitError

from neurowidgets.core.examples import Examples
from neurowidgets.widgets.coactivation import MATRIX, CoActivation
from neurowidgets.widgets.distributions import Distributions


def observers(widget, name: str) -> int:
    return sum(len(handlers) for handlers in widget._trait_notifiers.get(name, {}).values())


def test_close_releases_the_explorer(explorer, scan):
    linked = observers(explorer, "selected_units")
    dist = Distributions(scan, follow=explorer)
    assert observers(explorer, "selected_units") > linked
    dist.close()
    assert observers(explorer, "selected_units") == linked and dist.view is None
    explorer.selected_units = [3]
    assert dist.selected_units != [3]


def test_a_companion_that_fails_to_build_is_not_left_linked(explorer, scan):
    linked = observers(explorer, "selected_units"), observers(explorer, "values")
    selected = explorer.selected_units
    with pytest.raises(TraitError, match="unit 999 does not exist"):
        Distributions(scan, follow=explorer, units=[999])
    assert (observers(explorer, "selected_units"), observers(explorer, "values")) == linked
    assert explorer.selected_units == selected
    explorer.layer = "relu2"  # nothing of the failed view runs any more
    assert not explorer.error


def test_a_diagonal_cell_selects_one_unit_in_both(explorer):
    co = CoActivation(explorer, sample=32)
    co.wait()
    unit = co.matrix_units[3]
    FakeFrontend(co).tap(**{MATRIX: [f"{unit} {unit}"]})
    assert co.selected_units == explorer.selected_units == [unit]


def test_labels_come_only_from_inputs_and_label_pairs():
    pairs = Examples([(torch.zeros(3), 4), (torch.ones(3), 1)])
    assert pairs.labelled and pairs.labels([1, 0]).tolist() == [1, 4]
    rows = Examples(np.array([[0.1, 0.2], [0.3, 0.4]]))  # two features per row, not (inputs, label)
    assert not rows.labelled
    with pytest.raises(ValueError, match="no labels"):
        rows.labels([0])
