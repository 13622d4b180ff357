"""A wheel built from the repository stands alone: it carries the JS bundle and the example data, and the
quickstart notebook runs in a fresh venv that has the wheel, its declared dependencies (no extras) and a
notebook kernel, and no node."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import venv
import zipfile

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = pathlib.Path(__file__).resolve().parent.parent
# What a notebook host puts beside the package: a kernel. Nothing a user would not have.
KERNEL = ("ipykernel",)


def build_wheel(tmp_path: pathlib.Path) -> pathlib.Path:
    source = tmp_path / "src"
    # Build from a copy of what git tracks, so that nothing built or ignored here leaks in.
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "node_modules", source / "node_modules", symlinks=True)
    assert not (source / "neurowidgets" / "static").exists()
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    return next(dist.glob("neurowidgets-*.whl"))


def requirement_closure(requirements: list[str]) -> set[str]:
    """The installed distributions that ``requirements`` need, transitively, extras only where a
    requirement names them (markers evaluated for this Python)."""
    found: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        found.add(key[0])
        for text in metadata.distribution(requirement.name).requires or []:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                todo.append(dependency)
    return found


def link_distributions(names: set[str], target: pathlib.Path) -> None:
    """Symlink the installed files of the distributions ``names`` (their top-level packages, modules and
    metadata) into ``target``, a directory the fresh venv adds to its path: it sees these and no others."""
    target.mkdir()
    for name in names:
        distribution = metadata.distribution(name)
        site_dir = pathlib.Path(distribution.locate_file(""))
        for top in {pathlib.PurePath(f).parts[0] for f in distribution.files or []} - {".."}:
            if (site_dir / top).exists() and not (target / top).exists() and not top.endswith(".pth"):
                (target / top).symlink_to(site_dir / top)


@pytest.mark.slow
def test_wheel_alone_runs_the_quickstart_in_a_fresh_venv(tmp_path, monkeypatch):
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert "neurowidgets/static/neuron_grid.js" in names and "neurowidgets/static/styles.css" in names
    assert "neurowidgets/data/digits.npz" in names

    with zipfile.ZipFile(wheel) as archive:
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        wheel_metadata = archive.read(info).decode()
    declared = [
        line.split(":", 1)[1].strip() for line in wheel_metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    runtime = [r for r in declared if "extra ==" not in r]  # no extras
    closure = requirement_closure(runtime + list(KERNEL))
    assert "scikit-learn" not in closure and "neurowidgets" not in closure

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    fresh_site = next((env / "lib").glob("python*/site-packages"))
    link_distributions(closure, tmp_path / "deps")
    (fresh_site / "deps.pth").write_text(f"{tmp_path / 'deps'}\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True
    )
    # The kernel's PATH has the fresh venv only: no node, no checkout.
    clean = {"PATH": str(env / "bin"), "HOME": str(tmp_path), "NEUROWIDGETS_CACHE": str(tmp_path / "cache")}
    check = (
        "import importlib.util, neurowidgets as nw, neurowidgets.widgets.base as base;"
        "print(nw.__file__, base.bundle('neuron_grid').stat().st_size, importlib.util.find_spec('sklearn'))"
    )
    out = subprocess.run([python, "-c", check], capture_output=True, text=True, cwd=tmp_path, env=clean)
    assert out.returncode == 0, out.stderr
    location, size, sklearn = out.stdout.split()
    assert location.startswith(str(env)), "imported from the fresh venv, not the checkout"
    assert int(size) > 1000 and sklearn == "None"

    # The quickstart, top to bottom, in a kernel of the fresh venv.
    spec = tmp_path / "share" / "jupyter" / "kernels" / "fresh"
    spec.mkdir(parents=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "fresh", "language": "python", "env": clean})
    )
    monkeypatch.setenv(
        "JUPYTER_PATH", str(tmp_path / "share" / "jupyter") + os.pathsep + os.environ.get("JUPYTER_PATH", "")
    )
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    work = tmp_path / "work"
    work.mkdir()
    client = NotebookClient(notebook, timeout=600, kernel_name="fresh", resources={"metadata": {"path": work}})
    try:
        client.execute()
    except CellExecutionError as error:
        evalue = (error.evalue or "").strip().splitlines()
        raise AssertionError(f"quickstart in the fresh venv: a cell raised {error.ename}: {evalue[:1]}") from error


def test_the_environment_has_anywidgets_front_end_for_vs_code():
    """VS Code's Jupyter extension loads a widget's front-end from the kernel environment's
    share/jupyter/nbextensions, else from a CDN: installing the wheel's dependency anywidget puts it
    there (the README's "Where it works" names these files)."""
    files = {str(f) for f in metadata.files("anywidget") or []}
    for name in ("extension.js", "index.js"):
        installed = f"../../../share/jupyter/nbextensions/anywidget/{name}"
        assert installed in files, sorted(f for f in files if "share" in f)
        assert (pathlib.Path(sys.prefix) / "share" / "jupyter" / "nbextensions" / "anywidget" / name).is_file()
