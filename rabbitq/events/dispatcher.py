"""Sending events without ever holding up a task.

``send`` builds the event (the fields every event carries, then the caller's) and hands it
on; it never waits for the broker. Task events of a worker are gathered for ``BATCH_WINDOW``
seconds (or ``BATCH_LIMIT`` events, if sooner) and leave as one ``task.multi`` message
(Celery's own format for batches), so a busy worker sends a handful of messages a second
instead of three per task: each message costs the broker (and so, on a shared machine, the
tasks) far more than the event's fields cost the worker. The sink (a publisher's ``send_event``)
keeps a bounded buffer of its own: when the broker pushes back (``connection.blocked``, a
full socket) or the connection is down long enough to fill it, events are dropped, counted
here, and the worker says so in its log at most every ``DROP_LOG_EVERY`` seconds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from rabbitq.events.event import (
    MULTI_ROUTING_KEY,
    Event,
    LamportClock,
    event_envelope,
    routing_key_for,
    utcoffset,
)
from rabbitq.message import Envelope

log = logging.getLogger("rabbitq.events")

# (routing key, envelope) -> whether it was taken (False: dropped, its buffer is full): a
# publisher's ``send_event`` (``amqp/contract.py``)
Sink = Callable[[str, Envelope], bool]
BATCH_LIMIT = 200  # task events in one task.multi message at most
BATCH_WINDOW = 0.1  # seconds a task event waits for others; a monitor sees it this late


class Timer(Protocol):
    def cancel(self) -> None: ...


DROP_LOG_EVERY = 30.0  # seconds


class EventDispatcher:
    """Events of one node (``hostname``: a worker's node name, or a producer's)."""

    def __init__(
        self,
        hostname: str,
        sink: Sink,
        *,
        schedule: Callable[[Callable[[], None]], Timer] | None = None,
        clock: LamportClock | None = None,
    ) -> None:
        """``schedule(flush)`` runs ``flush`` after the batch window (the worker:
        ``loop.call_later(BATCH_WINDOW, ...)``) and returns what cancels that; without it
        every task event is a message of its own."""
        self.hostname = hostname
        self.sink = sink
        self.schedule = schedule
        self.clock = clock or LamportClock()
        self.pid = os.getpid()
        self.sent = 0  # events handed to the sink
        self.dropped = 0  # events the sink could not take
        self._utcoffset = utcoffset()
        self._batch: list[Event] = []
        self._timer: Timer | None = None
        self._last_drop_log = 0.0

    def event(self, event_type: str, fields: dict[str, Any]) -> Event:
        """``fields`` completed with what every event carries (the dict itself, for speed);
        a ``timestamp`` among them is kept (when it happened, if earlier than now)."""
        fields["type"] = event_type
        fields["hostname"] = self.hostname
        if "timestamp" not in fields:
            fields["timestamp"] = time.time()
        fields["utcoffset"] = self._utcoffset
        fields["pid"] = self.pid
        fields["clock"] = self.clock.forward()
        return fields

    def send(self, event_type: str, **fields: Any) -> None:
        """Send now, as a message of its own (worker events, a producer's task-sent), after
        the task events waiting in the batch: a reader sees them in the order they happened
        (the last task-succeeded before worker-offline)."""
        self.flush()
        self._hand_on(routing_key_for(event_type), self.event(event_type, fields), 1)

    def send_task_event(self, event_type: str, **fields: Any) -> None:
        """Send with the other task events of the batch window (one message for all)."""
        if self.schedule is None:
            self.send(event_type, **fields)
            return
        batch = self._batch
        batch.append(self.event(event_type, fields))
        if len(batch) == 1:
            self._timer = self.schedule(self.flush)
        elif len(batch) >= BATCH_LIMIT:
            self.flush()

    def flush(self) -> None:
        """Send the waiting task events now (the window's end, a full batch, shutdown)."""
        if self._timer is not None:
            self._timer.cancel()  # a no-op when it is the timer that runs this
            self._timer = None
        batch = self._batch
        if not batch:
            return
        self._batch = []
        self._utcoffset = utcoffset()  # once a batch: daylight saving may start meanwhile
        if len(batch) == 1:
            event = batch[0]
            self._hand_on(routing_key_for(event["type"]), event, 1)
        else:
            self._hand_on(MULTI_ROUTING_KEY, batch, len(batch))

    def _hand_on(self, routing_key: str, body: Event | list[Event], count: int) -> None:
        try:
            taken = self.sink(routing_key, event_envelope(body, self.hostname))
        except Exception as exc:  # an event must never fail what sent it
            log.debug("event not sent: %s: %s", type(exc).__name__, exc)
            taken = False
        if taken:
            self.sent += count
            return
        self.dropped += count
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_EVERY:
            self._last_drop_log = now
            log.warning(
                "%d event(s) dropped so far: the broker is not taking them fast enough "
                "(blocked, or the connection is down); tasks are not held up",
                self.dropped,
            )
