"""Celery's events as data: names, fields and encoding (pure; nothing here sends).

An event is a dict, exactly as Celery 5 sends it, so Flower, celery-exporter and ``celery
events`` read rabbitq's unchanged::

    every event   type, hostname (the node name), timestamp (time.time()), utcoffset (hours
                  west of UTC, a float, as Celery computes it), pid, clock (a Lamport clock)
    worker-online, worker-heartbeat, worker-offline
                  freq (seconds between heartbeats), active, processed, loadavg,
                  sw_ident, sw_ver, sw_sys
    task-sent     uuid, name, args, kwargs (reprs), retries, eta, expires, root_id,
                  parent_id, queue, exchange, routing_key
    task-received uuid, name, args, kwargs (reprs), retries, eta, expires, root_id, parent_id
    task-started  uuid
    task-succeeded uuid, result (a repr of at most 1,024 characters), runtime (seconds)
    task-failed   uuid, exception (a repr), traceback
    task-retried  uuid, exception, traceback
    task-rejected uuid, requeue
    task-revoked  uuid, terminated, signum, expired

rabbitq adds a few fields Celery's readers ignore (``queue`` on task-received; ``reason`` and
``dead_letter_queue`` where a message went to a dead-letter queue; ``name`` on events of a
message that was never received), each documented in docs/events.md.

Events travel on the ``celeryev`` topic exchange, routing key = type with ``-`` as ``.``
(``worker.heartbeat``); task events from a worker go in batches, a JSON list per message
under ``task.multi``, as Celery's own workers send them. Bodies are JSON (Celery's
``event_serializer``), messages transient (``delivery_mode=1``): events are a view, never a
record anything depends on.
"""

from __future__ import annotations

import json
import os
import platform
import reprlib
import threading
import time
import traceback
from collections.abc import Mapping
from functools import cache
from typing import Any

from rabbitq.message import Envelope
from rabbitq.topology import EVENT_EXCHANGE as EVENT_EXCHANGE  # a topology name, re-exported

HEARTBEAT_INTERVAL = 2.0  # seconds, Celery's default: Flower counts a node offline after 2 missed
MULTI_ROUTING_KEY = "task.multi"  # a JSON list of task events in one message
RESULT_REPR_MAX = 1024  # Celery's resultrepr_maxsize

Event = dict[str, Any]

_result_repr = reprlib.Repr()
_result_repr.maxstring = RESULT_REPR_MAX
_result_repr.maxother = RESULT_REPR_MAX
_result_repr.maxlist = _result_repr.maxtuple = _result_repr.maxdict = 64


def routing_key_for(event_type: str) -> str:
    """``task-succeeded`` -> ``task.succeeded`` (Celery's)."""
    return event_type.replace("-", ".")


def utcoffset() -> float:
    """Hours west of UTC, as Celery's ``celery.utils.time.utcoffset`` reports them (exact:
    a half-hour zone is 5.5, as Celery 5.7 has it); readers use it to localise ``timestamp``."""
    if time.localtime().tm_isdst:
        return time.altzone / 3600
    return time.timezone / 3600


def load_average() -> tuple[float, float, float]:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # not available on this platform
        return (0.0, 0.0, 0.0)
    return (round(one, 2), round(five, 2), round(fifteen, 2))


@cache
def software_info() -> dict[str, str]:
    """``sw_ident``, ``sw_ver``, ``sw_sys`` of a worker's online and heartbeat events."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("rabbitq")
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "0"
    return {"sw_ident": "py-rabbitq", "sw_ver": ours, "sw_sys": platform.system()}


def result_repr(value: object) -> str:
    """What a task-succeeded event carries as ``result``: a bounded repr, as Celery's."""
    try:
        return _result_repr.repr(value)
    except Exception as exc:  # a __repr__ that raises must not lose the event
        return f"<unrepresentable {type(value).__name__}: {type(exc).__name__}>"


def exception_fields(error: BaseException) -> dict[str, str]:
    """``exception`` and ``traceback`` of a task-failed or task-retried event."""
    return {
        "exception": result_repr(error),
        "traceback": "".join(traceback.format_exception(error)),
    }


class LamportClock:
    """The logical clock every event carries (``clock``), as Celery's ``app.clock``: readers
    order events of one node by it."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def forward(self) -> int:
        with self._lock:
            self.value += 1
            return self.value


def event_envelope(body: Event | list[Event], hostname: str) -> Envelope:
    """One event (or a ``task.multi`` list) as a transient JSON message."""
    return Envelope(
        body=json.dumps(body, default=_jsonable).encode(),
        headers={"hostname": hostname},
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=1,  # a view of what happens, never a record to keep across restarts
    )


def decode_events(body: bytes) -> list[Event]:
    """The events in a message body (one, or a ``task.multi`` list); [] when it holds none."""
    try:
        value = json.loads(body)
    except ValueError:
        return []
    items = value if isinstance(value, list) else [value]
    return [dict(item) for item in items if isinstance(item, Mapping) and "type" in item]


def _jsonable(value: object) -> object:
    """Whatever JSON does not know (a tuple is a list already) becomes its repr."""
    return result_repr(value)
