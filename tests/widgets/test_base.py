"""What every widget shares: errors reported in the widget."""

from __future__ import annotations

from neurowidgets.widgets.bokeh_host import BokehHost


def test_an_error_reported_inside_a_succeeding_block_stays_shown():
    host = BokehHost()
    with host.reporting_errors("outer"):
        with host.reporting_errors("inner"):
            raise ValueError("bad")
    assert host.error == "inner: ValueError: bad"
    with host.reporting_errors("next"):
        pass
    assert host.error == ""
