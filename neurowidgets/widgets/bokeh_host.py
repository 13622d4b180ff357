"""BokehHost: a bokeh figure inside an anywidget, with BokehJS from the installed ``bokeh`` package.

No ``output_notebook()`` and no CDN: the front-end (js/bokeh_host.ts) injects the BokehJS bundle of
the Python ``bokeh`` package (same version) once per page, then embeds the figure's JSON item.
Selections on one named ``ColumnDataSource`` travel back to Python as ``selected_indices``.
"""

from __future__ import annotations

import functools
import pathlib
from typing import Any

import bokeh
import traitlets
from bokeh.embed import json_item
from bokeh.model import Model

from .base import NeuroWidget, bundle


@functools.cache
def bokehjs_source() -> str:
    """The text of ``bokeh.min.js`` shipped inside the installed Python ``bokeh`` package."""
    path = pathlib.Path(bokeh.__file__).resolve().parent / "server" / "static" / "js" / "bokeh.min.js"
    if not path.exists():
        raise FileNotFoundError(f"BokehJS is missing from the installed bokeh package: {path}")
    return path.read_text(encoding="utf-8")


class BokehHost(NeuroWidget):
    """Shows ``figure`` (any bokeh layout/model); ``selection_source`` names the ColumnDataSource
    (its ``name=``) whose ``selected.indices`` are synced both ways as ``selected_indices``."""

    _esm = bundle("bokeh_host")

    item = traitlets.Dict().tag(sync=True)
    bokeh_version = traitlets.Unicode(bokeh.__version__, read_only=True).tag(sync=True)
    _bokehjs = traitlets.Unicode("").tag(sync=True)
    selection_source = traitlets.Unicode("").tag(sync=True)
    selected_indices = traitlets.List(traitlets.Int()).tag(sync=True)

    def __init__(self, figure: Model | None = None, **kwargs: Any):
        super().__init__(_bokehjs=bokehjs_source(), **kwargs)
        if figure is not None:
            self.show(figure)

    def show(self, figure: Model) -> None:
        """Replace the embedded figure."""
        self.figure = figure
        self.item = json_item(figure)
