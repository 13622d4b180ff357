"""Servers that a browser test starts for itself (marimo, Voila) on a port of their own."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

START_TIMEOUT = 60
ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except urllib.error.HTTPError:
        return True  # an error page is an answer
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def _start(args: Callable[[int], list[str]], probe: str, log: Path, popen: dict) -> tuple[subprocess.Popen, str]:
    deadline = time.monotonic() + START_TIMEOUT
    for _attempt in range(ATTEMPTS):
        port = free_port()
        with open(log, "wb") as out:
            process = subprocess.Popen(args(port), stdout=out, stderr=subprocess.STDOUT, **popen)
        url = f"http://127.0.0.1:{port}/"
        while process.poll() is None:
            if _answers(url + probe):
                return process, url
            if time.monotonic() > deadline:
                _stop(process)
                raise RuntimeError(f"{args(port)[:3]} did not answer in {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        # It exited before answering: the port was taken meanwhile, or it cannot start (see the log).
    raise RuntimeError(f"{args(port)[:3]} exited {ATTEMPTS} times before answering:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve(args: Callable[[int], list[str]], probe: str, log: Path, **popen: object) -> Iterator[str]:
    """Run the server ``args(port)`` on a free port until it answers ``probe`` (a path); yield its URL.

    Another process may take the port between our probe and the server's bind, so a server that exits
    before answering is started again on another port (it must not move to another port by itself:
    Voila needs port_retries=0)."""
    process, url = _start(args, probe, log, popen)
    try:
        yield url
    finally:
        _stop(process)
