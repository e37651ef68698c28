"""``rabbitq exporter`` against a real broker with known contents, scraped over HTTP (queue
figures come from the management API, whose statistics lag by a few seconds: the spec waits
for the figures it expects)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import rabbitq
from integration.apps import core_app
from integration.metrics_support import Scrape, free_port
from integration.support import LoggedProcess, running_worker, wait_for

# Prometheus' exporter, not the broker's version: once, in the first pass.
pytestmark = [pytest.mark.timeout(180), pytest.mark.first_pass_only]


def test_the_exporter_serves_the_brokers_known_contents_as_gauges(
    app: rabbitq.App, broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    idle = f"{unique_name}-idle"
    port = free_port()
    exporter = LoggedProcess(
        [sys.executable, "-m", "rabbitq", "exporter", "--broker", broker_url,
         "--management-url", management_url, "--port", str(port), "--bind", "127.0.0.1"],
        tmp_path / "exporter.log",
        {},
    )  # fmt: skip
    try:
        with running_worker(broker_url, unique_name, tmp_path) as worker:
            for n in range(3):
                core_app.fail.apply_async((f"bad{n}",), queue=unique_name)
            for n in range(4):
                core_app.record.apply_async((f"idle{n}",), queue=idle)  # nobody consumes it
            for n in range(2):
                core_app.record.apply_async((f"later{n}",), queue=idle, countdown=3600)
            seen: list[Scrape] = []

            def complete() -> bool:
                try:
                    seen.append(Scrape(port))
                except OSError:  # not listening yet
                    return False
                s = seen[-1]
                return (
                    s.total("rabbitq_dead_letter_messages", queue=f"{unique_name}.dead") == 3
                    and s.total("rabbitq_queue_messages", queue=idle) == 4
                    and s.total("rabbitq_queue_consumers", queue=unique_name) == 1
                    and s.total("rabbitq_workers_online") >= 1
                    # Other specs on this broker may have delayed messages too: at least ours.
                    and s.total("rabbitq_delay_level_messages") >= 2
                )

            wait_for(complete, 60, lambda: (seen[-1].text if seen else exporter.log())[-4000:])
            scrape = seen[-1]
            assert scrape.total("rabbitq_status_up") == 1
            dead = {"queue": f"{unique_name}.dead", "source": unique_name}
            assert scrape.total("rabbitq_dead_letter_messages", **dead) == 3
            idle_queue = {"queue": idle, "role": "task"}
            assert scrape.total("rabbitq_queue_messages_ready", **idle_queue) == 4
            online = [
                sample
                for sample in scrape.samples
                if sample.name == "rabbitq_worker_online" and sample.value == 1
            ]
            assert online and all(sample.labels["software"] for sample in online)
            assert worker.process.poll() is None
    finally:
        assert exporter.stop() == 0, exporter.log()
