"""``rabbitq status --check``'s verdict on what was heard (``status/check.py``; no broker)."""

from __future__ import annotations

import click
import pytest

from rabbitq.cli.status import status
from rabbitq.status.check import judge_check
from rabbitq.status.snapshot import WorkerFigures


def worker(hostname: str, *queues: str, online: bool = True) -> WorkerFigures:
    return WorkerFigures(
        hostname=hostname,
        pid=1,
        concurrency=8,
        active=0,
        processed=0,
        loadavg=(),
        software="rabbitq 0.1.0",
        last_seen=0.0,
        online=online,
        queues=queues,
    )


def test_a_broker_that_could_not_be_listened_to_fails_saying_why() -> None:
    verdict = judge_check("connection refused", [worker("a@h", "emails")])
    assert not verdict.healthy
    assert verdict.line == "FAIL: broker unreachable: connection refused"


def test_one_alive_worker_is_enough_by_default_and_is_named() -> None:
    verdict = judge_check(None, [worker("a@h", "emails")])
    assert verdict.healthy
    assert verdict.line == "OK: 1 worker alive (a@h)"


def test_no_alive_worker_fails() -> None:
    verdict = judge_check(None, [])
    assert not verdict.healthy
    assert verdict.line == "FAIL: 0 workers alive, 1 needed"


def test_a_worker_gone_offline_does_not_count() -> None:
    verdict = judge_check(None, [worker("a@h", online=False)])
    assert verdict.line == "FAIL: 0 workers alive, 1 needed"


def test_min_workers_asks_for_that_many() -> None:
    workers = [worker("a@h"), worker("b@h")]
    assert judge_check(None, workers, min_workers=2).healthy
    assert judge_check(None, workers, min_workers=3).line == "FAIL: 2 workers alive, 3 needed"


def test_with_queues_named_only_workers_consuming_them_count() -> None:
    workers = [worker("a@h", "emails"), worker("b@h", "reports")]
    verdict = judge_check(None, workers, queues=["emails"])
    assert verdict.healthy
    assert verdict.line == "OK: workers alive per queue: emails: 1"
    assert judge_check(None, workers, queues=["other"]).line == (
        "FAIL: other has 0 workers alive consuming it, 1 needed"
    )


def test_each_queue_named_needs_min_workers_of_its_own() -> None:
    workers = [worker("a@h", "emails", "reports"), worker("b@h", "emails")]
    verdict = judge_check(None, workers, min_workers=2, queues=["emails", "reports"])
    assert not verdict.healthy
    assert verdict.line == "FAIL: reports has 1 worker alive consuming it, 2 needed"


@pytest.mark.parametrize("other", ["--json", "--watch", "--all"])
def test_check_refuses_the_options_of_a_picture(other: str) -> None:
    with pytest.raises(click.UsageError, match="--check takes none of"):
        status.main(["--check", other], standalone_mode=False)


def test_a_heartbeat_naming_no_queues_counts_only_when_no_queue_is_named() -> None:
    celery_worker = worker("celery@h")  # Celery's heartbeats carry no rabbitq_queues
    assert judge_check(None, [celery_worker]).healthy
    assert not judge_check(None, [celery_worker], queues=["emails"]).healthy
