"""marimo for the browser tests: a server (`marimo run` or `marimo edit`) on a free local port for a
copy of a marimo notebook, with a cell appended that writes the widgets' kernel state to a JSON file on
every trait change (marimo has no kernel to ask from outside: the test reads that file)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from servers import serve

MARIMO = Path(sys.executable).parent / "marimo"
POLL_TIMEOUT = 60

STATE_CELL = """

@app.cell
def _({widgets}):
    import json as _json
    import os as _os

    def _dump(_change=None):
        _state = {{name: {{"layer": w.layer, "selected_units": list(w.selected_units), "error": w.error,
                           "current_index": getattr(w, "current_index", None), "patch": list(getattr(w, "patch", []))}}
                  for name, w in {{{names}}}.items()}}
        with open({path!r} + ".tmp", "w") as _f:
            _json.dump(_state, _f)
        _os.replace({path!r} + ".tmp", {path!r})

    for _w in ({widgets},):
        _w.observe(_dump)
    _dump()
    return

"""


def with_state_cell(notebook: Path, target: Path, widgets: list[str], state_file: Path) -> Path:
    """A copy of ``notebook`` at ``target`` whose last cell dumps ``widgets`` (cell variables) to ``state_file``."""
    source = notebook.read_text()
    main = source.index('\nif __name__ == "__main__":')
    cell = STATE_CELL.format(
        widgets=", ".join(widgets), names=", ".join(f"{w!r}: {w}" for w in widgets), path=str(state_file)
    )
    target.write_text(source[:main].rstrip() + "\n" + cell + source[main:])
    return target


def marimo_server(mode: str, notebook: Path, log: Path) -> contextlib.AbstractContextManager[str]:
    """``marimo run`` or ``marimo edit`` serving ``notebook``; yields its URL."""

    def args(port: int) -> list[str]:
        args = [str(MARIMO), mode, str(notebook), "--headless", "--port", str(port), "--host", "127.0.0.1"]
        return args + (["--no-token", "--skip-update-check"] if mode == "edit" else [])

    env = {**os.environ, "MARIMO_SKIP_UPDATE_CHECK": "1"}
    return serve(args, "health", log, cwd=notebook.parent, env=env)


def read_state(state_file: Path) -> dict[str, Any] | None:
    try:
        return json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None


def poll_state(state_file: Path, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """Wait until the kernel's dumped state satisfies ``check``."""
    deadline = time.monotonic() + POLL_TIMEOUT
    while True:
        state = read_state(state_file)
        if state is not None and check(state):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel never had {what}; its state: {state}")
        time.sleep(0.2)
