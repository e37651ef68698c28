"""Fill a ``status.snapshot.Snapshot`` from the broker: the management API, the workers'
heartbeats, the newest-dead-letter records and the beat's queues (pika, blocking).

``StatusCollector`` listens to ``worker.#`` on ``celeryev`` from its creation, in a thread of
its own, through an exclusive auto-delete queue (``rabbitq.status.<random>``, gone with its
connection). The first ``collect()`` waits until one heartbeat interval (plus a margin) has
been heard, so every live worker is in it; later calls return at once. It is thread-safe: the
dashboard and the exporter call it from their request threads.

What cannot be read is not an exception but a line in ``Snapshot.problems``, so a status
screen still shows what it could read when the management plugin is off or the broker is down.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel

from rabbitq.amqp.beat_link import read_status
from rabbitq.amqp.management import management_client, vhost_of
from rabbitq.amqp.pika_support import CONNECTION_ERRORS, QUICK_STACK_TIMEOUT, open_quickly
from rabbitq.beat.schedules import format_time
from rabbitq.chords import CHORD_DEAD_QUEUE, CHORD_QUEUE
from rabbitq.errors import BrokerConnectionError, RabbitqError
from rabbitq.limits.names import RETURNED_QUEUE
from rabbitq.redaction import without_password
from rabbitq.status.classify import delay_levels, queue_figures, source_of
from rabbitq.status.limits import limit_figures
from rabbitq.status.newest import decode_newest, newest_queue_name
from rabbitq.status.snapshot import (
    BeatFigures,
    BeatTick,
    ChordFigures,
    DeadQueueFigures,
    NewestDeadLetter,
    QueueFigures,
    Snapshot,
    WorkerFigures,
    now_iso,
)
from rabbitq.status.workers import DEFAULT_FREQ, WorkerTable
from rabbitq.topology import EVENT_EXCHANGE

log = logging.getLogger("rabbitq.status")

LISTEN_FIRST = DEFAULT_FREQ + 0.5  # seconds: every live worker beats once in this time
RECONNECT_PAUSE = 2.0
NOT_HEARD = "worker events not heard: "
# Seconds ``hear_workers`` waits at most: pika's quick handshake limit (``pika_support``),
# then one heartbeat interval of listening.
HEAR_WITHIN = QUICK_STACK_TIMEOUT + LISTEN_FIRST + 1.0
PEEK_AT_MOST = 4


class HeartbeatWatcher:
    """Worker events, heard in a daemon thread, kept in a ``WorkerTable``."""

    def __init__(self, broker_url: str) -> None:
        self._url = broker_url
        self._table = WorkerTable()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.problem: str | None = None
        # When the listener began to hear events on its current connection; None while it
        # has none (not yet, or lost).
        self.listening_since: float | None = None
        self._thread = threading.Thread(target=self._run, name="rabbitq-status", daemon=True)
        self._thread.start()

    def workers(self) -> tuple[WorkerFigures, ...]:
        with self._lock:
            return self._table.figures(time.time())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except (*CONNECTION_ERRORS, BrokerConnectionError) as exc:
                self.problem = f"{NOT_HEARD}{exc}"
                log.debug("status listener: %s", self.problem)
                self._stop.wait(RECONNECT_PAUSE)
            except Exception as exc:  # the listener must outlive anything: reconnect
                self.problem = f"{NOT_HEARD}{exc!r}"
                log.exception("status listener failed; listening again")
                self._stop.wait(RECONNECT_PAUSE)

    def _listen(self) -> None:
        connection = open_quickly(self._url, "hearing worker events")
        try:
            channel = connection.channel()
            channel.exchange_declare(EVENT_EXCHANGE, "topic", durable=True)
            queue = f"rabbitq.status.{uuid.uuid4().hex[:12]}"
            channel.queue_declare(queue, exclusive=True, auto_delete=True)
            channel.queue_bind(queue, EVENT_EXCHANGE, routing_key="worker.#")
            channel.basic_consume(queue, self._on_event, auto_ack=True)
            self.problem = None
            self.listening_since = time.monotonic()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.5)
        finally:
            self.listening_since = None
            with contextlib.suppress(*CONNECTION_ERRORS):
                connection.close()

    def _on_event(self, _channel: Any, _method: Any, _properties: Any, body: bytes) -> None:
        try:
            decoded = json.loads(body)
        except ValueError:
            return  # not an event of Celery's kind: nothing to show
        events = decoded if isinstance(decoded, list) else [decoded]
        with self._lock:
            for event in events:
                if isinstance(event, dict):
                    self._table.take(event, time.time())


def hear_workers(
    broker_url: str, *, within: float = HEAR_WITHIN
) -> tuple[str | None, tuple[WorkerFigures, ...]]:
    """The workers heard in one heartbeat interval (plus a margin) of listening, for
    ``status --check``: ``(None, workers)``, or ``(why, ())`` when the broker could not be
    listened to. The first failed connection is the answer: a probe is not kept waiting
    while the broker is down. ``within`` bounds the whole wait, connecting included."""
    watcher = HeartbeatWatcher(broker_url)
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            since = watcher.listening_since
            if since is not None and time.monotonic() - since >= LISTEN_FIRST:
                return None, watcher.workers()
            if since is None and watcher.problem is not None:
                return watcher.problem.removeprefix(NOT_HEARD), ()
            time.sleep(0.05)
        problem = (watcher.problem or "").removeprefix(NOT_HEARD)
        return problem or f"no connection to the broker within {within:g}s", ()
    finally:
        watcher.close()


class StatusCollector:
    def __init__(
        self, broker_url: str, management_url: str | None = None, *, beat_group: str = ""
    ) -> None:
        self.broker_url = broker_url
        self.management = management_client(broker_url, management_url)
        self.vhost = vhost_of(broker_url)
        self.beat_group = beat_group
        self._watcher = HeartbeatWatcher(broker_url)
        self._lock = threading.Lock()

    def collect(self) -> Snapshot:
        waited = time.monotonic() - self._watcher.started
        if waited < LISTEN_FIRST:
            time.sleep(LISTEN_FIRST - waited)
        with self._lock:
            return self._collect()

    def close(self) -> None:
        self._watcher.close()

    def __enter__(self) -> StatusCollector:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _collect(self) -> Snapshot:
        problems: list[str] = []
        version = ""
        queues: tuple[QueueFigures, ...] = ()
        newest_queues: set[str] = set()
        try:
            version = str(self.management.get("/api/overview").get("rabbitmq_version", ""))
            listed = self.management.queues(self.vhost)
            newest_queues = {str(queue.get("name")) for queue in listed}
            queues = queue_figures(listed)
        except RabbitqError as exc:
            problems.append(f"{exc} (queue figures need the rabbitmq_management plugin)")
        workers = self._watcher.workers()
        if self._watcher.problem:
            problems.append(self._watcher.problem)
        dead_queues = self._dead_queues(queues, newest_queues, problems)
        return Snapshot(
            taken_at=now_iso(),
            broker=without_password(self.broker_url),
            broker_version=version,
            queues=queues,
            workers=workers,
            dead_queues=dead_queues,
            delay_levels=delay_levels(queues),
            chords=_chords(queues, workers),
            beat=self._beat(problems),
            limits=limit_figures(queues, workers),
            limits_returned=sum(q.messages for q in queues if q.name == RETURNED_QUEUE),
            problems=tuple(problems),
        )

    def _dead_queues(
        self, queues: tuple[QueueFigures, ...], existing: set[str], problems: list[str]
    ) -> tuple[DeadQueueFigures, ...]:
        dead = [queue for queue in queues if queue.role == "dead"]
        # An empty dead queue has no newest dead letter, whatever its record says (it was
        # replayed or purged since).
        with_records = [
            q.name for q in dead if q.messages and newest_queue_name(q.name) in existing
        ]
        try:
            newest = _read_newest(self.broker_url, with_records) if with_records else {}
        except (*CONNECTION_ERRORS, BrokerConnectionError) as exc:
            problems.append(f"newest dead letters not read: {exc or type(exc).__name__}")
            newest = {}
        return tuple(
            DeadQueueFigures(q.name, source_of(q.name), q.messages, newest.get(q.name))
            for q in dead
        )

    def _beat(self, problems: list[str]) -> BeatFigures | None:
        try:
            found = read_status(self.broker_url, self.beat_group)
        except (RabbitqError, *CONNECTION_ERRORS) as exc:
            problems.append(f"beat status not read: {exc}")
            return None
        state = found.state
        if state is None and not found.led:
            return None  # no beat has ever run in this group
        ticks: tuple[BeatTick, ...] = ()
        if state is not None:
            ticks = tuple(
                BeatTick(
                    entry=name,
                    schedule=record.schedule,
                    last=format_time(record.last),
                    next=format_time(record.next) if record.next else None,
                )
                for name, record in sorted(state.entries.items())
            )
        return BeatFigures(
            group=self.beat_group,
            led=found.led,
            leader=(state.leader or None) if state is not None and found.led else None,
            leader_since=_time(state.leader_since) if state is not None else None,
            state_written=_time(state.written_at) if state is not None else None,
            ticks=ticks,
        )


def _read_newest(url: str, dead_queues: list[str]) -> dict[str, NewestDeadLetter]:
    """Each dead queue's newest record: taken and handed back (classic queues count nothing)."""
    connection = open_quickly(url, "reading the newest dead letters")
    try:
        channel = connection.channel()
        found: dict[str, NewestDeadLetter] = {}
        for dead_queue in dead_queues:
            try:
                record = _peek(channel, newest_queue_name(dead_queue))
            except pika.exceptions.ChannelClosedByBroker:
                # Deleted since the listing (404): this one has no record; the others may.
                channel = connection.channel()
                continue
            if record is not None:
                found[dead_queue] = record
        return found
    finally:
        with contextlib.suppress(*CONNECTION_ERRORS):
            connection.close()  # what was taken goes back


def _peek(channel: BlockingChannel, queue: str) -> NewestDeadLetter | None:
    # Usually one record. A record written while another reader holds the old one can leave
    # two for a moment (a held message does not count toward x-max-length): keep the newer.
    records: list[NewestDeadLetter] = []
    taken = 0
    for _ in range(PEEK_AT_MOST):
        method, _properties, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            break
        taken = method.delivery_tag
        record = decode_newest(body)
        if record is not None:
            records.append(record)
    if taken:
        channel.basic_nack(taken, multiple=True, requeue=True)
    return max(records, key=lambda record: record.dead_at, default=None)


def _chords(queues: tuple[QueueFigures, ...], workers: tuple[WorkerFigures, ...]) -> ChordFigures:
    by_name = {queue.name: queue for queue in queues}
    chords = by_name.get(CHORD_QUEUE)
    dead = by_name.get(CHORD_DEAD_QUEUE)
    reporting = [w for w in workers if w.online and w.chords_in_flight is not None]
    # Only the chord queue's active consumer tallies; every other process reports 0.
    coordinator = next((w.hostname for w in reporting if w.chords_in_flight), None)
    return ChordFigures(
        parts_waiting=chords.ready if chords else 0,
        parts_held=chords.unacked if chords else 0,
        in_flight=sum(w.chords_in_flight or 0 for w in reporting) if reporting else None,
        coordinator=coordinator,
        dead=dead.messages if dead else 0,
    )


def _time(moment: Any) -> str | None:
    return format_time(moment) if moment is not None else None
