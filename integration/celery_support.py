"""A real Celery 5 worker (solo pool) in a subprocess, for the interop tests."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .support import LoggedProcess, consumer_count, wait_for


@contextmanager
def running_celery_worker(
    broker_url: str,
    queue: str,
    tmp_path: Path,
    *,
    backend: str | None = None,
    before_migration: bool = False,
    events: bool = False,
) -> Iterator[Path]:
    """``celery worker -P solo`` consuming ``queue``; yields its log file. ``events``: with
    heartbeats and task events (``-E``), as a monitored Celery worker runs."""
    command = [
        sys.executable, "-m", "celery", "-A", "integration.apps.interop_celery", "worker",
        "-P", "solo", "-Q", queue, "-n", f"interop-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "-l", "INFO",
        *(["-E"] if events else ["--without-heartbeat"]),
    ]  # fmt: skip
    worker = LoggedProcess(
        command,
        tmp_path / "celery-worker.log",
        {
            "RABBITQ_BROKER_URL": broker_url,
            "RABBITQ_TEST_RECORD": str(tmp_path / "ran.txt"),
            "INTEROP_QUEUE": queue,
            "CELERY_RESULT_BACKEND": backend or "",
            "INTEROP_BEFORE_MIGRATION": "1" if before_migration else "0",
        },
    )
    try:
        wait_for(
            lambda: consumer_count(broker_url, queue) >= 1,
            60,
            lambda: f"celery worker did not consume; log:\n{worker.log()[-3000:]}",
        )
        yield worker.log_file
    finally:
        worker.stop(20)
