"""What ``rabbitq worker --health-port`` answers, judged from reports (``worker/health.py``)
and served over HTTP (``worker/health_endpoint.py``); no broker."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rabbitq.errors import ConfigurationError
from rabbitq.worker.health import (
    STALE_AFTER,
    Health,
    LatestReport,
    ProcessReport,
    ReportDirectory,
    SupervisedHealth,
    judge_consumer,
    judge_processes,
    judge_report,
    keep_reporting,
)
from rabbitq.worker.health_endpoint import HealthEndpoint

NOW = 1_000_000.0


def report(
    pid: int, healthy: bool = True, reason: str = "consuming q", at: float = NOW
) -> ProcessReport:
    return ProcessReport(pid, healthy, reason, at)


# -- one consumer ---------------------------------------------------------------------------


def test_a_connected_consumer_of_every_queue_is_healthy() -> None:
    health = judge_consumer(
        stopping=False, connected=True, queues=("a", "b"), consuming=frozenset({"a", "b"})
    )
    assert health == Health(True, "consuming a, b")


def test_a_consumer_without_its_connection_is_unhealthy() -> None:
    health = judge_consumer(
        stopping=False, connected=False, queues=("a",), consuming=frozenset({"a"})
    )
    assert health == Health(False, "not connected to the broker (connecting or reconnecting)")


def test_a_queue_without_a_consumer_makes_it_unhealthy() -> None:
    health = judge_consumer(
        stopping=False, connected=True, queues=("a", "b"), consuming=frozenset({"a"})
    )
    assert health == Health(False, "not consuming b")


def test_a_stopping_consumer_is_unhealthy() -> None:
    health = judge_consumer(
        stopping=True, connected=True, queues=("a",), consuming=frozenset({"a"})
    )
    assert health == Health(False, "stopping")


# -- reports ---------------------------------------------------------------------------------


def test_a_fresh_report_is_taken_as_it_says() -> None:
    assert judge_report(report(7), 7, NOW + 1) == Health(True, "consuming q")
    assert judge_report(report(7, False, "stopping"), 7, NOW) == Health(False, "stopping")


def test_a_report_older_than_stale_after_is_a_silent_process() -> None:
    health = judge_report(report(7), 7, NOW + STALE_AFTER + 1)
    assert health == Health(False, "silent for 6s (pid 7)")


def test_a_report_of_another_pid_is_a_process_that_has_not_reported_yet() -> None:
    health = judge_report(report(7), 8, NOW)
    assert health == Health(False, "starting (pid 8, no report yet)")
    assert judge_report(None, 8, NOW) == health


def test_a_process_not_running_is_unhealthy() -> None:
    assert judge_report(report(7), None, NOW) == Health(False, "not running")


def test_a_supervisor_is_healthy_only_when_every_process_is() -> None:
    running = {1: 11, 2: 12}
    healthy = {1: report(11), 2: report(12)}
    assert judge_processes(running, healthy, NOW) == Health(True, "all 2 processes consuming")
    one_down = {**running, 2: None}
    assert judge_processes(one_down, healthy, NOW) == Health(False, "process 2: not running")


def test_a_supervisor_names_each_unhealthy_process() -> None:
    running = {1: 11, 2: 12}
    reports = {1: report(11, False, "stopping"), 2: None}
    health = judge_processes(running, reports, NOW)
    assert health.reason == "process 1: stopping; process 2: starting (pid 12, no report yet)"


def test_a_single_process_judges_its_own_latest_report() -> None:
    latest = LatestReport()
    assert latest.verdict() == Health(False, f"starting (pid {os.getpid()}, no report yet)")

    latest.put(report(os.getpid(), at=time.time()))
    assert latest.verdict() == Health(True, "consuming q")


def test_a_report_written_to_the_directory_reads_back(tmp_path: Path) -> None:
    reports = ReportDirectory(str(tmp_path))
    reports.writer(2)(report(12))
    assert reports.read(2) == report(12)
    assert reports.read(1) is None


def test_an_unreadable_report_counts_as_none(tmp_path: Path) -> None:
    (tmp_path / "1.json").write_text("{not json")
    assert ReportDirectory(str(tmp_path)).read(1) is None


def test_the_supervisor_follows_which_pid_runs_each_index() -> None:

    health = SupervisedHealth(2)
    try:
        for index, pid in ((1, 11), (2, 12)):
            health.started(index, pid)
            ReportDirectory(health.directory).writer(index)(report(pid, at=time.time()))
        assert health.verdict().healthy
        health.exited(11)
        assert health.verdict() == Health(False, "process 1: not running")
        health.started(1, 13)  # its replacement, before it reports
        assert health.verdict() == Health(False, "process 1: starting (pid 13, no report yet)")
    finally:
        health.remove()
    assert not Path(health.directory).exists()


class Consumer:
    queues = ("q",)
    stopping = False
    connected = True

    def consuming_queues(self) -> frozenset[str]:
        return frozenset({"q"})


async def test_keep_reporting_reports_at_once_and_then_every_interval() -> None:
    reports: list[ProcessReport] = []
    consumer = Consumer()
    task = asyncio.create_task(keep_reporting(consumer, reports.append, every=0.01))
    await asyncio.sleep(0)
    assert [(r.pid, r.healthy, r.reason) for r in reports] == [(os.getpid(), True, "consuming q")]
    consumer.connected = False
    await asyncio.sleep(0.05)
    task.cancel()
    assert reports[-1].reason.startswith("not connected")


# -- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[HealthEndpoint, list[Health]]]:
    answers = [Health(True, "consuming q")]
    endpoint = HealthEndpoint.serve(0, "127.0.0.1", lambda: answers[0])
    yield endpoint, answers
    endpoint.close()


def get(endpoint: HealthEndpoint, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{endpoint.port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def test_healthy_answers_200_on_health_and_root(
    served: tuple[HealthEndpoint, list[Health]],
) -> None:
    endpoint, _ = served
    assert get(endpoint, "/health") == (200, b"ok: consuming q\n")
    assert get(endpoint, "/") == (200, b"ok: consuming q\n")
    assert get(endpoint, "/health?verbose=1")[0] == 200


def test_unhealthy_answers_503_with_the_reason(
    served: tuple[HealthEndpoint, list[Health]],
) -> None:
    endpoint, answers = served
    answers[0] = Health(False, "stopping")
    assert get(endpoint, "/health") == (503, b"unhealthy: stopping\n")


def test_head_answers_the_status_without_a_body(
    served: tuple[HealthEndpoint, list[Health]],
) -> None:
    endpoint, answers = served
    answers[0] = Health(False, "stopping")
    assert get(endpoint, "/health", method="HEAD") == (503, b"")


def test_another_path_is_404(served: tuple[HealthEndpoint, list[Health]]) -> None:
    endpoint, _ = served
    assert get(endpoint, "/metrics")[0] == 404


def test_a_verdict_that_raises_answers_503() -> None:
    def broken() -> Health:
        raise RuntimeError("boom")

    endpoint = HealthEndpoint.serve(0, "127.0.0.1", broken)
    try:
        status, body = get(endpoint, "/health")
    finally:
        endpoint.close()
    assert status == 503 and body.startswith(b"unhealthy: health unknown: RuntimeError")


def test_a_port_in_use_is_a_configuration_error(
    served: tuple[HealthEndpoint, list[Health]],
) -> None:
    endpoint, _ = served
    with pytest.raises(ConfigurationError, match=r"cannot serve health on 127\.0\.0\.1"):
        HealthEndpoint.serve(endpoint.port, "127.0.0.1", lambda: Health(True, ""))
