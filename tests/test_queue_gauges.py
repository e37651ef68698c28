"""The queue-level gauges (``metrics/queue_gauges.py``): what a scrape shows of a snapshot
of the system, built by hand here (no broker)."""

from __future__ import annotations

import prometheus_client

from rabbitq.metrics.queue_gauges import QueueGauges
from rabbitq.status.snapshot import (
    BeatFigures,
    ChordFigures,
    DeadQueueFigures,
    DelayLevelFigures,
    LimitFigures,
    NewestDeadLetter,
    QueueFigures,
    Snapshot,
    WorkerFigures,
)


def queue(name: str, role: str = "task", messages: int = 0, **figures: float) -> QueueFigures:
    return QueueFigures(
        name=name,
        role=role,  # type: ignore[arg-type]
        type=str(figures.pop("type", "classic")),
        messages=messages,
        ready=int(figures.pop("ready", messages)),
        unacked=int(figures.pop("unacked", 0)),
        consumers=int(figures.pop("consumers", 0)),
        publish_rate=figures.pop("publish_rate", 0.0),
        deliver_rate=figures.pop("deliver_rate", 0.0),
    )


def worker(hostname: str, *, online: bool = True, active: int = 0) -> WorkerFigures:
    return WorkerFigures(
        hostname=hostname,
        pid=1,
        concurrency=8,
        active=active,
        processed=42,
        loadavg=(0.0, 0.0, 0.0),
        software="rabbitq 0.1.0",
        last_seen=1_700_000_000.0,
        online=online,
    )


SNAPSHOT = Snapshot(
    taken_at="2026-12-04T20:00:00+00:00",
    broker="amqp://127.0.0.1:5672/",
    broker_version="4.0.5",
    queues=(
        queue("emails", messages=7, ready=5, unacked=2, consumers=3, publish_rate=1.5),
        queue("emails.dead", role="dead", messages=4),
    ),
    workers=(worker("celery@a", active=2), worker("celery@b", online=False)),
    dead_queues=(
        DeadQueueFigures(
            "emails.dead",
            "emails",
            4,
            NewestDeadLetter("id", "send", "task-failed", "ValueError", "2026-12-04"),
        ),
    ),
    delay_levels=(DelayLevelFigures(level=3, wait_ms=8000, messages=11),),
    chords=ChordFigures(parts_waiting=1, parts_held=5, in_flight=None, coordinator=None, dead=0),
    beat=BeatFigures(group="", led=True, leader="beat@a", leader_since=None, state_written=None),
    limits=(
        LimitFigures("mail", "rate", None, 3, True, holders=0, keys=0, waiting=7, taken=2),
        LimitFigures("sync", "mutex", None, None, None, holders=4, keys=4, waiting=1, taken=0),
    ),
)


def scrape(snapshot: Snapshot | None = SNAPSHOT) -> prometheus_client.CollectorRegistry:
    def take() -> Snapshot:
        if snapshot is None:
            raise ConnectionError("broker down")
        return snapshot

    registry = prometheus_client.CollectorRegistry()
    registry.register(QueueGauges(take))
    return registry


def test_each_queue_shows_its_depth_ready_unacked_and_consumers() -> None:
    registry = scrape()
    labels = {"queue": "emails", "role": "task", "type": "classic"}
    assert registry.get_sample_value("rabbitq_queue_messages", labels) == 7
    assert registry.get_sample_value("rabbitq_queue_messages_ready", labels) == 5
    assert registry.get_sample_value("rabbitq_queue_messages_unacked", labels) == 2
    assert registry.get_sample_value("rabbitq_queue_consumers", labels) == 3
    assert registry.get_sample_value("rabbitq_queue_publish_rate", labels) == 1.5


def test_each_dead_letter_queue_shows_its_count_beside_the_queue_it_serves() -> None:
    labels = {"queue": "emails.dead", "source": "emails"}
    assert scrape().get_sample_value("rabbitq_dead_letter_messages", labels) == 4


def test_each_delay_level_shows_its_occupancy_and_its_wait() -> None:
    labels = {"level": "3", "wait_seconds": "8"}
    assert scrape().get_sample_value("rabbitq_delay_level_messages", labels) == 11


def test_workers_online_counts_only_the_nodes_still_heard_from() -> None:
    registry = scrape()
    assert registry.get_sample_value("rabbitq_workers_online") == 1
    quiet = {"hostname": "celery@b", "software": "rabbitq 0.1.0"}
    assert registry.get_sample_value("rabbitq_worker_online", quiet) == 0
    assert registry.get_sample_value("rabbitq_worker_active", {"hostname": "celery@a"}) == 2


def test_chords_in_flight_is_left_out_while_no_coordinator_is_heard_from() -> None:
    registry = scrape()
    assert registry.get_sample_value("rabbitq_chord_parts_held") == 5
    assert registry.get_sample_value("rabbitq_chords_in_flight") is None


def test_each_limit_shows_its_tokens_running_and_waiting_tasks() -> None:
    registry = scrape()
    rate, mutex = {"limit": "mail", "kind": "rate"}, {"limit": "sync", "kind": "mutex"}
    assert registry.get_sample_value("rabbitq_limit_tokens", rate) == 3
    assert registry.get_sample_value("rabbitq_limit_waiting", rate) == 7
    assert registry.get_sample_value("rabbitq_limit_running", mutex) == 4
    assert registry.get_sample_value("rabbitq_limit_tokens", mutex) is None


def test_the_beat_shows_whether_it_holds_its_lease() -> None:
    assert scrape().get_sample_value("rabbitq_beat_led", {"group": ""}) == 1


def test_a_scrape_that_reads_the_broker_says_up() -> None:
    assert scrape().get_sample_value("rabbitq_status_up") == 1


def test_a_snapshot_that_cannot_be_taken_is_up_0_not_a_failed_scrape() -> None:
    registry = scrape(None)
    assert registry.get_sample_value("rabbitq_status_up") == 0
    assert registry.get_sample_value("rabbitq_queue_messages", {"queue": "emails"}) is None


def test_the_collector_is_served_in_the_exposition_format() -> None:
    text = prometheus_client.generate_latest(scrape()).decode()
    assert 'rabbitq_queue_messages{queue="emails",role="task",type="classic"} 7.0' in text
