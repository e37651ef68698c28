"""Running the ``rabbitq`` command as a user does: a subprocess, with or without a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from integration.support import REPO_ROOT
from rabbitq.amqp.connection_parameters import open_blocking


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``rabbitq ARGS`` with stdin not a terminal (as in a script or CI); ``env`` is added to
    the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "rabbitq", *args],
        cwd=REPO_ROOT,
        text=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def run_cli_in_terminal(*args: str, answer: str) -> tuple[int, str]:
    """``rabbitq ARGS`` on a pseudo-terminal, typing ``answer`` and Enter; (exit code, what
    the terminal showed)."""
    import pty  # POSIX only, as the worker's signal handling is

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "rabbitq", *args],
        cwd=REPO_ROOT,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    os.write(controller, answer.encode() + b"\n")  # the terminal holds it until it is read
    shown = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the command has exited and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    return process.wait(30), shown.decode(errors="replace")


def fill_queue(broker_url: str, queue: str, count: int) -> None:
    """Declare ``queue`` (durable) and put ``count`` plain messages in it, confirmed."""
    connection = open_blocking(broker_url)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=True)
        for number in range(count):
            channel.basic_publish("", queue, f"message {number}".encode(), mandatory=True)
    finally:
        connection.close()


def app_module(directory: Path, name: str, source: str) -> dict[str, str]:
    """Write ``name.py`` holding ``source`` in ``directory``; the environment that lets ``-A
    name`` import it."""
    (directory / f"{name}.py").write_text(source)
    return {"PYTHONPATH": os.pathsep.join([str(directory), str(REPO_ROOT)])}
