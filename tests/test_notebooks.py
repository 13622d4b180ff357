"""Every notebook in notebooks/ executes top to bottom without error (and reports how long it took)."""

from __future__ import annotations

import pathlib
import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((pathlib.Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    try:
        client.execute()
    except CellExecutionError as error:
        # nbclient's message starts with the cell's source; name the error first (a log's summary
        # line shows only the first line), the full traceback follows as the cause.
        evalue = (error.evalue or "").strip().splitlines()
        raise AssertionError(f"{path.name}: a cell raised {error.ename}: {evalue[0] if evalue else ''}") from error
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")


def test_notebooks_are_stored_without_outputs():
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has stored outputs"
