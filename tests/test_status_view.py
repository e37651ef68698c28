"""What ``rabbitq status`` makes of the broker's figures (``status/classify.py``,
``status/workers.py``, ``status/render.py``, ``status/newest.py``): no broker needed."""

from __future__ import annotations

from typing import Any

import pytest

from rabbitq.status.classify import delay_levels, queue_figures, role_of, source_of
from rabbitq.status.newest import decode_newest, encode_newest, newest_queue_name
from rabbitq.status.render import render_text
from rabbitq.status.snapshot import (
    BeatFigures,
    BeatTick,
    ChordFigures,
    DeadQueueFigures,
    NewestDeadLetter,
    Snapshot,
    snapshot_to_json,
)
from rabbitq.status.workers import FORGET_AFTER, WorkerTable

NAMES = frozenset({"emails", "emails.dead", "emails.dead.newest", "lonely"})


def listed(name: str, **figures: Any) -> dict[str, Any]:
    return {"name": name, "type": "quorum", **figures}


def test_a_queue_with_a_dead_queue_beside_it_is_a_task_queue() -> None:
    assert role_of("emails", NAMES) == "task"
    assert role_of("emails.dead", NAMES) == "dead"
    assert role_of("lonely", NAMES) == "other"


def test_rabbitqs_own_queues_are_known_by_their_names() -> None:
    assert role_of("rabbitq.delay.12", NAMES) == "delay"
    assert role_of("rabbitq.delay.dead", NAMES) == "dead"
    assert role_of("rabbitq.chords", NAMES) == "chords"
    assert role_of("rabbitq.chords.dead", NAMES) == "dead"
    assert role_of("rabbitq.beat.state", NAMES) == "beat"
    assert role_of("rabbitq.events", NAMES) == "events"
    assert role_of("rabbitq.revocations", NAMES) == "revocations"


def test_mailboxes_event_receivers_and_newest_records_are_not_shown() -> None:
    for name in (
        "rabbitq@h.celery.pidbox",
        "celeryev.0f1e",
        "amq.gen-Xy",
        "rabbitq.status.ab12",
        "emails.dead.newest",
    ):
        assert role_of(name, NAMES) is None


def test_queue_figures_take_depths_consumers_and_rates_from_the_management_api() -> None:
    [emails] = [
        figure
        for figure in queue_figures(
            [
                listed(
                    "emails",
                    messages=7,
                    messages_ready=5,
                    messages_unacknowledged=2,
                    consumers=3,
                    message_stats={
                        "publish_details": {"rate": 12.345},
                        "deliver_get_details": {"rate": 4.0},
                    },
                ),
                listed("emails.dead"),
            ]
        )
        if figure.name == "emails"
    ]
    assert (emails.messages, emails.ready, emails.unacked, emails.consumers) == (7, 5, 2, 3)
    assert (emails.publish_rate, emails.deliver_rate) == (12.35, 4.0)


def test_a_queue_reporting_no_counts_yet_counts_zero() -> None:
    [stream] = queue_figures([{"name": "rabbitq.events", "type": "stream"}])
    assert (stream.messages, stream.ready, stream.publish_rate) == (0, 0, 0.0)


def test_delay_levels_are_ordered_with_their_wait() -> None:
    figures = queue_figures(
        [listed("rabbitq.delay.10", messages=3), listed("rabbitq.delay.2", messages=1)]
    )
    assert [(d.level, d.wait_ms, d.messages) for d in delay_levels(figures)] == [
        (2, 4, 1),
        (10, 1024, 3),
    ]


def test_a_dead_queue_names_the_queue_it_serves() -> None:
    assert source_of("emails.dead") == "emails"
    assert source_of("rabbitq.delay.dead") == "rabbitq.delay"


def heartbeat(hostname: str, **fields: Any) -> dict[str, Any]:
    return {"type": "worker-heartbeat", "hostname": hostname, "freq": 2.0, **fields}


def test_a_worker_is_online_until_it_misses_two_heartbeats() -> None:
    table = WorkerTable()
    table.take(heartbeat("a@h", pid=7, active=1, processed=9, rabbitq_concurrency=4), 100.0)
    [fresh] = table.figures(104.0)
    [late] = table.figures(106.0)
    assert fresh.online and (fresh.pid, fresh.active, fresh.concurrency) == (7, 1, 4)
    assert not late.online


def test_a_worker_that_said_goodbye_is_offline_at_once() -> None:
    table = WorkerTable()
    table.take(heartbeat("a@h"), 100.0)
    table.take({"type": "worker-offline", "hostname": "a@h"}, 101.0)
    assert not table.figures(101.0)[0].online


def test_a_quiet_worker_is_forgotten_in_time() -> None:
    table = WorkerTable()
    table.take(heartbeat("a@h"), 100.0)
    assert table.figures(100.0 + FORGET_AFTER + 1) == ()


def test_task_events_and_nameless_events_do_not_make_workers() -> None:
    table = WorkerTable()
    table.take({"type": "task-started", "hostname": "a@h"}, 1.0)
    table.take({"type": "worker-heartbeat"}, 1.0)
    assert table.figures(1.0) == ()


def test_a_celery_workers_heartbeat_has_no_slots_or_chords_but_still_counts() -> None:
    table = WorkerTable()
    table.take(heartbeat("celery@h", sw_ident="py-celery", sw_ver="5.4.0"), 1.0)
    [worker] = table.figures(1.0)
    assert worker.online and worker.concurrency is None and worker.chords_in_flight is None
    assert worker.software == "py-celery 5.4.0"


def test_the_newest_record_reads_back_and_a_broken_one_reads_as_none() -> None:
    record = NewestDeadLetter("id-1", "st.boom", "task-failed", "ValueError: x", "2026-12-04")
    assert decode_newest(encode_newest(record)) == record
    assert decode_newest(b"not json") is None
    assert decode_newest(b'{"id": 1}') is None
    assert newest_queue_name("emails.dead") == "emails.dead.newest"


SNAPSHOT = Snapshot(
    taken_at="2026-12-04T10:00:00+00:00",
    broker="amqp://guest:***@localhost:5672/",
    broker_version="4.0.5",
    queues=tuple(
        queue_figures(
            [listed("emails", messages=5, messages_ready=5, consumers=2), listed("emails.dead")]
        )
    ),
    dead_queues=(
        DeadQueueFigures(
            "emails.dead",
            "emails",
            3,
            NewestDeadLetter("i", "mail.send", "task-failed", "SMTPError: 421", "2026-12-04"),
        ),
    ),
    chords=ChordFigures(0, 4, 2, "rabbitq@a", 0),
    beat=BeatFigures("", True, "beat@h", None, None, (BeatTick("nightly", "cron", "x", "y"),)),
    problems=("management API did not answer",),
)


def test_the_text_screen_shows_every_section_with_its_figures() -> None:
    text = render_text(SNAPSHOT, now=0.0)
    for expected in (
        "RabbitMQ 4.0.5",
        "! management API did not answer",
        "emails",
        "Workers (0 online)",
        "Dead letters (3)",
        "newest: task-failed mail.send",
        "SMTPError: 421",
        "Chords: 2 in flight coordinated by rabbitq@a; parts held 4",
        "Beat: led by beat@h",
        "nightly",
    ):
        assert expected in text


def test_a_beat_group_without_a_leader_says_so() -> None:
    alone = Snapshot("t", "b", "v", beat=BeatFigures("nightly", False, None, None, None))
    assert "Beat (group nightly): NO LEADER" in render_text(alone, now=0.0)


def test_the_json_snapshot_carries_totals() -> None:
    document = snapshot_to_json(SNAPSHOT)
    assert document["totals"] == {"dead_letters": 3, "delayed": 0, "workers_online": 0}
    assert document["dead_queues"][0]["newest"]["reason"] == "task-failed"


@pytest.mark.parametrize(
    "bad",
    [
        {"loadavg": 3},
        {"loadavg": True},
        {"loadavg": [1.0, "x", float("nan")]},
        {"freq": float("nan")},
        {"freq": True},
        {"pid": float("inf")},
        {"active": "many"},
        {"rabbitq_queues": "emails"},
        {"rabbitq_concurrency": float("nan")},
    ],
)
def test_a_malformed_heartbeat_is_shown_with_what_is_usable_and_never_raises(
    bad: dict[str, Any],
) -> None:
    table = WorkerTable()
    table.take(heartbeat("odd@h", **bad), 1.0)
    [worker] = table.figures(1.0)
    assert worker.hostname == "odd@h" and worker.online


def test_status_expects_heartbeats_as_often_as_workers_send_them() -> None:
    from rabbitq.events.event import HEARTBEAT_INTERVAL
    from rabbitq.status.workers import DEFAULT_FREQ

    assert DEFAULT_FREQ == HEARTBEAT_INTERVAL
