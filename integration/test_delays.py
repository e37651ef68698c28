"""Countdowns, ETAs and retries through the delay levels, against a real broker."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pika
import pytest

import rabbitq
from integration.apps import core_app
from integration.support import (
    WorkerProcess,
    drain_queue,
    queue_depth,
    ran_ids,
    ran_labels,
    running_worker,
    wait_for,
)
from rabbitq.delays import LEVELS, UNROUTABLE_QUEUE, level_name
from rabbitq.testing import LocalBroker


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _level_depth(broker_url: str) -> int:
    return sum(queue_depth(broker_url, level_name(level)) for level in range(LEVELS))


def test_countdowns_start_no_earlier_than_their_eta_and_in_eta_order(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    count = 2_000
    # Longest first, 1..20 s in milliseconds: the worst case for a single TTL queue.
    countdowns = [1.0 + 19.0 * (count - 1 - i) / (count - 1) for i in range(count)]
    with running_worker(
        broker_url, unique_name, tmp_path, "--concurrency", "1", "--loglevel", "WARNING"
    ) as worker:
        rss_before = _rss_kib(worker.process.pid)
        lock = threading.Lock()
        ids: list[str] = []

        def publish(part: list[float]) -> None:
            for countdown in part:
                handle = core_app.on_time.apply_async(
                    (countdown,), queue=unique_name, countdown=countdown
                )
                with lock:
                    ids.append(handle.id)

        parts = [countdowns[n::4] for n in range(4)]
        threads = [threading.Thread(target=publish, args=(part,)) for part in parts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        waiting = _level_depth(broker_url)
        rss_waiting = _rss_kib(worker.process.pid)
        wait_for(
            lambda: len(ran_ids(record)) >= count,
            90,
            lambda: f"{len(ran_ids(record))} of {count} ran",
        )
    starts = [tuple(map(float, label.split()[1:])) for label in ran_labels(record)]
    early = [(start, eta) for start, eta in starts if start < eta]
    assert early == [], f"{len(early)} tasks started before their ETA"
    etas_in_start_order = [eta for _start, eta in starts]
    # How far back in ETA order a start ever went: messages whose ETAs are milliseconds apart
    # may swap (one crosses more levels than the other), but nothing waits behind a later
    # one as it would in a single TTL queue (there, the 1 s tasks would start after 20 s).
    latest_eta_so_far = float("-inf")
    worst_ms = 0.0
    for eta in etas_in_start_order:
        worst_ms = max(worst_ms, (latest_eta_so_far - eta) * 1000)
        latest_eta_so_far = max(latest_eta_so_far, eta)
    lateness = sorted((start - eta) * 1000 for start, eta in starts)
    print(
        f"\nlateness ms: p50 {lateness[len(lateness) // 2]:.1f}, "
        f"p99 {lateness[int(len(lateness) * 0.99)]:.1f}, max {lateness[-1]:.1f}"
    )
    print(
        f"\n{count} countdowns: 0 early; started out of ETA order by at most {worst_ms:.1f} ms; "
        f"{waiting} waited in the levels while the worker's RSS went "
        f"{rss_before} -> {rss_waiting} KiB"
    )
    # Head-of-line blocking would show as inversions of up to 19 s here; allow broker jitter.
    assert worst_ms < 3000, "a task waited behind one due seconds later"
    assert waiting >= count // 2  # the broker, not the worker, holds what is waiting
    assert set(ran_ids(record)) == set(ids)


def test_delay_longer_than_consumer_timeout_waits_in_the_level_queues(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    countdown_ms = 2 * 3_600_000 + 12_345  # two hours: far past the 30-minute consumer_timeout
    handle = core_app.record.apply_async(
        ("later",), queue=unique_name, countdown=countdown_ms / 1000
    )
    highest = (countdown_ms - 1).bit_length() - 1  # the ETA is rounded up by at most 1 ms
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        found = []
        while (got := channel.basic_get(level_name(highest), auto_ack=False))[0] is not None:
            method, properties, _body = got
            found.append((properties.headers["id"], method.routing_key))
        ids = [task_id for task_id, _ in found]
        assert handle.id in ids, f"not in {level_name(highest)}"
        routing_key = dict(found)[handle.id]
        assert routing_key.endswith(f".route.{unique_name}")
    finally:
        connection.close()  # unacked messages go back to the level queue
    assert queue_depth(broker_url, unique_name) == 0


def test_task_that_succeeds_on_its_third_attempt_runs_exactly_three_times(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path):
        handle = core_app.flaky.apply_async(("f", 2, 0.3), queue=unique_name)
        wait_for(lambda: "f attempt 3" in ran_labels(tmp_path / "ran.txt"), 30)
        # Give a (wrong) fourth attempt time to show up before counting.
        core_app.record.apply_async(("sentinel",), queue=unique_name, countdown=0.6)
        wait_for(lambda: "sentinel" in ran_labels(tmp_path / "ran.txt"), 30)
    assert ran_ids(tmp_path / "ran.txt")[handle.id] == 3
    assert [label for label in ran_labels(tmp_path / "ran.txt") if label.startswith("f ")] == [
        "f attempt 1",
        "f attempt 2",
        "f attempt 3",
    ]


def test_retries_with_backoff_reach_max_retries_then_dead_letter_with_traceback(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    with running_worker(broker_url, unique_name, tmp_path):
        handle = core_app.hopeless.apply_async(("h",), queue=unique_name)
        found: list[dict[str, object]] = []

        def collect() -> bool:
            found.extend(p.headers for p, _ in drain_queue(broker_url, unique_name + ".dead"))
            return bool(found)

        wait_for(collect, 30)
    [dead] = found
    assert dead["id"] == handle.id
    assert dead["rabbitq_reason"] == "retries-exhausted"
    assert dead["rabbitq_exception_type"] == "ValueError"
    assert "raise ValueError" in str(dead["rabbitq_traceback"])
    assert dead["rabbitq_attempts"] == 4  # the first run and three retries
    assert dead["rabbitq_original_routing_key"] == unique_name
    assert ran_ids(tmp_path / "ran.txt")[handle.id] == 4


def test_retry_goes_back_to_its_own_queue_only(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    other = unique_name + "b"
    shared = f"shared{unique_name}"
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        f"queues:\n  {unique_name}:\n    bindings: ['{shared}.#']\n"
        f"  {other}:\n    bindings: ['{shared}.#']\n"
    )
    from integration.test_topology_cli import rabbitq_cli

    assert rabbitq_cli("topology", "apply", str(routing), "--broker", broker_url).returncode == 0
    with running_worker(broker_url, unique_name, tmp_path, "--routing", str(routing)):
        handle = core_app.flaky.apply_async(("shared", 1, 0.2), routing_key=f"{shared}.x")
        wait_for(lambda: ran_ids(tmp_path / "ran.txt")[handle.id] == 2, 30)
    in_other = [p.headers["retries"] for p, _ in drain_queue(broker_url, other)]
    assert in_other == [0]  # the original only; the retry did not fan out


def test_delayed_task_unroutable_at_delivery_goes_to_the_delay_dead_letter_queue(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    handle = core_app.record.apply_async(("orphan",), queue=unique_name, countdown=1.0)
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().queue_delete(unique_name)  # nobody is bound when it comes due
    connection.close()
    found: list[str] = []

    def collect() -> bool:
        connection = pika.BlockingConnection(pika.URLParameters(broker_url))
        channel = connection.channel()
        while (got := channel.basic_get(UNROUTABLE_QUEUE, auto_ack=False))[0] is not None:
            method, properties, _ = got
            if properties.headers.get("id") == handle.id:
                found.append(handle.id)
                channel.basic_ack(method.delivery_tag)
        connection.close()
        return bool(found)

    wait_for(collect, 20)


def test_worker_killed_while_tasks_wait_between_retries_loses_nothing(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    record = tmp_path / "ran.txt"
    handles = [core_app.flaky.apply_async((f"k{i}", 1, 3.0), queue=unique_name) for i in range(50)]
    first = WorkerProcess(broker_url, unique_name, record, tmp_path / "w1.log")
    first.wait_until_consuming()
    wait_for(lambda: len(ran_ids(record)) >= 50, 30)  # every first attempt failed and retried
    first.kill()
    with running_worker(broker_url, unique_name, tmp_path):
        wait_for(lambda: all(ran_ids(record)[h.id] >= 2 for h in handles), 60)


@pytest.mark.slow
def test_broker_restart_with_tasks_in_the_delay_levels_loses_none(
    restartable_broker: LocalBroker, unique_name: str, tmp_path: Path
) -> None:
    url = restartable_broker.url
    app = rabbitq.App("levels", broker=url)
    task = app.task(name="it.record")(core_app.record.fn)
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)
    ids = [
        task.apply_async((i,), queue=unique_name, eta=eta + dt.timedelta(milliseconds=i)).id
        for i in range(1_000)
    ]
    app.close()
    assert _level_depth(url) == 1_000
    restartable_broker.restart()
    with running_worker(url, unique_name, tmp_path, "--loglevel", "WARNING"):
        wait_for(
            lambda: set(ids) <= set(ran_ids(tmp_path / "ran.txt")),
            120,
            lambda: f"{len(set(ids) - set(ran_ids(tmp_path / 'ran.txt')))} never ran",
        )
