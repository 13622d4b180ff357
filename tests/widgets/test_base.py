"""What every widget shares: errors reported in the widget."""

from __future__ import annotations

import threading

from frontend import FakeFrontend

from neurowidgets.widgets.bokeh_host import BokehHost
from neurowidgets.widgets.companion import Companion


def test_an_error_reported_inside_a_succeeding_block_stays_shown():
    host = BokehHost()
    with host.reporting_errors("outer"):
        with host.reporting_errors("inner"):
            raise ValueError("bad")
    assert host.error == "inner: ValueError: bad"
    with host.reporting_errors("next"):
        pass
    assert host.error == ""


def test_a_change_made_while_another_thread_holds_sync_waits_and_follows_in_order():
    """The background publishes from its own thread: a change made meanwhile by the kernel's thread
    waits for that thread's held block to be sent, then goes in its own message, after it."""
    host = Companion()  # a BokehHost with a synced `layer`
    frontend = FakeFrontend(host)
    holding, release = threading.Event(), threading.Event()

    def background_publish():
        with host.hold_sync():
            host.layer = "from the background"
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=background_publish)
    worker.start()
    holding.wait(10)
    setter = threading.Thread(target=lambda: setattr(host, "error", "from the kernel's thread"))
    setter.start()
    setter.join(0.3)
    assert setter.is_alive(), "the change did not wait for the other thread's held block"
    release.set()
    worker.join(10)
    setter.join(10)
    states = [state for state in frontend.updates() if {"layer", "error"} & set(state)]
    assert states == [{"layer": "from the background"}, {"error": "from the kernel's thread"}]
