"""The health table equals the scan's dead and saturated units and numpy's quantiles of the density."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neurowidgets as nw
from neurowidgets.core import health_table


def test_the_table_equals_the_scan_layer_by_layer():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Sigmoid(), torch.nn.Linear(6, 5), torch.nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([20.0, 20.0, 0.0, 0.0, 0.0, -20.0]))  # 3 saturated sigmoid units
        model[2].weight.abs_()
        model[2].bias.copy_(torch.tensor([-100.0, -100.0, 0.0, 0.0, 0.0]))  # 2 dead ReLU units, 3 always firing
    data = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    scan = nw.scan(model, data, ["1", "3"], k=2, progress=False, cache=False)
    table = health_table(scan)
    assert table["layer"] == ["1", "3"] and table["units"] == [6, 5]
    assert table["dead_count"] == [len(scan["1"].dead()), 2] and table["dead"][1] == 2 / 5
    assert table["saturation_tracked"] == [True, False]
    assert table["saturated_count"] == [3, 0] and table["saturated"][0] == 0.5 and np.isnan(table["saturated"][1])
    assert table["saturated_text"] == ["3 (50.0%)", "not tracked"]
    assert table["threshold"] == [scan["1"].threshold, scan["3"].threshold]
    for i, layer in enumerate(["1", "3"]):
        quantiles = np.quantile(scan[layer].density, [0.1, 0.25, 0.5, 0.75, 0.9])
        assert [table[q][i] for q in ("q10", "q25", "q50", "q75", "q90")] == pytest.approx(quantiles)
