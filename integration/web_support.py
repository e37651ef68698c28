"""Web servers in subprocesses (Django's runserver, uvicorn, gunicorn) for the framework specs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from integration.support import REPO_ROOT, LoggedProcess, wait_for

DJANGO_PROJECT = REPO_ROOT / "examples" / "django"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1.0)
    except httpx.TransportError:
        return False
    return True


@contextmanager
def serving(
    command: list[str], port: int, log_file: Path, env: dict[str, str]
) -> Iterator[LoggedProcess]:
    """``command`` running until it answers HTTP on ``port``; stopped (SIGTERM) after."""
    server = LoggedProcess(command, log_file, env)
    try:
        wait_for(
            lambda: server.process.poll() is None and answers(f"http://127.0.0.1:{port}/"),
            30,
            lambda: f"the server did not answer; log:\n{server.log()[-3000:]}",
        )
        yield server
    finally:
        server.stop()
