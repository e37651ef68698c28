"""Typed tasks: mypy (strict) accepts the right calls in ``typed_tasks_cases.py`` and rejects
exactly the lines marked ``# E: <code>``, with those error codes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).with_name("typed_tasks_cases.py")
MARK = re.compile(r"#\s*E:\s*(?P<codes>[\w-]+(?:\s*,\s*[\w-]+)*)\s*$")
ERROR = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def expected_errors() -> set[tuple[int, str]]:
    expected = set()
    for number, line in enumerate(CASES.read_text().splitlines(), start=1):
        if match := MARK.search(line):
            expected |= {(number, code.strip()) for code in match["codes"].split(",")}
    return expected


def mypy_errors(cache_dir: Path) -> tuple[set[tuple[int, str]], str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "setup.cfg"),
            "--cache-dir",
            str(cache_dir),
            "--no-error-summary",
            "--hide-error-context",
            "--no-pretty",
            "--show-error-codes",
            str(CASES.relative_to(ROOT)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = set()
    for line in out.stdout.splitlines():
        # Only the cases file: the package itself is checked by the project's own mypy run.
        if (match := ERROR.match(line)) and Path(match["path"]).name == CASES.name:
            found.add((int(match["line"]), match["code"]))
    return found, out.stdout + out.stderr


def test_mypy_rejects_exactly_the_marked_calls_of_typed_tasks(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    found, output = mypy_errors(tmp_path_factory.mktemp("mypy-cache"))
    expected = expected_errors()
    assert expected, "no '# E:' marks found in the cases file"
    assert found == expected, (
        f"unexpected: {sorted(found - expected)}\nmissing: {sorted(expected - found)}\n{output}"
    )
