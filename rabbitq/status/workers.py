"""Workers known from their events: the newest ``worker-*`` event of each node. Pure.

A node is online from its ``worker-online`` or a heartbeat until its ``worker-offline``, or
until it misses two heartbeats (Flower's rule); a node gone quiet is forgotten after
``FORGET_AFTER`` seconds, so a status screen does not fill with every process that ever ran.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

from rabbitq.status.snapshot import DeclaredLimit, WorkerFigures

FORGET_AFTER = 300.0  # seconds after its last event
DEFAULT_FREQ = 2.0  # Celery's (and rabbitq's) heartbeat interval; also for events without ``freq``


class WorkerTable:
    def __init__(self) -> None:
        self._newest: dict[str, tuple[float, Mapping[str, Any]]] = {}  # node -> (heard, event)

    def take(self, event: Mapping[str, Any], heard_at: float) -> None:
        """Take one event (non-worker events are ignored)."""
        kind = str(event.get("type", ""))
        hostname = event.get("hostname")
        if not kind.startswith("worker-") or not isinstance(hostname, str):
            return
        self._newest[hostname] = (heard_at, event)

    def figures(self, now: float) -> tuple[WorkerFigures, ...]:
        for hostname, (heard, _event) in list(self._newest.items()):
            if now - heard > FORGET_AFTER:
                del self._newest[hostname]
        return tuple(
            _figures(hostname, heard, event, now)
            for hostname, (heard, event) in sorted(self._newest.items())
        )


def _figures(hostname: str, heard: float, event: Mapping[str, Any], now: float) -> WorkerFigures:
    freq = event.get("freq")
    interval = float(freq) if _finite(freq) and 0 < freq < 3600 else DEFAULT_FREQ
    # Two missed heartbeats, plus a second for the trip, as Flower counts a node offline.
    online = event.get("type") != "worker-offline" and now - heard <= 2 * interval + 1
    # Anyone may publish on celeryev: a field of the wrong type is left out, never raised.
    loadavg = _sequence(event.get("loadavg"))
    queues = _sequence(event.get("rabbitq_queues"))
    return WorkerFigures(
        hostname=hostname,
        pid=_int_or_none(event.get("pid")),
        concurrency=_int_or_none(event.get("rabbitq_concurrency")),
        active=_int_or_none(event.get("active")) or 0,
        processed=_int_or_none(event.get("processed")) or 0,
        loadavg=tuple(float(x) for x in loadavg if _finite(x)),
        software=f"{event.get('sw_ident', '')} {event.get('sw_ver', '')}".strip(),
        last_seen=heard,
        online=online,
        queues=tuple(str(queue) for queue in queues if isinstance(queue, str)),
        chords_in_flight=_int_or_none(event.get("rabbitq_chords")),
        limits=tuple(_limits(event.get("rabbitq_limits"))),
    )


def _limits(value: Any) -> Iterator[DeclaredLimit]:
    for item in _sequence(value):
        if not isinstance(item, Mapping):
            continue
        name, kind, rate = item.get("name"), item.get("kind"), item.get("rate")
        if isinstance(name, str) and kind in ("rate", "concurrency", "mutex"):
            yield DeclaredLimit(
                name=name,
                kind=str(kind),
                rate=rate if isinstance(rate, str) else None,
                burst=_int_or_none(item.get("burst")),
                n=_int_or_none(item.get("n")),
            )


def _sequence(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, list | tuple) else ()


def _finite(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_or_none(value: Any) -> int | None:
    return int(value) if _finite(value) else None
