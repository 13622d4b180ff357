"""The browser harness itself: JupyterLab + Chromium + a kernel client, on tiny notebooks."""

from __future__ import annotations

import pytest


def test_run_all_then_read_kernel_state(lab):
    lab.write_notebook("harness_ok.ipynb", ["x = 41 + 1"])
    lab.open("harness_ok.ipynb")
    lab.run_all()

    assert lab.eval("x") == "42"
    assert lab.eval("print('a'); print('b')") == "a\nb"
    assert lab.poll("x + 1", "43") == "43"
    # kernel_eval runs with store_history=False: the notebook's own prompt is still [1].
    assert lab.page.locator(".jp-InputPrompt").first.inner_text().strip() == "[1]:"
    lab.screenshot(lab.page.locator(".jp-NotebookPanel"), "harness/run_all.png")


def test_errors_surface(lab):
    lab.write_notebook("harness_error.ipynb", ["y = 1", "1 / 0", "z = 2"])
    lab.open("harness_error.ipynb")
    with pytest.raises(lab.NotebookError, match="ZeroDivisionError"):
        lab.run_all()

    # Only this test's notebook has a session: the first test's kernel was shut down.
    assert [s["path"] for s in lab.server.sessions()] == ["harness_error.ipynb"]
    assert lab.eval("y") == "1"
    with pytest.raises(lab.KernelError, match="NameError"):
        lab.eval("z")  # the cell after the error never ran
