"""marimo for the browser tests: a server (`marimo run` or `marimo edit`) on a free local port for a
copy of a marimo notebook, with a cell appended that writes the widgets' kernel state to a JSON file on
every trait change (marimo has no kernel to ask from outside: the test reads that file)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MARIMO = Path(sys.executable).parent / "marimo"
START_TIMEOUT = 60
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def marimo_server(mode: str, notebook: Path, log: Path) -> Iterator[str]:
    """``marimo run`` or ``marimo edit`` serving ``notebook``; yields its URL."""
    port = _free_port()
    args = [str(MARIMO), mode, str(notebook), "--headless", "--port", str(port), "--host", "127.0.0.1"]
    args += ["--no-token", "--skip-update-check"] if mode == "edit" else []
    env = {**os.environ, "MARIMO_SKIP_UPDATE_CHECK": "1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=notebook.parent, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(url + "health", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"marimo {mode} did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


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
