"""What the in-browser benchmarks share: running one of them under the browser-test harness
(tests/browser/conftest.py: JupyterLab + headless Chromium + the `lab` fixture), and percentiles."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def percentiles(values: list[float]) -> str:
    values = sorted(values)
    q = statistics.quantiles(values, n=100, method="inclusive")
    return f"p50 {q[49]:6.2f} ms   p95 {q[94]:6.2f} ms   max {values[-1]:6.2f} ms   (n={len(values)})"


def run(benchmark_file: str, options: object) -> None:
    """Run the benchmark's test function under the harness; ``options`` is a pytest plugin object
    whose ``pytest_configure`` puts the command-line settings on the config."""
    import pytest

    sys.path.insert(0, str(REPO / "tests" / "browser"))
    argv = [benchmark_file, "-q", "-s", "-p", "no:cacheprovider", "-p", "conftest",
            "--rootdir", str(REPO / "benchmarks"), "-W", "ignore::DeprecationWarning"]  # fmt: skip
    sys.exit(pytest.main(argv, plugins=[options]))
