"""``rabbitq status`` against a real broker with known contents, and real worker and beat
processes (queue figures from the management API, so its statistics lag by a few seconds:
the specs wait for the figures they expect)."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

from integration.beat_support import BeatProcess, every_second_schedule
from integration.status_support import settled, status, status_json
from integration.support import LoggedProcess, running_worker, wait_for

APP = "integration.apps.status_app"


def queue(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    return next((q for q in snapshot["queues"] if q["name"] == name), {"messages": -1})


def dead_queue(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    return next((q for q in snapshot["dead_queues"] if q["name"] == name), {"messages": -1})


@pytest.fixture
def status_queue() -> str:
    return f"status-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def known_contents(
    broker_url: str, status_queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """A worker (one slot) on the queue; 3 failures dead-lettered, 2 successes, 5 countdowns
    an hour away, 4 tasks waiting in a queue nobody consumes, one chord waiting on it."""
    monkeypatch.setenv("STATUS_QUEUE", status_queue)
    monkeypatch.setenv("RABBITQ_BROKER_URL", broker_url)
    monkeypatch.setenv("RABBITQ_TEST_RECORD", str(tmp_path / "ran.txt"))
    import importlib

    import rabbitq
    from integration.apps import status_app

    status_app = importlib.reload(status_app)
    env = {"STATUS_QUEUE": status_queue}
    with running_worker(broker_url, status_queue, tmp_path, "-c", "1", env=env, app=APP) as w:
        for label in ("b0", "b1", "b2"):
            status_app.boom.delay(label)
        for label in ("o0", "o1"):
            status_app.ok.delay(label)
        for label in range(5):
            status_app.ok.apply_async((f"d{label}",), countdown=3600)
        for label in range(4):
            status_app.stuck.delay(f"s{label}")
        members = [status_app.ok.s("c1"), status_app.ok.s("c2"), status_app.stuck.s("c3")]
        rabbitq.chord(members, status_app.collect.s()).apply_async()
        status_app.app.close()
        yield w


def test_status_json_shows_the_brokers_known_contents(
    broker_url: str, management_url: str, status_queue: str, known_contents: Any
) -> None:
    stuck = status_queue + "-stuck"

    def complete(s: dict[str, Any]) -> bool:
        return (
            dead_queue(s, f"{status_queue}.dead")["messages"] == 3
            and queue(s, stuck)["messages"] == 5
            and s["totals"]["delayed"] >= 5
            and (s["chords"] or {}).get("parts_held", 0) >= 2
            # Consumer counts come from the management API's statistics too: they lag.
            and queue(s, status_queue).get("consumers") == 1
        )

    snapshot = settled(broker_url, management_url, complete)
    dead = dead_queue(snapshot, f"{status_queue}.dead")
    assert dead["source"] == status_queue
    assert dead["newest"]["reason"] == "task-failed" and dead["newest"]["task"] == "st.boom"
    assert dead["newest"]["exception"] == "ValueError: boom b2"  # one slot: b2 failed last
    assert queue(snapshot, stuck)["consumers"] == 0 and queue(snapshot, stuck)["role"] == "task"
    [worker] = [w for w in snapshot["workers"] if status_queue in w["queues"]]
    assert worker["online"] and worker["pid"] and worker["concurrency"] == 1
    assert worker["processed"] >= 7  # 3 failures, 2 successes, 2 chord members
    assert snapshot["chords"]["in_flight"] >= 1 and snapshot["chords"]["coordinator"]
    assert all(level["wait_ms"] == 2 ** level["level"] for level in snapshot["delay_levels"])
    assert snapshot["broker_version"] and ":***@" in snapshot["broker"]


def test_status_text_is_one_screen_with_each_section(
    broker_url: str, management_url: str, status_queue: str, known_contents: Any
) -> None:
    settled(
        broker_url,
        management_url,
        lambda s: dead_queue(s, f"{status_queue}.dead")["messages"] == 3,
    )
    done = status(broker_url, management_url)
    assert done.returncode == 0, done.stderr
    for section in ("Queues", "Workers (", "Dead letters (", "Delayed (", "Chords:", "Beat:"):
        assert section in done.stdout
    assert f"{status_queue}.dead" in done.stdout and "newest: task-failed st.boom" in done.stdout


def test_a_stopped_worker_is_shown_offline(
    broker_url: str, management_url: str, status_queue: str, known_contents: Any
) -> None:
    pid = known_contents.pid
    known_contents.stop()
    snapshot = status_json(broker_url, management_url)
    mine = [w for w in snapshot["workers"] if w["pid"] == pid]
    # The status process started after the worker went: it heard none of its heartbeats.
    assert not any(w["online"] for w in mine)


def test_a_worker_gone_while_status_watches_turns_offline(
    broker_url: str, management_url: str, status_queue: str, tmp_path: Path
) -> None:
    watcher = LoggedProcess(
        [sys.executable, "-m", "rabbitq", "status", "--json", "--watch", "0.5",
         "--broker", broker_url, "--management-url", management_url],
        tmp_path / "watch.log", {},
    )  # fmt: skip
    try:
        with running_worker(
            broker_url, status_queue, tmp_path, env={"STATUS_QUEUE": status_queue}, app=APP
        ) as worker:
            pid = worker.pid

            def mine(online: bool) -> bool:
                lines = [line for line in watcher.log().splitlines() if line.startswith("{")]
                workers = json.loads(lines[-1])["workers"] if lines else []
                return any(w["pid"] == pid and w["online"] is online for w in workers)

            wait_for(lambda: mine(True), 20, watcher.log)
        wait_for(lambda: mine(False), 20, watcher.log)
    finally:
        watcher.stop()


def test_status_shows_the_beat_leader_and_its_next_ticks(
    broker_url: str, management_url: str, status_queue: str, tmp_path: Path
) -> None:
    group = f"g{uuid.uuid4().hex[:6]}"
    schedule = every_second_schedule(tmp_path / "schedule.yaml", status_queue)
    beat = BeatProcess(broker_url, schedule, group, tmp_path / "beat.log")
    try:
        snapshot = settled(
            broker_url,
            management_url,
            lambda s: s["beat"] and s["beat"]["leader"] and s["beat"]["ticks"],
            "--beat-group",
            group,
        )
    finally:
        beat.stop()
    assert snapshot["beat"]["led"] and snapshot["beat"]["group"] == group
    [tick] = snapshot["beat"]["ticks"]
    assert tick["entry"] == "every-second" and tick["next"]


def test_without_the_management_api_status_still_shows_workers_and_says_why(
    broker_url: str, status_queue: str, tmp_path: Path
) -> None:
    closed = "http://guest:guest@127.0.0.1:9/"
    with running_worker(
        broker_url, status_queue, tmp_path, env={"STATUS_QUEUE": status_queue}, app=APP
    ) as worker:
        snapshot = status_json(broker_url, closed)
    assert any("management API" in problem for problem in snapshot["problems"])
    assert any(w["pid"] == worker.pid and w["online"] for w in snapshot["workers"])
    assert snapshot["queues"] == []


def test_a_dead_letter_is_kept_when_its_record_is_refused(
    broker_url: str, management_url: str, status_queue: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("STATUS_QUEUE", status_queue)
    monkeypatch.setenv("RABBITQ_BROKER_URL", broker_url)
    import importlib

    from integration.apps import status_app

    status_app = importlib.reload(status_app)
    env = {"STATUS_QUEUE": status_queue}
    with running_worker(broker_url, status_queue, tmp_path, env=env, app=APP) as worker:
        # A record queue that takes nothing: every record is nacked.
        record_queue = f"{status_queue}.dead.newest"
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        connection.channel().queue_delete(record_queue)
        refuse_all = {"x-max-length": 0, "x-overflow": "reject-publish"}
        connection.channel().queue_declare(record_queue, durable=True, arguments=refuse_all)
        connection.close()
        status_app.boom.delay("no-record")
        status_app.ok.delay("after")
        status_app.app.close()
        ran = tmp_path / "ran.txt"
        wait_for(lambda: ran.exists() and "after" in ran.read_text(), 30, worker.log)
        snapshot = settled(
            broker_url,
            management_url,
            lambda s: dead_queue(s, f"{status_queue}.dead")["messages"] == 1,
        )
        assert worker.process.poll() is None  # the worker lives
    assert dead_queue(snapshot, f"{status_queue}.dead")["newest"] is None


def test_watch_refuses_a_period_of_zero(broker_url: str, management_url: str) -> None:
    done = status(broker_url, management_url, "--watch", "0")
    assert done.returncode == 2 and "--watch" in done.stderr


def test_status_answers_within_a_heartbeat_or_so(broker_url: str, management_url: str) -> None:
    started = time.monotonic()
    assert status(broker_url, management_url).returncode == 0
    # Not a threshold on speed: a status that hangs on a missing beat or queue would time out.
    assert time.monotonic() - started < 60


def test_queue_rates_show_a_steady_stream_of_publishes(
    broker_url: str, management_url: str, status_queue: str
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    for name in (status_queue, status_queue + ".dead"):
        channel.queue_declare(name, durable=True)
    seen: list[dict[str, Any]] = []

    def publishing_shows() -> bool:
        for _ in range(20):  # about 40 a second, while the management API samples
            channel.basic_publish("", status_queue, b"x")
            connection.sleep(0.025)
        seen.append(status_json(broker_url, management_url))
        return queue(seen[-1], status_queue).get("publish_rate", 0) > 0

    try:
        wait_for(publishing_shows, 60, lambda: json.dumps(queue(seen[-1], status_queue)))
    finally:
        channel.queue_delete(status_queue)
        connection.close()


def test_reading_the_beat_leaves_an_unreadable_state_copy_where_it_is(
    broker_url: str, management_url: str
) -> None:
    from rabbitq.beat.state import state_queue_name

    group = f"g{uuid.uuid4().hex[:6]}"
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(state_queue_name(group), durable=True)
    channel.basic_publish("", state_queue_name(group), b"not a state")
    try:
        for _ in range(2):
            assert status_json(broker_url, management_url, "--beat-group", group)["beat"] is None
        depth = channel.queue_declare(state_queue_name(group), passive=True).method.message_count
        assert depth == 1
    finally:
        channel.queue_delete(state_queue_name(group))
        connection.close()
