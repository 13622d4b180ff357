"""The exported page's parts, without a browser (tests/browser/test_export_html.py opens one offline).

`jupyter nbconvert --execute --to neurowidgets` keeps every widget's last state: a BokehHost changed
after it was shown sends only the change, as a custom message, which a notebook runner does not
record; the exporter's execute step has every widget send its whole state after the last cell."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import nbformat
import pytest

from neurowidgets.export import _inline, embed_scripts

STATE = "application/vnd.jupyter.widget-state+json"

CELLS = [
    """\
import ipywidgets
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure
from neurowidgets.widgets.bokeh_host import BokehHost

source = ColumnDataSource({"x": [1.0, 2.0], "y": [3.0, 4.0]}, name="points")
plot = figure(width=300, height=200)
plot.scatter("x", "y", source=source)
host = BokehHost(plot)
slider = ipywidgets.IntSlider(value=1)
display(host, slider)""",
    """\
host.update(source, data={"x": [1.0, 2.0, 3.0], "y": [3.0, 4.0, 5.0]})  # sent as a patch message only
slider.value = 9
print(source.id)""",
]


def saved_state(page: str) -> dict:
    match = re.search(rf'<script type="{re.escape(STATE)}">\s*(.*?)\s*</script>', page, re.S)
    assert match, "no widget state in the page"
    return json.loads(match.group(1))


@pytest.mark.slow
def test_execute_keeps_every_widgets_last_state(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "changed.ipynb"
    nbformat.write(notebook, path)
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--execute", "--to", "neurowidgets", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "changed.html").read_text()

    models = saved_state(page)["state"]
    hosts = [m["state"] for m in models.values() if "patches" in m["state"]]
    assert len(hosts) == 1
    (patch,) = hosts[0]["patches"].values()
    assert patch["data"] == {"x": [1.0, 2.0, 3.0], "y": [3.0, 4.0, 5.0]}, "the change made after showing it"
    (slider,) = [m["state"] for m in models.values() if m["model_name"] == "IntSliderModel"]
    assert slider["value"] == 9
    assert page.count("_neurowidgets_flush") == 0, "the flushing cell is not in the page"
    assert "<script src=" not in page, "the page loads no script from anywhere"


def test_inlined_scripts_stay_one_script():
    text = 'a = "</script><script>alert(1)</script>"; b = /<\\/SCRIPT>/; // <!-- c'
    inlined = _inline(text)
    assert "</script" not in inlined.lower() and "<!--" not in inlined
    scripts = str(embed_scripts())
    # Two scripts, each ending where it should (a "<script>" inside one is text while no "<!--" precedes it).
    assert scripts.count("</script>") == 2 and scripts.endswith("</script>")
    assert "<!--" not in scripts
    assert 'neurowidgetsExport.define("anywidget"' in scripts
