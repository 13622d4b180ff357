"""Browser-test harness: JupyterLab on a copy of notebooks/, driven by headless Chromium.

Fixtures
  lab_server  (session)  JupyterLab serving a temporary copy of the repo's notebooks/; has .url,
                         .root (the copied notebooks dir), .runtime_dir, .log_path, .api(...)
                         (shared by every test: each writes its own notebook, and its kernels are
                         shut down and its tabs dropped when it ends)
  notebook_server (session)  Notebook 7: lab_server itself, which serves it too (/tree, /notebooks/...)
  browser     (session)  Playwright (sync API) Chromium from /usr/bin/chromium
  page        (function) a fresh context + page, viewport 1400x1000; on failure its screenshot, the
                         browser console and the servers' log lines written during the test land in
                         <artifacts>/failures/<test>/, and their paths are printed at the end
  lab         (function) the helpers below bound to `page` and `lab_server`:
                         lab.open(name), lab.run_all(), lab.run_notebook(name, cells) (write, open,
                         run all), lab.eval(expr), lab.poll(expr, expected),
                         lab.kernel(), lab.write_notebook(name, cells), lab.screenshot(locator, name),
                         lab.wait_for_kernel("Busy" | "Idle") (Lab's status bar)
  lab_saving_widgets (function) the same helpers, with the widget manager's saveState setting on
                         for this test (widget state written into notebooks on save)

Helpers (plain functions; prefer the `lab` fixture in tests: `from conftest import ...` is
ambiguous as soon as another conftest.py exists under tests/)
  open_notebook(page, lab_server, name)        open it and wait for "(ipykernel) | Idle"
  run_all(page)                                Run > Run All Cells, wait until every cell is done
                                               (Lab and Notebook 7); a cell's error fails at once
  wait_until_still(locator)                    wait until a scrolled element stops moving
  kernel_client(lab_server, name=None)         BlockingKernelClient on the notebook's kernel
  kernel_eval(client, code) -> str             execute_result text/plain, else stdout; raises
                                               KernelError (with the traceback) on error
  poll_kernel(client, expr, expected, timeout) re-evaluate until equal (or predicate true)
  artifact_path(name) -> Path                  under $NEUROWIDGETS_ARTIFACTS or <repo>/test-artifacts
  write_notebook(lab_server, name, cells)      a notebook with the python3 kernelspec
  save_failure_artifacts(item, page, console, server_logs)  what explains a failed test, on disk
  dark_theme(page)                             with-block in JupyterLab Dark, Light again after (the
                                               theme is a user setting of the shared server)

Waits are for states (a locator, a kernel reply, an idle status), never for a fixed time: under load
any fixed time is too short. Timeouts all live below.

Every test collected under tests/browser/ gets the `browser` marker.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
HERE = Path(__file__).resolve().parent

CHROMIUM = "/usr/bin/chromium"
# headless=True is passed to launch(); these are the other flags known to work on these machines.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 1000}

# --- Timeouts, in seconds: all of them live here. NEUROWIDGETS_TIMEOUT_SCALE=2 doubles them all. ---
_SCALE = float(os.environ.get("NEUROWIDGETS_TIMEOUT_SCALE", "1"))
SERVER_START_TIMEOUT = 60 * _SCALE  # jupyter lab process -> /api/status answers
SERVER_STOP_TIMEOUT = 15 * _SCALE  # SIGTERM -> exited (then SIGKILL)
PAGE_TIMEOUT = 30 * _SCALE  # default for every Playwright action and wait
KERNEL_READY_TIMEOUT = 90 * _SCALE  # notebook URL opened -> status bar "(ipykernel) | Idle"
RUN_START_TIMEOUT = 15 * _SCALE  # Run All clicked -> some cell shows [*]
RUN_ALL_TIMEOUT = 300 * _SCALE  # Run All clicked -> no [*] left and kernel idle
KERNEL_CONNECT_TIMEOUT = 30 * _SCALE  # connection file + kernel_info reply
EVAL_TIMEOUT = 60 * _SCALE  # one kernel_eval round trip
POLL_TIMEOUT = 20 * _SCALE  # poll_kernel default
POLL_INTERVAL = 0.2  # poll_kernel re-evaluation period (not scaled)

KERNEL_IDLE_RE = re.compile(r"\(ipykernel\) \| Idle")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# The Lab settings the tests run with (JUPYTERLAB_SETTINGS_DIR is a temp dir): no news/update
# toasts that could cover the page; no autosave, so a notebook that several tests open (the
# quickstart) is the same file for each, never one an earlier test saved with its outputs.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


# ----------------------------------------------------------------------------------------------
# Markers and failure reports
# ----------------------------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    setattr(item, f"_nw_report_{report.when}", report)
    return report


def has_failed(item: pytest.Item) -> bool:
    return any(getattr(getattr(item, f"_nw_report_{when}", None), "failed", False) for when in ("setup", "call"))


# ----------------------------------------------------------------------------------------------
# Artifacts
# ----------------------------------------------------------------------------------------------


def artifacts_dir() -> Path:
    path = Path(os.environ.get("NEUROWIDGETS_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifact_path(name: str) -> Path:
    """A path for `name` under $NEUROWIDGETS_ARTIFACTS (default <repo>/test-artifacts), dirs made."""
    path = artifacts_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


# nodeid -> the artifacts saved for that failed test; printed at the end of the terminal summary.
_FAILURE_ARTIFACTS: dict[str, list[Path]] = {}


def save_failure_artifacts(
    item: pytest.Item, page: Any, console: list[str], server_logs: list[tuple[LabServer, int]]
) -> list[Path]:
    """Save what explains a failed browser test into <artifacts>/failures/<test>/: the page's
    screenshot, its console, and each server's log from the byte offset it had when the test began.
    The paths become the test's `artifact` properties (the junit XML that scripts/test summarises)
    and are printed after pytest's short test summary."""
    folder = artifacts_dir() / "failures" / _safe_name(item.nodeid)
    shutil.rmtree(folder, ignore_errors=True)  # an earlier run's failure of the same test
    folder.mkdir(parents=True)
    paths = []
    try:
        page.screenshot(path=str(folder / "screenshot.png"))
        paths.append(folder / "screenshot.png")
    except Exception as exc:  # the page may be gone; the rest still explains the failure
        console.append(f"[harness] failure screenshot failed: {exc}")
    (folder / "console.log").write_text("\n".join(console) + "\n")
    paths.append(folder / "console.log")
    for server, offset in server_logs:
        path = folder / server.log_path.name
        path.write_bytes(server.log_since(offset))
        paths.append(path)
    _FAILURE_ARTIFACTS[item.nodeid] = paths
    item.user_properties.extend(("artifact", str(path)) for path in paths)
    return paths


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Iterator[None]:
    # The outermost wrapper: this runs after pytest's own short test summary, so the artifact paths
    # sit in the last lines of the log, next to the failed tests' names.
    result = yield
    if _FAILURE_ARTIFACTS:
        terminalreporter.section("artifacts of failed browser tests", sep="-")
        for nodeid, paths in _FAILURE_ARTIFACTS.items():
            terminalreporter.line(nodeid)
            for path in paths:
                terminalreporter.line(f"    {path}")
    return result


# ----------------------------------------------------------------------------------------------
# JupyterLab server
# ----------------------------------------------------------------------------------------------


@dataclass
class LabServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash, no token needed
    root: Path  # the served copy of notebooks/ (Lab autosaves into it, never into the repo)
    runtime_dir: Path  # JUPYTER_RUNTIME_DIR: kernel-<id>.json connection files live here
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 10) -> Any:
        """Call the server's REST API; returns the decoded JSON (None for an empty body)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def sessions(self) -> list[dict[str, Any]]:
        return self.api("GET", "/api/sessions")

    def shutdown_sessions(self) -> None:
        """Shut down every notebook session and its kernel, and wait until the server lists none (between
        tests: the next test must not see this one's kernel, however slowly it stops)."""
        deadline = time.monotonic() + 2 * SERVER_STOP_TIMEOUT
        while sessions := self.sessions():
            if time.monotonic() > deadline:
                raise RuntimeError(f"sessions still open after shutting them down: {[s.get('path') for s in sessions]}")
            for session in sessions:
                try:
                    self.api("DELETE", f"/api/sessions/{session['id']}", timeout=SERVER_STOP_TIMEOUT)
                except urllib.error.HTTPError as error:
                    if error.code != 404:  # 404: it went away meanwhile
                        raise
                except (urllib.error.URLError, TimeoutError):
                    pass  # still stopping: listed again, or gone, on the next round

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> bytes:
        """What the server logged after its log had `offset` bytes (one test's share of the log)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read()
        except OSError:
            return b"(no log)\n"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _server_url(runtime_dir: Path) -> str:
    """http://127.0.0.1:<port> from the jpserver-<pid>.json a started server writes into its own
    runtime dir; "" until it is there and complete."""
    for info_file in runtime_dir.glob("jpserver-*.json"):
        try:
            return f"http://127.0.0.1:{json.loads(info_file.read_text())['port']}"
        except (OSError, ValueError, KeyError):
            pass  # being written
    return ""


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def _start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    """Start `jupyter lab` on a temporary copy of notebooks/ with LAB_SETTINGS; yields the server and
    stops it afterwards. It serves Notebook 7 too (the notebook package's server extension)."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    if NOTEBOOKS.is_dir():
        shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    else:
        root.mkdir()
    dirs = {name: base / name for name in ("config", "runtime", "settings", "workspaces", "path")}
    for path in dirs.values():
        path.mkdir()
    for rel, values in LAB_SETTINGS.items():
        _write_json(dirs["settings"] / rel, values)
    # A python3 kernelspec that names this interpreter explicitly. JUPYTER_PATH is searched before
    # the user and sys.prefix data dirs, so a stray ~/.local/share/jupyter/kernels/python3 cannot
    # send the notebooks to another Python.
    _write_json(
        dirs["path"] / "kernels" / "python3" / "kernel.json",
        {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)",
            "language": "python",
            "metadata": {"debugger": True},
        },
    )

    env = dict(os.environ)
    env.pop("ANYWIDGET_HMR", None)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
        JUPYTER_PATH=os.pathsep.join(filter(None, [str(dirs["path"]), os.environ.get("JUPYTER_PATH")])),
        JUPYTER_PLATFORM_DIRS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        PYTHONUNBUFFERED="1",
    )
    cmd = [
        sys.executable, "-m", "jupyter", "lab",
        # Port 0: the server binds a port the OS picks and writes it into its runtime dir (read back
        # below), so parallel runs cannot race for one port or talk to each other's server.
        "--no-browser", "--allow-root", "--ip=127.0.0.1", "--port=0",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",  # lets LabServer.api() POST/DELETE without a cookie
        "--ServerApp.terminals_enabled=False",
        # window.jupyterapp in Lab and in Notebook 7, for run_all's error check
        "--LabApp.expose_app_in_browser=True", "--JupyterNotebookApp.expose_app_in_browser=True",
        f"--ServerApp.root_dir={root}",
    ]  # fmt: skip
    if os.environ.get("NEUROWIDGETS_LAB_NODELAY", "1") != "0":  # as scripts/quickstart starts Lab
        cmd.append("--ServerApp.kernel_websocket_connection_class=neurowidgets.server.NoDelayConnection")
    # The full log stays beside the server's temp dirs (one per session, so parallel runs never share
    # it); a failing test's share of it is copied into the artifacts (save_failure_artifacts).
    log_path = base / "jupyter-lab-server.log"
    with open(log_path, "wb") as log:
        log.write(f"$ {' '.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = LabServer(
        url="",  # known once the server has written its port
        root=root,
        runtime_dir=dirs["runtime"],
        log_path=log_path,
        process=process,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {process.returncode} during startup; log:\n{server.log_tail()}"
                )
            if not server.url:
                server.url = _server_url(dirs["runtime"])
            if server.url:
                try:
                    server.api("GET", "/api/status", timeout=2)
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"jupyter lab did not answer /api/status within {SERVER_START_TIMEOUT:.0f} s; "
                    f"log:\n{server.log_tail()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        _close_kernel_clients()
        if process.poll() is None:
            try:
                server.shutdown_sessions()
            except (urllib.error.URLError, OSError, RuntimeError):
                pass  # the server is stopped next whatever its kernels do
            process.terminate()
            try:
                process.wait(timeout=SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    yield from _start_server(tmp_path_factory)


@pytest.fixture(scope="session")
def notebook_server(lab_server: LabServer) -> LabServer:
    """Notebook 7: notebooks open at /notebooks/<name>. The JupyterLab server serves it too (the
    notebook package's server extension), so no second server starts."""
    return lab_server


def write_notebook(lab_server: LabServer, name: str, cells: list[str]) -> Path:
    """Write a notebook of code cells into the served dir, with the python3 kernelspec (no
    kernel-choice dialog). Returns its path. Plain JSON: importing nbformat costs about 2 s here
    (jsonschema), and validating as much again."""
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": [
            {
                "cell_type": "code",
                "id": f"cell-{i}",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
    }
    path = lab_server.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook, indent=1) + "\n")
    return path


# ----------------------------------------------------------------------------------------------
# Browser and page
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(
            f"{CHROMIUM} is missing: run scripts/setup --browser (apt-get install chromium), "
            'or deselect these tests with -m "not browser"'
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    # The server's log from here on is this test's share of it (Notebook 7 tests use it too).
    servers = [request.getfixturevalue("lab_server")] if "lab_server" in request.fixturenames else []
    server_logs = [(server, server.log_size()) for server in servers]
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(PAGE_TIMEOUT * 1000)
    pg = context.new_page()
    console: list[str] = []
    # From the context, not the page: a test that opens a second page (to reload a saved notebook)
    # keeps its console too.
    context.on("console", lambda msg: console.append(f"[{msg.type}] {msg.text}"))
    context.on("weberror", lambda err: console.append(f"[pageerror] {err.error}"))
    pg.console_log = console  # the browser console of this test, for assertions or debugging
    try:
        yield pg
    finally:
        if has_failed(request.node):
            last = context.pages[-1] if context.pages else pg  # the page the test was on when it failed
            save_failure_artifacts(request.node, last, console, server_logs)
        context.close()
        _close_kernel_clients()
        # Kernels from this test must not outlive it (memory; the next test's status bar).
        if "lab_server" in request.fixturenames:
            request.getfixturevalue("lab_server").shutdown_sessions()


# ----------------------------------------------------------------------------------------------
# Driving JupyterLab
# ----------------------------------------------------------------------------------------------


def open_notebook(page: Any, lab_server: LabServer, name: str) -> None:
    """Open `name` (relative to lab_server.root) in a reset workspace and wait until its kernel is
    ready. `?reset` drops the tabs an earlier test left in the workspace, so only this notebook (and
    its one kernel) is open."""
    url = f"{lab_server.url}/lab/tree/{urllib.parse.quote(name)}?reset"
    page.goto(url)
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible")
    page.get_by_text(KERNEL_IDLE_RE).first.wait_for(state="visible", timeout=KERNEL_READY_TIMEOUT * 1000)


# The notebook in the main area's current tab.
CURRENT_NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"

# Installed before Run All is clicked: flags the first moment any cell of the current notebook
# shows the [*] prompt, so a run too quick to be seen by polling still counts as started.
_WATCH_RUN_JS = """
(nb) => {
  window.__nwRunStarted = false;
  if (window.__nwRunObserver) window.__nwRunObserver.disconnect();
  const busy = () => Array.from(document.querySelectorAll(nb + ' .jp-InputPrompt'))
    .some(el => el.textContent.includes('[*]'));
  const obs = new MutationObserver(() => {
    if (busy()) { window.__nwRunStarted = true; obs.disconnect(); }
  });
  obs.observe(document.body, {subtree: true, childList: true, characterData: true});
  window.__nwRunObserver = obs;
}
"""

# Done: the run started, no cell shows [*], and the kernel is idle: in Lab as its status bar says;
# Notebook 7 has no status bar, so there as the notebook's session says (window.jupyterapp).
_RUN_DONE_JS = r"""
(nb) => {
  if (!window.__nwRunStarted) return false;
  const prompts = document.querySelectorAll(nb + ' .jp-InputPrompt');
  if (Array.from(prompts).some(el => el.textContent.includes('[*]'))) return false;
  const bar = document.querySelector('#jp-main-statusbar');
  if (bar) return /\(ipykernel\) \| Idle/.test(bar.textContent);
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const session = panel && panel.sessionContext && panel.sessionContext.session;
  return !!(session && session.kernel && session.kernel.status === 'idle');
}
"""

# The error outputs (output_type "error") of the current notebook's cells, read from the model
# through window.jupyterapp (the server runs with LabApp.expose_app_in_browser): in the DOM an error
# looks exactly like any stderr text. null when the app is not exposed.
_ERRORS_JS = r"""
() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model) return null;
  const errors = [];
  const cells = panel.content.model.cells;
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (!cell.outputs) continue;
    for (let j = 0; j < cell.outputs.length; j++) {
      const out = cell.outputs.get(j).toJSON();
      if (out.output_type === 'error') errors.push({cell: i, ...out});
    }
  }
  return errors;
}
"""


class NotebookError(AssertionError):
    """A cell of the notebook run from the browser raised."""


def run_all(page: Any, *, timeout: float = RUN_ALL_TIMEOUT, check_errors: bool = True) -> None:
    """Run > Run All Cells in the current notebook and wait until every cell has finished.

    With check_errors (default), raise NotebookError with ename, evalue and traceback of every
    error output in the notebook (read from Lab's model: stderr text and warnings don't count)."""
    page.evaluate(_WATCH_RUN_JS, CURRENT_NOTEBOOK)
    page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
    page.locator('li[data-command="runmenu:run-all"]').click()
    try:
        page.wait_for_function("() => window.__nwRunStarted === true", timeout=RUN_START_TIMEOUT * 1000)
    except Exception as exc:
        raise AssertionError(
            f"Run All clicked, but no cell showed [*] within {RUN_START_TIMEOUT:.0f} s "
            "(no non-empty code cell? no kernel?)"
        ) from exc
    page.wait_for_function(_RUN_DONE_JS, arg=CURRENT_NOTEBOOK, timeout=timeout * 1000, polling=100)
    if check_errors:
        errors = page.evaluate(_ERRORS_JS)
        if errors is None:
            raise RuntimeError("window.jupyterapp is missing: cannot read the cells' outputs")
        if errors:
            first = errors[0]
            raise NotebookError(
                # First line: what a log's one-line summary shows.
                f"{len(errors)} cell(s) raised during Run All, first cell {first['cell']}: "
                f"{first.get('ename')}: {first.get('evalue')}\n"
                + "\n---\n".join(
                    f"cell {e['cell']}: {e.get('ename')}: {e.get('evalue')}\n"
                    + _ANSI_RE.sub("", "\n".join(e.get("traceback", [])))
                    for e in errors
                )
            )


# Resolves true once the element's box has stayed put for 3 animation frames (a scroll or a layout
# has settled), false if it still moves after about 10 s of frames.
_STILL_JS = """
(el) => new Promise((resolve) => {
  let last = '', same = 0, frames = 0;
  const tick = () => {
    const r = el.getBoundingClientRect();
    const now = [r.x, r.y, r.width, r.height].join();
    same = now === last ? same + 1 : 0;
    last = now;
    if (same >= 3) resolve(true);
    else if (++frames > 600) resolve(false);
    else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})
"""


def wait_until_still(locator: Any) -> None:
    """Wait until `locator`'s element stops moving: after a scroll into view, or a click that makes
    the notebook scroll, before pressing on coordinates inside it."""
    assert locator.evaluate(_STILL_JS), "the element kept moving for about 10 s"


# ----------------------------------------------------------------------------------------------
# Talking to the notebook's kernel directly
# ----------------------------------------------------------------------------------------------

_OPEN_CLIENTS: list[Any] = []


def _close_kernel_clients() -> None:
    while _OPEN_CLIENTS:
        client = _OPEN_CLIENTS.pop()
        try:
            client.stop_channels()
        except Exception:
            pass


def kernel_client(lab_server: LabServer, name: str | None = None) -> Any:
    """A started jupyter_client.BlockingKernelClient on the kernel of notebook `name` (or of the
    only running session when name is None). Closed automatically when the test's page closes."""
    from jupyter_client import BlockingKernelClient

    deadline = time.monotonic() + KERNEL_CONNECT_TIMEOUT
    while True:
        sessions = lab_server.sessions()
        if name is not None:
            sessions = [s for s in sessions if s.get("path") == name]
        if len(sessions) == 1 and sessions[0].get("kernel"):
            break
        if time.monotonic() > deadline:
            listing = [(s.get("path"), (s.get("kernel") or {}).get("id")) for s in lab_server.sessions()]
            raise RuntimeError(f"expected one session for {name or 'any notebook'}; sessions: {listing}")
        time.sleep(0.2)
    kernel_id = sessions[0]["kernel"]["id"]
    connection_file = lab_server.runtime_dir / f"kernel-{kernel_id}.json"
    while not connection_file.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no connection file {connection_file}")
        time.sleep(0.1)

    client = BlockingKernelClient()
    client.load_connection_file(str(connection_file))
    client.start_channels()
    _OPEN_CLIENTS.append(client)
    client.wait_for_ready(timeout=max(1.0, deadline - time.monotonic()))
    return client


class KernelError(AssertionError):
    """Code sent by kernel_eval raised in the kernel."""


def kernel_eval(client: Any, code: str, timeout: float = EVAL_TIMEOUT) -> str:
    """Run `code` in the kernel (store_history=False, so the notebook's counters stay put).

    Returns the text/plain of the execute_result (the repr of a final expression, e.g. "42" for
    `x`), else everything printed to stdout without the final newline. Raises KernelError with
    the traceback when the code raises."""
    stdout: list[str] = []
    results: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content.get("name") == "stdout":
            stdout.append(content["text"])
        elif kind == "execute_result":
            results.append(content["data"].get("text/plain", ""))

    reply = client.execute_interactive(code, store_history=False, allow_stdin=False, timeout=timeout, output_hook=hook)
    content = reply["content"]
    if content["status"] != "ok":
        tb = _ANSI_RE.sub("", "\n".join(content.get("traceback", [])))
        raise KernelError(f"{content.get('ename')}: {content.get('evalue')}\n{tb}\n(code: {code!r})")
    if results:
        return results[-1]
    return "".join(stdout).removesuffix("\n")


def poll_kernel(
    client: Any,
    expr: str,
    expected: str | Callable[[str], bool],
    timeout: float = POLL_TIMEOUT,
    interval: float = POLL_INTERVAL,
) -> str:
    """Re-evaluate `expr` until its text equals `expected` (or `expected(text)` is true); return
    the text. Changes made in the browser reach the kernel as comm messages that may still be in
    flight, hence the polling. Errors count as "not yet" until the timeout, which then shows the
    last value or error."""
    check = expected if callable(expected) else (lambda text: text == expected)
    deadline = time.monotonic() + timeout
    last = "(not evaluated)"
    while True:
        try:
            value = kernel_eval(client, expr)
            if check(value):
                return value
            last = repr(value)
        except KernelError as exc:
            last = f"error: {str(exc).splitlines()[0]}"
        if time.monotonic() > deadline:
            want = getattr(expected, "__name__", "predicate") if callable(expected) else repr(expected)
            raise AssertionError(f"{expr} did not become {want} within {timeout:.0f} s; last: {last}")
        time.sleep(interval)


def wait_until(check: Callable[[], Any], what: str, timeout: float = POLL_TIMEOUT, interval: float = 0.05) -> Any:
    """Call ``check()`` until it returns something truthy and return that: for state that arrives
    asynchronously (the kernel's answer drawn in the page, a file the server is writing). On timeout
    the error says what never happened and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened within {timeout:.0f} s; last: {last!r}")
        time.sleep(interval)


_NEXT_PAINT = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"


@contextlib.contextmanager
def dark_theme(page: Any) -> Iterator[None]:
    """JupyterLab Dark inside the block, Light again after: the theme is saved as a user setting of the
    server every test shares, and a test left dark would run the next ones dark."""
    page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
    try:
        yield
    finally:
        page.evaluate("window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Light'})")
        page.wait_for_function("document.body.dataset.jpThemeLight === 'true'")


def next_paint(page: Any) -> None:
    """Return once the page has painted the frame after this one (what was pending is drawn)."""
    page.evaluate(_NEXT_PAINT)


def unhover(page: Any) -> None:
    """No focus ring, hover tooltip or hover highlight over a screenshot: blur, move the mouse to a
    corner, wait until no bokeh tooltip shows and the next frame is painted."""
    page.evaluate("document.activeElement?.blur()")
    page.mouse.move(5, 5)
    wait_until(lambda: page.locator(".bk-tooltip-content:visible").count() == 0, "the hover tooltip hidden")
    next_paint(page)


# ----------------------------------------------------------------------------------------------
# The `lab` fixture: the helpers bound to this test's page and server
# ----------------------------------------------------------------------------------------------


class Lab:
    NotebookError = NotebookError  # for pytest.raises(lab.NotebookError) without importing conftest
    KernelError = KernelError

    def __init__(self, page: Any, server: LabServer) -> None:
        self.page = page
        self.server = server
        self.name: str | None = None
        self._clients: dict[str | None, Any] = {}

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        return write_notebook(self.server, name, cells)

    def open(self, name: str) -> Lab:
        open_notebook(self.page, self.server, name)
        self.name = name
        return self

    def run_all(self, **kwargs: Any) -> None:
        run_all(self.page, **kwargs)

    def wait_for_kernel(self, state: str, timeout: float = KERNEL_READY_TIMEOUT) -> None:
        """Wait until Lab's status bar shows the kernel in `state` ("Idle", "Busy")."""
        status = self.page.get_by_text(re.compile(rf"\(ipykernel\) \| {state}"))
        status.first.wait_for(state="visible", timeout=timeout * 1000)

    def run_notebook(self, name: str, cells: list[str]) -> Lab:
        """Write a notebook of ``cells``, open it and run all its cells."""
        self.write_notebook(name, cells)
        self.open(name)
        self.run_all()
        return self

    def kernel(self, name: str | None = None) -> Any:
        key = name or self.name
        if key not in self._clients:
            self._clients[key] = kernel_client(self.server, key)
        return self._clients[key]

    def eval(self, code: str, timeout: float = EVAL_TIMEOUT) -> str:
        return kernel_eval(self.kernel(), code, timeout=timeout)

    def poll(self, expr: str, expected: str | Callable[[str], bool], timeout: float = POLL_TIMEOUT) -> str:
        return poll_kernel(self.kernel(), expr, expected, timeout=timeout)

    def screenshot(self, target: Any, name: str) -> Path:
        """Screenshot a locator (or the page when target is None) to the artifacts dir. Lab scrolls
        inside the notebook, so a full-page screenshot misses most of it: prefer a locator."""
        path = artifact_path(name)
        (target or self.page).screenshot(path=str(path))
        return path


@pytest.fixture
def lab(page: Any, lab_server: LabServer) -> Lab:
    return Lab(page, lab_server)


# The widget manager's settings (the schema ships in jupyterlab_widgets), whose saveState writes widget
# state into the notebook's metadata on save.
SAVE_WIDGET_STATE_PLUGIN = "@jupyter-widgets/jupyterlab-manager:plugin"


@pytest.fixture
def lab_saving_widgets(page: Any, lab_server: LabServer) -> Iterator[Lab]:
    """Like `lab`, with the widget manager's saveState setting on for this test: widget state is
    written into a notebook's metadata on save. Set through Lab's settings API before the page
    loads (the page reads it then) and reset after, so the shared server needs no twin."""
    setting = f"/lab/api/settings/{SAVE_WIDGET_STATE_PLUGIN}"
    lab_server.api("PUT", setting, {"raw": json.dumps({"saveState": True})})
    try:
        yield Lab(page, lab_server)
    finally:
        lab_server.api("PUT", setting, {"raw": "{}"})
