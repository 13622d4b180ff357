"""Summarise a pytest junit XML report: the time of each test tier, then each failed test's name,
the first line of its error and its artifacts.

scripts/test prints this after pytest's full output, so the last lines of a CI log say how the time
budget was spent and which tests failed and why, whatever the length of their tracebacks (on CI,
pytest's own short summary repeats each error message in full, which can push the names far up).

    python scripts/pytest_summary.py report.xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

MAX_MESSAGE = 300  # characters of the first error line
# The tiers of the README's test section, by where their tests live (first match wins).
TIERS = [
    ("core", "tests/core/"),
    ("widgets", "tests/widgets/"),
    ("browser", "tests/browser/"),
    ("notebooks", "tests/test_notebooks.py"),
    ("wheel", "tests/test_wheel.py"),
    ("other", "tests/"),
]


def node_id(case: ET.Element) -> str:
    """The pytest node id of a <testcase> (junit_family xunit1: it carries the test's file)."""
    file, classname, name = case.get("file", ""), case.get("classname", ""), case.get("name", "")
    if not file:
        return f"{classname}::{name}"
    module = file.removesuffix(".py").replace("/", ".")
    classes = classname.removeprefix(module).strip(".")
    return "::".join(filter(None, [file, *classes.split("."), name]))


def first_line(message: str) -> str:
    line = next((text.strip() for text in message.splitlines() if text.strip()), "(no message)")
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def tier_times(cases: list[ET.Element]) -> dict[str, float]:
    """Seconds spent in each tier (setup, call and teardown of its tests), in TIERS order."""
    times = dict.fromkeys((name for name, _ in TIERS), 0.0)
    for case in cases:
        tier = next(name for name, prefix in TIERS if case.get("file", "tests/").startswith(prefix))
        times[tier] += float(case.get("time", 0))
    return {name: seconds for name, seconds in times.items() if seconds}


def failures(cases: list[ET.Element]) -> list[str]:
    """One block of lines per failed or errored test case."""
    blocks = []
    for case in cases:
        for outcome in ("failure", "error"):
            for problem in case.findall(outcome):
                word = "FAILED" if outcome == "failure" else "ERROR"
                lines = [f"{word} {node_id(case)}", f"    {first_line(problem.get('message', ''))}"]
                artifacts = [p.get("value", "") for p in case.iter("property") if p.get("name") == "artifact"]
                lines += [f"    artifact: {path}" for path in artifacts]
                blocks.append("\n".join(lines))
    return blocks


def main(argv: list[str]) -> int:
    report = Path(argv[1])
    if not report.is_file():
        print(f"no junit report at {report}: pytest stopped before writing it (see its output above)")
        return 1
    cases = list(ET.parse(report).getroot().iter("testcase"))
    print("time per tier: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in tier_times(cases).items()))
    blocks = failures(cases)
    print(f"{len(blocks)} failed test(s), first error line each (full output above):" if blocks else "no failed tests")
    for block in blocks:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
