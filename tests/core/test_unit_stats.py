"""One unit's statistics as shown: its histogram with finite outer edges, its summary, its bad values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import neurowidgets as nw
from neurowidgets.core.unit_stats import finite_histogram, non_finite, unit_summary


@pytest.fixture(scope="module")
def scan():
    values = torch.tensor([[3.0e6, 1.0, 0.5], [-5.0e6, float("nan"), 0.0], [2.0, float("inf"), 1.5], [0.0, 2.0, 2.5]])
    return nw.scan(torch.nn.Sequential(torch.nn.Identity()), values, ["0"], k=2, progress=False, cache=False)["0"]


def test_infinite_outer_edges_become_the_units_extremes(scan):
    counts, edges = finite_histogram(scan, 0)
    raw_counts, raw_edges = scan.histogram(0)
    np.testing.assert_array_equal(counts, raw_counts)
    assert np.isinf(raw_edges[0]) and np.isinf(raw_edges[-1])  # values beyond ±2**20 are in the outer bins
    assert edges[0] == -5.0e6 and edges[-1] == 3.0e6
    np.testing.assert_array_equal(edges[1:-1], raw_edges[1:-1])


def test_the_summary_and_the_bad_values(scan):
    assert unit_summary(scan, 2) == {
        "finite values": 4,
        "firing density": pytest.approx(float(scan.density[2])),
        "mean": pytest.approx(1.125),
        "std": pytest.approx(float(np.std([0.5, 0.0, 1.5, 2.5]))),  # population (ddof=0)
        "min": 0.0,
        "max": 2.5,
        "NaN values": 0,
        "±inf values": 0,
    }
    summary = unit_summary(scan, 1)
    assert (summary["finite values"], summary["NaN values"], summary["±inf values"]) == (2, 1, 1)
    assert (summary["min"], summary["max"]) == (1.0, 2.0)
    assert non_finite(scan, 1) == "1 NaN, 1 inf" and non_finite(scan, 2) == ""
