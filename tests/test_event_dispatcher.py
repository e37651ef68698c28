"""Building and handing on events: batching, drops, and the pure pieces of ``events/``."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from celery.utils.time import utcoffset as celery_utcoffset

from rabbitq.amqp.event_buffer import EventBuffer
from rabbitq.events.dispatcher import BATCH_LIMIT, EventDispatcher
from rabbitq.events.event import (
    LamportClock,
    decode_events,
    event_envelope,
    exception_fields,
    result_repr,
    routing_key_for,
    utcoffset,
)
from rabbitq.message import Envelope


class Sink:
    def __init__(self, takes: bool = True) -> None:
        self.takes = takes
        self.sent: list[tuple[str, Any]] = []

    def __call__(self, routing_key: str, envelope: Envelope) -> bool:
        if self.takes:
            self.sent.append((routing_key, json.loads(envelope.body)))
        return self.takes


async def test_task_events_of_one_window_leave_as_one_task_multi_list() -> None:
    sink = Sink()
    dispatcher = EventDispatcher(
        "n@h", sink, schedule=lambda flush: asyncio.get_running_loop().call_soon(flush)
    )
    for index in range(3):
        dispatcher.send_task_event("task-started", uuid=str(index))
    assert sink.sent == []  # nothing leaves before the loop turn ends
    await asyncio.sleep(0)
    [(routing_key, body)] = sink.sent
    assert routing_key == "task.multi" and [e["uuid"] for e in body] == ["0", "1", "2"]
    assert dispatcher.sent == 3


async def test_a_lone_task_event_goes_under_its_own_routing_key() -> None:
    sink = Sink()
    dispatcher = EventDispatcher(
        "n@h", sink, schedule=lambda flush: asyncio.get_running_loop().call_soon(flush)
    )
    dispatcher.send_task_event("task-succeeded", uuid="a", result="1", runtime=0.1)
    await asyncio.sleep(0)
    [(routing_key, body)] = sink.sent
    assert routing_key == "task.succeeded" and body["uuid"] == "a"


class Timers:
    """A schedule that runs nothing by itself: the spec says when the window ends."""

    def __init__(self) -> None:
        self.flushes: list[Any] = []
        self.cancelled = 0

    def __call__(self, flush: Any) -> Timers:
        self.flushes.append(flush)
        return self

    def cancel(self) -> None:
        self.cancelled += 1


def test_a_batch_is_sent_at_its_limit_without_waiting_for_its_window() -> None:
    sink = Sink()
    timers = Timers()
    dispatcher = EventDispatcher("n@h", sink, schedule=timers)
    for index in range(BATCH_LIMIT):
        dispatcher.send_task_event("task-started", uuid=str(index))
    [(routing_key, body)] = sink.sent
    assert routing_key == "task.multi" and len(body) == BATCH_LIMIT
    assert len(timers.flushes) == 1 and timers.cancelled == 1  # its window's end is called off


def test_an_event_sent_on_its_own_follows_the_task_events_waiting_before_it() -> None:
    sink = Sink()
    dispatcher = EventDispatcher("n@h", sink, schedule=Timers())
    dispatcher.send_task_event("task-succeeded", uuid="a", result="1", runtime=0.1)
    dispatcher.send("worker-offline", freq=2.0)
    assert [rk for rk, _ in sink.sent] == ["task.succeeded", "worker.offline"]


def test_without_a_scheduler_every_task_event_is_a_message() -> None:
    sink = Sink()
    dispatcher = EventDispatcher("n@h", sink)
    dispatcher.send_task_event("task-started", uuid="a")
    dispatcher.send_task_event("task-started", uuid="b")
    assert [rk for rk, _ in sink.sent] == ["task.started", "task.started"]


def test_every_event_carries_celerys_common_fields() -> None:
    sink = Sink()
    EventDispatcher("rabbitq@box", sink).send("worker-heartbeat", active=0)
    [(routing_key, event)] = sink.sent
    assert routing_key == "worker.heartbeat"
    assert event["type"] == "worker-heartbeat" and event["hostname"] == "rabbitq@box"
    assert isinstance(event["timestamp"], float) and isinstance(event["pid"], int)
    assert event["utcoffset"] == celery_utcoffset() and event["clock"] == 1


def test_dropped_events_are_counted_and_logged_once_in_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = EventDispatcher("n@h", Sink(takes=False))
    with caplog.at_level(logging.WARNING, "rabbitq.events"):
        for _ in range(5):
            dispatcher.send("worker-heartbeat")
    assert dispatcher.dropped == 5 and dispatcher.sent == 0
    assert len([r for r in caplog.records if "dropped" in r.message]) == 1


def test_the_event_buffer_refuses_past_its_limit_and_hands_over_in_order() -> None:
    buffer = EventBuffer(limit=2)
    envelope = event_envelope({"type": "x"}, "n@h")
    assert buffer.offer("a", envelope) and buffer.offer("b", envelope)
    assert not buffer.offer("c", envelope)
    assert [rk for rk, _ in buffer.take()] == ["a", "b"]
    assert len(buffer) == 0 and buffer.offer("d", envelope)


def test_utcoffset_is_celerys() -> None:
    assert utcoffset() == celery_utcoffset()


def test_routing_keys_are_celerys() -> None:
    assert routing_key_for("task-succeeded") == "task.succeeded"
    assert routing_key_for("worker-online") == "worker.online"


def test_a_result_repr_is_bounded_as_celerys() -> None:
    assert result_repr("x" * 5000).__len__() <= 1030
    assert result_repr({"a": 1}) == "{'a': 1}"


def test_a_repr_that_raises_still_gives_an_event() -> None:
    class Nasty:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert "Nasty" in result_repr(Nasty())


def test_exception_fields_give_the_repr_and_the_traceback() -> None:
    try:
        raise ValueError("bad")
    except ValueError as exc:
        fields = exception_fields(exc)
    assert fields["exception"] == "ValueError('bad')"
    assert "Traceback" in fields["traceback"] and "ValueError: bad" in fields["traceback"]


def test_decode_events_reads_one_a_list_or_nothing() -> None:
    assert decode_events(b'{"type": "a"}') == [{"type": "a"}]
    assert decode_events(b'[{"type": "a"}, {"type": "b"}, 3, {"no": "type"}]') == [
        {"type": "a"},
        {"type": "b"},
    ]
    assert decode_events(b"not json") == [] and decode_events(b"") == []


def test_what_json_does_not_know_travels_as_its_repr() -> None:
    envelope = event_envelope({"type": "x", "when": object}, "n@h")
    assert json.loads(envelope.body)["when"] == "<class 'object'>"


def test_the_lamport_clock_only_goes_forward() -> None:
    clock = LamportClock()
    assert [clock.forward() for _ in range(3)] == [1, 2, 3]
