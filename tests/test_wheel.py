"""A wheel built from the repository carries the JS bundle and installs and imports in a fresh venv."""

from __future__ import annotations

import pathlib
import shutil
import site
import subprocess
import sys
import venv
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_carries_the_frontend_and_imports_in_a_fresh_venv(tmp_path):
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
    wheel = next(dist.glob("neurowidgets-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "neurowidgets/static/neuron_grid.js" in names and "neurowidgets/static/styles.css" in names

    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    # The dependencies (torch and friends) come from this environment; the package from the wheel.
    fresh_site = next((env / "lib").glob("python*/site-packages"))
    (fresh_site / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True
    )
    check = (
        "import neurowidgets, neurowidgets.widgets.base as base;"
        "print(neurowidgets.__file__, base.bundle('neuron_grid').stat().st_size)"
    )
    out = subprocess.run([python, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    location, size = out.stdout.split()
    assert location.startswith(str(env)), "imported from the fresh venv, not the checkout"
    assert int(size) > 1000
