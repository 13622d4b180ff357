"""Play the front-end's part without a browser: send what it sends, record what it receives."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from ipywidgets.widgets.widget import _put_buffers, _remove_buffers

from neurowidgets.widgets.wire import decode


class FakeFrontend:
    """Records every message a widget sends and replays front-end messages into it."""

    def __init__(self, widget):
        self.widget = widget
        self.sent: list[tuple[dict, list]] = []
        widget._send = lambda msg, buffers=None: self.sent.append((msg, list(buffers or [])))

    def set_state(self, **state: Any) -> None:
        """Exactly what `model.set(...); model.save_changes()` sends: an `update` with buffers split."""
        state, buffer_paths, buffers = _remove_buffers(state)
        msg = {"content": {"data": {"method": "update", "state": state, "buffer_paths": buffer_paths}}}
        msg["buffers"] = [memoryview(b) for b in buffers]  # bytes arrive in Python as memoryview
        self.widget._handle_msg(msg)

    def custom(self, content: dict, buffers: list | None = None) -> None:
        msg = {"content": {"data": {"method": "custom", "content": content}}, "buffers": buffers or []}
        self.widget._handle_msg(msg)

    def tap(self, **chosen: list) -> None:
        """What js/bokeh_host.ts sends for a tap in a BokehHost's plot: a "tap" request with, for each
        source whose selection the tap changed, its key column's values at the tapped rows."""
        self._requests = getattr(self, "_requests", 0) + 1
        self.custom({"type": "request", "id": self._requests, "kind": "tap", "args": {"chosen": chosen}})

    def updates(self) -> list[dict]:
        """The state updates received, with their buffers put back where they were."""
        result = []
        for msg, buffers in self.sent:
            if msg.get("method") == "update":
                state = copy.deepcopy(msg["state"])
                _put_buffers(state, msg.get("buffer_paths", []), buffers)
                result.append(state)
        return result

    def last(self, name: str) -> Any:
        for state in reversed(self.updates()):
            if name in state:
                return state[name]
        raise AssertionError(f"the widget never sent {name!r}; sent: {[list(s) for s in self.updates()]}")

    def patches(self) -> dict:
        """What the page holds as a BokehHost's ``patches``: the last state sent, with every "patch"
        message after it merged in (buffers put back), as js/bokeh_host.ts does."""
        merged: dict = {}
        for msg, buffers in self.sent:
            if msg.get("method") == "update" and "patches" in msg["state"]:
                state = copy.deepcopy(msg["state"])
                _put_buffers(state, msg.get("buffer_paths", []), buffers)
                merged = state["patches"]
            elif msg.get("method") == "custom" and msg["content"].get("type") == "patch":
                delta = copy.deepcopy(msg["content"]["patches"])
                _put_buffers(delta, msg["content"]["buffer_paths"], buffers)
                for model_id, entry in delta.items():
                    merged[model_id] = {**merged.get(model_id, {}), **entry}
        return merged

    def last_array(self, name: str) -> np.ndarray:
        wire = self.last(name)
        assert isinstance(wire["data"], (bytes, memoryview)), "arrays travel as binary buffers"
        return decode(wire)
