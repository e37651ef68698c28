"""Worker events: online, a heartbeat every interval, offline (``events/heartbeat.py``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rabbitq.events.dispatcher import EventDispatcher
from rabbitq.events.heartbeat import WorkerHeartbeat
from rabbitq.message import Envelope

WORKER_FIELDS = {"freq", "active", "processed", "loadavg", "sw_ident", "sw_ver", "sw_sys"}


class Worker:
    active = 2
    processed = 41
    concurrency = 8
    queues = ("emails", "reports")
    chords_in_flight = 3
    declared_limits = [{"name": "mail", "kind": "rate", "rate": "20/s", "burst": 5}]


async def test_a_worker_goes_online_beats_and_goes_offline_with_celerys_fields() -> None:
    sent: list[tuple[str, Any]] = []

    def sink(routing_key: str, envelope: Envelope) -> bool:
        sent.append((routing_key, json.loads(envelope.body)))
        return True

    heartbeat = WorkerHeartbeat(EventDispatcher("rabbitq@h", sink), interval=0.05)
    heartbeat.worker_start(Worker())
    await asyncio.sleep(0.13)
    await heartbeat.worker_stop(Worker())
    keys = [routing_key for routing_key, _ in sent]
    assert keys[0] == "worker.online" and keys[-1] == "worker.offline"
    assert keys[1:-1] and set(keys[1:-1]) == {"worker.heartbeat"}
    for _, event in sent:
        assert set(event) >= WORKER_FIELDS
        assert event["active"] == 2 and event["processed"] == 41 and event["freq"] == 0.05
        assert event["sw_ident"] == "py-rabbitq" and len(event["loadavg"]) == 3


async def test_a_heartbeat_carries_the_slots_queues_chords_and_limits_status_shows() -> None:
    sent: list[Any] = []
    heartbeat = WorkerHeartbeat(
        EventDispatcher("rabbitq@h", lambda _rk, e: sent.append(json.loads(e.body)) or True),
        interval=0.02,
    )
    heartbeat.beat_now(Worker())
    assert sent[0]["rabbitq_concurrency"] == 8
    assert sent[0]["rabbitq_queues"] == ["emails", "reports"]
    assert sent[0]["rabbitq_chords"] == 3
    assert sent[0]["rabbitq_limits"] == Worker.declared_limits


async def test_after_offline_no_heartbeat_follows() -> None:
    sent: list[str] = []
    heartbeat = WorkerHeartbeat(
        EventDispatcher("rabbitq@h", lambda rk, _e: sent.append(rk) or True), interval=0.02
    )
    heartbeat.worker_start(Worker())
    await heartbeat.worker_stop(Worker())
    await asyncio.sleep(0.06)
    assert sent == ["worker.online", "worker.offline"]
