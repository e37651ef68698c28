"""Helpers for integration tests: real worker processes, and reading what they did."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pika
import pika.exceptions

from rabbitq.amqp.connection_parameters import open_blocking
from rabbitq.testing import die_with_parent

REPO_ROOT = Path(__file__).resolve().parent.parent


class LoggedProcess:
    """A command run from the repository root in a subprocess, its output in a log file; it
    dies with the test run (no orphans if pytest is killed)."""

    def __init__(self, command: list[str], log_file: Path, env: dict[str, str]) -> None:
        self.log_file = log_file
        self._log = open(log_file, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode


class WorkerProcess(LoggedProcess):
    """``rabbitq worker`` in a subprocess, logging to a file."""

    def __init__(
        self,
        broker_url: str,
        queues: str,
        record_file: Path,
        log_file: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        app: str = "integration.apps.core_app",
    ) -> None:
        self.broker_url = broker_url
        self.first_queue = queues.split(",")[0]
        command = [
            sys.executable, "-m", "rabbitq", "worker", "-A", app, "-Q", queues,
            "--loglevel", "INFO", *extra_args,
        ]  # fmt: skip
        environment = {
            "RABBITQ_BROKER_URL": broker_url,
            "RABBITQ_TEST_RECORD": str(record_file),
            **(env or {}),
        }
        super().__init__(command, log_file, environment)

    def wait_until_consuming(self, timeout: float = 30.0, count: int = 1) -> None:
        """Until the broker reports ``count`` consumers on the worker's first queue."""
        wait_for(
            lambda: consumer_count(self.broker_url, self.first_queue) >= count,
            timeout,
            lambda: f"worker did not start consuming; log:\n{self.log()[-3000:]}",
        )


@contextmanager
def running_worker(
    broker_url: str,
    queues: str,
    tmp_path: Path,
    *extra_args: str,
    env: dict[str, str] | None = None,
    app: str = "integration.apps.core_app",
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        broker_url,
        queues,
        tmp_path / "ran.txt",
        tmp_path / "worker.log",
        *extra_args,
        env=env,
        app=app,
    )
    try:
        worker.wait_until_consuming()
        yield worker
    finally:
        worker.stop()


def wait_for(
    condition: Callable[[], bool],
    timeout: float,
    describe: Callable[[], str] = lambda: "condition not met",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s: {describe()}")


def ran_ids(record_file: Path) -> collections.Counter[str]:
    """How many times each task id ran, from the record file."""
    if not record_file.exists():
        return collections.Counter()
    return collections.Counter(
        line.split(" ", 1)[0] for line in record_file.read_text().splitlines() if line
    )


def ran_labels(record_file: Path) -> list[str]:
    if not record_file.exists():
        return []
    return [line.split(" ", 1)[1] for line in record_file.read_text().splitlines() if line]


def drain_queue(broker_url: str, queue: str) -> list[tuple[Any, bytes]]:
    """Take every message out of ``queue``: a list of (properties, body)."""
    connection = open_blocking(broker_url)
    try:
        channel = connection.channel()
        messages: list[tuple[Any, bytes]] = []
        while True:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                return messages
            messages.append((properties, body))
    finally:
        connection.close()


def consumer_count(broker_url: str, queue: str) -> int:
    connection = open_blocking(broker_url)
    try:
        result = connection.channel().queue_declare(queue, passive=True)
        return int(result.method.consumer_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0  # not declared yet
    finally:
        if connection.is_open:
            connection.close()


def queue_depth(broker_url: str, queue: str) -> int:
    connection = open_blocking(broker_url)
    try:
        result = connection.channel().queue_declare(queue, passive=True)
        return int(result.method.message_count)
    finally:
        connection.close()
