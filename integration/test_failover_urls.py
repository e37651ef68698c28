"""A broker URL naming several nodes, the first of them down: every client (the publisher,
the asyncio publisher, a worker process, a beat, ``rabbitq status``) goes on to the next.
(Moving off a node that dies under a running client: ``test_cluster_node_loss.py``.)"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import rabbitq
from integration.beat_support import BeatProcess, TickRecorder, every_second_schedule
from integration.support import ran_labels, running_worker, wait_for
from rabbitq.testing import Worker, free_port

TIMEOUT = 30.0


def dead_first(broker_url: str) -> str:
    """``broker_url`` after a node that refuses every connection."""
    return f"amqp://guest:guest@127.0.0.1:{free_port()}/;{broker_url}"


def test_a_publisher_and_a_worker_skip_a_dead_first_node(broker_url: str, unique_name: str) -> None:
    app = rabbitq.App("failover", broker=dead_first(broker_url), default_queue=unique_name)
    ran: list[str] = []

    @app.task
    def remember(label: str) -> None:
        ran.append(label)

    async def publish() -> None:
        await remember.adelay("async")
        await app.aclose()

    try:
        with Worker(app, [unique_name]) as worker:
            remember.delay("sync")
            asyncio.run(publish())
            worker.join()
        assert sorted(ran) == ["async", "sync"]
    finally:
        app.close()


def test_a_worker_process_and_a_beat_skip_a_dead_first_node(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    url = dead_first(broker_url)
    app = rabbitq.App(broker=url)
    try:
        with running_worker(url, unique_name, tmp_path) as worker:
            app.send_task("it.record", ("via the second node",), queue=unique_name)
            wait_for(
                lambda: ran_labels(tmp_path / "ran.txt") == ["via the second node"],
                TIMEOUT,
                worker.log,
            )
        beat_queue = f"{unique_name}.beat"
        app.ensure_queue(beat_queue)
        recorder = TickRecorder(broker_url, beat_queue)
        schedule = every_second_schedule(tmp_path / "schedule.yaml", beat_queue)
        beat = BeatProcess(url, schedule, unique_name, tmp_path / "beat.log")
        try:
            wait_for(lambda: len(recorder.ticks) >= 2, TIMEOUT, beat.log)
        finally:
            beat.stop()
            recorder.stop()
    finally:
        app.close()


def test_status_reads_a_broker_through_a_failover_url(broker_url: str, management_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rabbitq", "status", "--broker", dead_first(broker_url),
         "--management-url", management_url, "--json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
