"""Fixtures of the bokeh companion tests: the digits CNN, a scan of two of its layers over the test
digits, and an explorer of four of them on relu3 with that data and scan."""

from __future__ import annotations

import pytest

import neurowidgets as nw


@pytest.fixture(scope="session")
def data(digits):
    return digits


@pytest.fixture(scope="session")
def scan(data):
    return nw.scan(data.model, data.test_images, ["relu2", "relu3"], k=8, progress=False, cache=False)


@pytest.fixture
def explorer(data, scan):
    return nw.explore(data.model, data.test_images[:4], layer="relu3", data=data.test_images, scan=scan)
