"""The dashboard is an extra: nothing else imports its web stack, and without it the command
says which extra to install."""

from __future__ import annotations

import subprocess
import sys

WEB_STACK = ("starlette", "uvicorn", "jinja2", "multipart")


def _loaded_by(module: str) -> list[str]:
    code = (
        f"import sys, {module}\n"
        f"print(','.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({WEB_STACK!r}))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


def test_neither_rabbitq_nor_its_cli_imports_the_web_stack() -> None:
    assert _loaded_by("rabbitq") == []
    assert _loaded_by("rabbitq.cli.main") == []


def test_without_the_extra_the_command_names_rabbitq_dashboard_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None  # as if the extra were not installed\n"
        "from rabbitq.cli.main import cli\n"
        "cli(['dashboard', '--port', '0'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert "rabbitq[dashboard]" in result.stderr and "starlette" in result.stderr
