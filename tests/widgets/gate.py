"""A layer that holds the background's forward passes until the test lets them go: what a slow sample
looks like, made deterministic (no sleeps). The foreground (the test's own thread) passes freely."""

from __future__ import annotations

import threading

import torch

WAIT_S = 30  # a test that forgets to open the gate fails instead of hanging


class _Control:
    """The gate's events: one object for the model and its twin in the background (never copied)."""

    def __init__(self):
        self.opened = threading.Event()
        self.reached = threading.Event()

    def __deepcopy__(self, memo: dict) -> _Control:
        return self


class Gate(torch.nn.Module):
    """Identity in the main thread; in any other thread it waits until :meth:`open`."""

    def __init__(self):
        super().__init__()
        self.control = _Control()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if threading.current_thread() is not threading.main_thread():
            self.control.reached.set()
            if not self.control.opened.wait(WAIT_S):
                raise TimeoutError("the test never opened the gate")
        return x

    def reached(self) -> None:
        """Block until a background forward pass waits at the gate."""
        assert self.control.reached.wait(WAIT_S), "no background forward pass reached the gate"

    def open(self) -> None:
        self.control.opened.set()

    def close(self) -> None:
        """Hold the background's forward passes again (call it while none is running)."""
        self.control.reached.clear()
        self.control.opened.clear()
