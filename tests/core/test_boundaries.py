"""The core knows nothing about widgets: none of its modules imports a widget module, the figures,
anywidget, ipywidgets or bokeh; the report draws with the figures module, not with widget modules."""

from __future__ import annotations

import json
import subprocess
import sys

WIDGETS = ("neurowidgets.widgets", "anywidget", "ipywidgets")
DRAWING = ("neurowidgets.figures", "neurowidgets.reporting", "bokeh")

SCRIPT = """
import importlib, json, pkgutil, sys
import neurowidgets.core as core
for module in pkgutil.iter_modules(core.__path__):
    importlib.import_module(f"neurowidgets.core.{module.name}")
with_core = list(sys.modules)
import neurowidgets.reporting
print(json.dumps([with_core, list(sys.modules)]))
"""


def test_the_core_imports_no_widget_nor_drawing_and_the_report_no_widget():
    output = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout
    with_core, with_report = json.loads(output)
    assert "neurowidgets.core.effects" in with_core and "neurowidgets.core.correlation" in with_core
    assert [m for m in with_core if m.startswith(WIDGETS + DRAWING)] == []
    assert "neurowidgets.figures" in with_report
    assert [m for m in with_report if m.startswith(WIDGETS)] == []
