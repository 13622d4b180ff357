"""One wire schema: js/lib/schema.ts is generated from the widgets' request handlers and must be current,
so a handler renamed or given other arguments in Python fails here, and a page sending a kind or
arguments the kernel does not take fails `npm run typecheck` (js/lib/requests.ts types every request)."""

from __future__ import annotations

import pathlib

import pytest

from neurowidgets.widgets import wire
from neurowidgets.widgets.base import NeuroWidget, handles

SCHEMA = pathlib.Path(__file__).resolve().parents[2] / "js" / "lib" / "schema.ts"


def test_the_typescript_schema_is_generated_from_the_handlers():
    assert SCHEMA.read_text() == wire.typescript_schema(), (
        "js/lib/schema.ts is out of date: python -m neurowidgets.widgets.wire > js/lib/schema.ts"
    )


def test_the_schema_reads_each_handlers_arguments():
    kinds = wire.requests()
    assert kinds["occlude"] == {"rect": "number[]"}
    assert kinds["set_text"] == {"row": "number", "text": "string"}
    assert kinds["open_example"] == {"index": "number"}
    assert kinds["tap"] == {"chosen": "Record<string, unknown[]>"}
    assert kinds["clear"] == {}


def test_one_kind_takes_the_same_arguments_in_every_widget(monkeypatch):
    class Other(NeuroWidget):
        @handles("occlude")
        def _occlude(self, rect: list[float], fill: float) -> None: ...

    import neurowidgets.widgets.neuron_grid as module

    monkeypatch.setattr(module, "Other", Other, raising=False)
    with pytest.raises(TypeError, match="request 'occlude' takes"):
        wire.requests()


def test_the_colour_limit_is_the_twin_of_the_pages():
    """The vectors of js/tests/store.test.ts: the same limits from Python's twin of Store.scale."""
    from types import SimpleNamespace

    import numpy as np

    from neurowidgets.widgets.layer_view import LayerView

    def limit(parts):
        view = SimpleNamespace(_scaled_values=lambda: parts, num_units=2)
        return LayerView.colour_limit.fget(view)

    values = np.array([[[1, -4], [2, np.inf]], [[3, np.nan], [100, 100]]], np.float32)
    assert limit([values[0], values[1, :1]]) == 3  # the second example's second position is padding
    assert limit(list(values)) == 100
    assert limit([values[0], values[1, :1], np.array([[0, 0], [-7, 0]], np.float32)]) == 4
    assert limit([np.zeros((3, 2), np.float32)]) == 1
