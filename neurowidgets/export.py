"""A notebook as one HTML file that shows its widgets' last state with no kernel and no network.

``jupyter nbconvert --to html`` writes the notebook's saved widget state into the page but loads the
code that draws it from CDNs (RequireJS, @jupyter-widgets/html-manager, then each widget library,
anywidget's included): opened offline, or where those hosts are blocked, no widget appears.
This exporter writes the same page (JupyterLab's HTML template) carrying all of that code itself:

- the widget manager (@jupyter-widgets/html-manager, with the ipywidgets controls and their styles),
  bundled from npm into ``neurowidgets/static/export/`` by ``npm run build`` (js/export/embed.ts);
- anywidget's front-end, read from the installed Python ``anywidget`` package (the AMD module it
  ships for the classic notebook) and registered with that manager's loader;
- each anywidget's own ESM and CSS, and BokehJS for the bokeh views, which are in the saved widget
  state already (``_esm``; the state of the one hidden widget that carries BokehJS).

Use it as ``jupyter nbconvert --to neurowidgets notebook.ipynb`` (an nbconvert exporter registered by
this package) or from Python::

    nw.export_html("analysis.ipynb", "analysis.html")               # a notebook saved with widget state
    nw.export_html("analysis.ipynb", "analysis.html", execute=True)  # run it first, keep its widget state

A notebook carries widget state only if it was saved with it: JupyterLab's "Save Widget State
Automatically" setting (Settings > Widget Manager), or run by ``execute=True`` (or nbconvert's
``--execute``). Without it, nbconvert shows each widget's plain-text form, and so does this page.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import pathlib
import re
import sys
import warnings
from collections.abc import Iterator
from typing import Any

try:
    import nbformat
    from markupsafe import Markup
    from nbconvert.exporters import HTMLExporter
    from nbconvert.preprocessors import ExecutePreprocessor
    from traitlets import default
except ImportError as error:  # pragma: no cover - nbconvert comes with Jupyter; not with the bare package
    raise ImportError(f"exporting a notebook needs nbconvert ({error}): pip install 'neurowidgets[export]'") from error

from .core.storage import atomic_file

__all__ = ["NeuroWidgetsExporter", "embed_scripts", "export_html", "run_notebook"]

PACKAGE = pathlib.Path(__file__).resolve().parent
TEMPLATES = PACKAGE / "templates"
EMBED = PACKAGE / "static" / "export"
STATE_MIMETYPE = "application/vnd.jupyter.widget-state+json"
VIEW_MIMETYPE = "application/vnd.jupyter.widget-view+json"


def _inline(text: str) -> str:
    """Text that stays one script inside <script>…</script>: no end tag, no comment opener (in JS
    strings, regular expressions and comments alike, ``<\\/`` and ``<\\!`` mean ``</`` and ``<!``)."""
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE).replace("<!--", "<\\!--")


def _read(path: Any, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise FileNotFoundError(f"{what} is missing: {path}") from error


def anywidget_frontend() -> str:
    """anywidget's front-end as the installed Python package ships it (an AMD module, the same version
    as the kernel's anywidget)."""
    return _read(
        importlib.resources.files("anywidget") / "nbextension" / "index.js",
        "anywidget's front-end module (anywidget/nbextension/index.js of the installed anywidget)",
    )


def embed_scripts() -> Markup:
    """The styles and scripts an exported page needs to draw its widgets offline (see the module's
    docstring), as HTML for the page's head."""
    hint = "build it with `npm run build` (the README's setup command does), or install neurowidgets from a wheel"
    manager = _read(EMBED / "embed.js", f"the exported page's widget renderer ({hint})")
    styles = _read(EMBED / "widgets.css", f"the exported page's widget styles ({hint})")
    anywidget = anywidget_frontend()
    styles = styles.replace("</", "<\\/")  # CSS escape: stays inside <style>
    return Markup(  # our own bundles, made inert inside <script> by _inline
        f'<style type="text/css">\n{styles}\n</style>\n'
        f"<script>\n{_inline(manager)}\n</script>\n"
        # anywidget's module calls define(deps, factory): hand it to the renderer's loader.
        "<script>\n(function (define) {\n"
        f"{_inline(anywidget)}\n"
        '})(function (deps, factory) { neurowidgetsExport.define("anywidget", deps, factory); });\n'
        "</script>"
    )


def _has_widget_views(nb: Any) -> bool:
    return any(
        VIEW_MIMETYPE in output.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )


class NeuroWidgetsExporter(HTMLExporter):
    """nbconvert's HTML (JupyterLab template) with every widget drawn offline from its saved state:
    ``jupyter nbconvert --to neurowidgets notebook.ipynb``."""

    export_from_notebook = "HTML with offline widgets (neurowidgets)"

    @default("default_preprocessors")
    def _default_preprocessors_default(self) -> list[Any]:
        # --execute keeps every widget's last state
        execute = "nbconvert.preprocessors.ExecutePreprocessor"
        inherited = HTMLExporter.class_traits()["default_preprocessors"].default()
        return [ExecuteKeepingWidgetState if p == execute else p for p in inherited]

    @default("template_name")
    def _template_name_default(self) -> str:
        return "neurowidgets"

    @default("extra_template_basedirs")
    def _default_extra_template_basedirs(self) -> list[str]:
        return [str(TEMPLATES), os.getcwd()]

    def from_notebook_node(self, nb: Any, resources: dict | None = None, **kw: Any) -> tuple[str, dict]:
        views, state = _has_widget_views(nb), STATE_MIMETYPE in nb.metadata.get("widgets", {})
        resources = dict(resources or {})
        # The renderer (1.4 MB) only in a page with widget state: without it nbconvert shows each
        # widget's plain-text form.
        resources["neurowidgets_embed"] = embed_scripts() if state else ""
        if views and not state:
            warnings.warn(
                "the notebook shows widgets but was saved without their state: the page shows their "
                "plain-text form (save it from JupyterLab with Settings > Widget Manager > Save Widget "
                "State Automatically, or export with nw.export_html(..., execute=True))",
                stacklevel=2,
            )
        return super().from_notebook_node(nb, resources, **kw)


# Run after the notebook's last cell (then removed with its outputs): every widget sends its whole state
# once more, so that the state a notebook runner keeps is each widget's last. A runner records only
# state messages, while some widgets keep part of their state up to date in the page with custom
# messages (BokehHost sends only what changed in its figure as a "patch"); a page saving the
# notebook (JupyterLab) has merged those into its own copy already.
FLUSH_WIDGET_STATE = """\
def _neurowidgets_flush():
    import sys
    if "ipywidgets" not in sys.modules:
        return
    from ipywidgets import Widget
    try:
        from ipywidgets.widgets.widget import _instances
    except ImportError:  # ipywidgets 7
        _instances = Widget.widgets
    for widget in list(_instances.values()):
        try:
            if widget.comm is not None:
                widget.send_state()
        except Exception:
            pass
_neurowidgets_flush()
del _neurowidgets_flush"""


@contextlib.contextmanager
def _flushing_widget_state(nb: Any) -> Iterator[None]:
    """Run ``FLUSH_WIDGET_STATE`` after the notebook's cells (a Python kernel's only)."""
    language = nb.metadata.get("kernelspec", {}).get("language") or nb.metadata.get("language_info", {}).get("name")
    if language not in (None, "python"):
        yield
        return
    nb.cells.append(nbformat.v4.new_code_cell(FLUSH_WIDGET_STATE))
    try:
        yield
    finally:
        nb.cells.pop()


class ExecuteKeepingWidgetState(ExecutePreprocessor):
    """nbconvert's ``--execute``, keeping every widget's last state (see ``FLUSH_WIDGET_STATE``)."""

    def preprocess(self, nb: Any, resources: Any = None, km: Any = None) -> tuple[Any, Any]:
        with _flushing_widget_state(nb):
            return super().preprocess(nb, resources, km)


def run_notebook(nb: Any, cwd: str | os.PathLike, *, timeout: int = 600, kernel_name: str = "python3") -> Any:
    """Run ``nb`` top to bottom in a fresh kernel (working directory ``cwd``), keeping the widgets'
    last state in its metadata, as a notebook saved from JupyterLab with widget state would."""
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name=kernel_name,
        store_widget_state=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    with _flushing_widget_state(nb):
        client.execute()
    return nb


def export_html(
    notebook: str | os.PathLike | Any,
    out: str | os.PathLike | None = None,
    *,
    execute: bool = False,
    timeout: int = 600,
    kernel_name: str = "python3",
) -> pathlib.Path:
    """Write ``notebook`` (a path, or an ``nbformat`` notebook) as one HTML file that shows every widget's
    last saved state, bokeh views included, with no kernel and no network.

    ``out`` defaults to the notebook's path with ``.html``. With ``execute=True`` the notebook is first
    run in a fresh kernel (in its own folder) and the widgets' state at the end of the run is shown;
    otherwise the state saved in the notebook is. Returns the path written.
    """
    if isinstance(notebook, (str, os.PathLike)):
        source = pathlib.Path(notebook)
        nb = nbformat.read(source, as_version=4)
        cwd, name = source.resolve().parent, source.stem
    else:
        source, nb, cwd, name = None, notebook, pathlib.Path.cwd(), "notebook"
    if out is None:
        if source is None:
            raise TypeError("export_html: pass `out` when the notebook is not a file")
        out = source.with_suffix(".html")
    out = pathlib.Path(out)
    if execute:
        run_notebook(nb, cwd, timeout=timeout, kernel_name=kernel_name)
    body, _ = NeuroWidgetsExporter().from_notebook_node(nb, resources={"metadata": {"name": name}})
    with atomic_file(out) as file:  # a reader (a browser, a file server) never sees half a page
        file.write(body.encode("utf-8"))
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m neurowidgets.export NOTEBOOK [OUT] [--execute]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m neurowidgets.export", description=export_html.__doc__)
    parser.add_argument("notebook")
    parser.add_argument("out", nargs="?")
    parser.add_argument("--execute", action="store_true", help="run the notebook first (in a fresh kernel)")
    args = parser.parse_args(argv)
    path = export_html(args.notebook, args.out, execute=args.execute)
    print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
