"""A broker that accepts connections and never speaks (a hung node, a wrong port behind a
proxy): status still answers, says why, and its listener lives on. No broker needed."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from rabbitq.amqp.status_collector import StatusCollector
from rabbitq.status.snapshot import Snapshot


@pytest.fixture
def silent_port() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_silent_broker_is_a_problem_in_the_picture_not_an_exception(silent_port: int) -> None:
    url = f"amqp://guest:guest@127.0.0.1:{silent_port}/"
    with StatusCollector(url, "http://guest:guest@127.0.0.1:9/") as collector:
        snapshot: Snapshot = collector.collect()
        assert any(p.startswith("beat status not read") for p in snapshot.problems)
        assert any("management API" in p for p in snapshot.problems)
        assert collector._watcher._thread.is_alive()  # it will listen again


def test_rabbitq_status_against_a_silent_broker_exits_0_saying_why(silent_port: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rabbitq", "status",
         "--broker", f"amqp://guest:guest@127.0.0.1:{silent_port}/",
         "--management-url", "http://guest:guest@127.0.0.1:9/"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "! beat status not read" in done.stdout and "Traceback" not in done.stderr
