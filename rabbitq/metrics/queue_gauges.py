"""The system's queue-level figures as Prometheus gauges, from one place.

``QueueGauges`` is a prometheus-client collector: each scrape asks its ``snapshot`` callable
for a fresh ``rabbitq.status.snapshot.Snapshot`` (``amqp/status_collector.py`` reads it from
the broker and its management API) and turns it into gauges. Queue depth is the broker's
figure, the same whoever asks, so one process serves it: ``rabbitq exporter``, or the
dashboard, which mounts the same collector at its own ``/metrics``::

    registry = prometheus_client.CollectorRegistry()
    registry.register(QueueGauges(collector.collect))

Workers never serve these (N workers would report the same depth N times).

A snapshot that cannot be taken is no scrape error: the collector says so with
``rabbitq_status_up 0`` (and logs why), as Prometheus' exporters do, so an alert can tell
"the broker is unreachable" from "the exporter is down". Scrapes are taken one at a time:
two Prometheus servers scraping at once do not double the load on the management API, and
the snapshot callable need not be thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rabbitq.metrics.prometheus import prometheus_client
from rabbitq.status.snapshot import Snapshot

GaugeMetricFamily = prometheus_client.core.GaugeMetricFamily
CounterMetricFamily = prometheus_client.core.CounterMetricFamily

log = logging.getLogger("rabbitq.metrics")

QUEUE_LABELS = ("queue", "role", "type")


class QueueGauges(prometheus_client.registry.Collector):
    """Gauges of the snapshot ``snapshot()`` returns, taken at every scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self.snapshot = snapshot
        self._lock = threading.Lock()

    def describe(self) -> list[Any]:
        # Describing would mean taking a snapshot at registration: say nothing instead (the
        # registry then checks names at the first collect only).
        return []

    def collect(self) -> Iterator[Any]:
        with self._lock:
            started = time.perf_counter()
            try:
                snapshot = self.snapshot()
            except Exception as exc:
                log.warning("could not take a status snapshot for /metrics: %s", exc)
                snapshot = None
            took = time.perf_counter() - started
        up = GaugeMetricFamily(
            "rabbitq_status_up", "1 if the broker's figures could be read at this scrape."
        )
        up.add_metric([], 0.0 if snapshot is None else 1.0)
        yield up
        duration = GaugeMetricFamily(
            "rabbitq_status_scrape_seconds", "How long reading the broker's figures took."
        )
        duration.add_metric([], took)
        yield duration
        if snapshot is not None:
            yield from families(snapshot)


def families(snapshot: Snapshot) -> Iterator[Any]:
    """The metric families of one snapshot (pure: what a scrape shows of it)."""
    yield from _queues(snapshot)
    yield from _dead_queues(snapshot)
    yield from _delay_levels(snapshot)
    yield from _workers(snapshot)
    yield from _chords(snapshot)
    yield from _limits(snapshot)
    yield from _beat(snapshot)
    problems = GaugeMetricFamily(
        "rabbitq_status_problems", "Parts of the status that could not be read at this scrape."
    )
    problems.add_metric([], len(snapshot.problems))
    yield problems


def _queues(snapshot: Snapshot) -> Iterator[Any]:
    figures = {
        "messages": ("rabbitq_queue_messages", "Messages in the queue (ready and unacked)."),
        "ready": ("rabbitq_queue_messages_ready", "Messages ready for delivery."),
        "unacked": ("rabbitq_queue_messages_unacked", "Messages delivered, not yet acked."),
        "consumers": ("rabbitq_queue_consumers", "Consumers of the queue."),
        "publish_rate": (
            "rabbitq_queue_publish_rate",
            "Messages published to the queue per second (the management API's recent rate).",
        ),
        "deliver_rate": (
            "rabbitq_queue_deliver_rate",
            "Messages delivered from the queue per second (the management API's recent rate).",
        ),
    }
    for attribute, (name, documentation) in figures.items():
        family = GaugeMetricFamily(name, documentation, labels=QUEUE_LABELS)
        for queue in snapshot.queues:
            family.add_metric([queue.name, queue.role, queue.type], getattr(queue, attribute))
        yield family


def _dead_queues(snapshot: Snapshot) -> Iterator[Any]:
    family = GaugeMetricFamily(
        "rabbitq_dead_letter_messages",
        "Messages in a dead-letter queue, by dead queue and the queue it serves.",
        labels=("queue", "source"),
    )
    for dead in snapshot.dead_queues:
        family.add_metric([dead.name, dead.source], dead.messages)
    yield family


def _delay_levels(snapshot: Snapshot) -> Iterator[Any]:
    family = GaugeMetricFamily(
        "rabbitq_delay_level_messages",
        "Messages waiting in a delay level (each waits wait_seconds there).",
        labels=("level", "wait_seconds"),
    )
    for level in snapshot.delay_levels:
        family.add_metric([str(level.level), f"{level.wait_ms / 1000:g}"], level.messages)
    yield family


def _workers(snapshot: Snapshot) -> Iterator[Any]:
    online = GaugeMetricFamily(
        "rabbitq_workers_online", "Worker nodes heard from within two heartbeat intervals."
    )
    online.add_metric([], sum(1 for worker in snapshot.workers if worker.online))
    yield online
    node = GaugeMetricFamily(
        "rabbitq_worker_online",
        "1 while a worker node's heartbeats arrive, 0 once it went quiet or offline.",
        labels=("hostname", "software"),
    )
    active = GaugeMetricFamily(
        "rabbitq_worker_active", "Tasks a worker node runs, by its heartbeat.", labels=("hostname",)
    )
    processed = CounterMetricFamily(
        "rabbitq_worker_processed",
        "Tasks a worker node has started since it began, by its heartbeat.",
        labels=("hostname",),
    )
    last_seen = GaugeMetricFamily(
        "rabbitq_worker_last_seen_timestamp_seconds",
        "When the newest event from a worker node was heard (epoch seconds).",
        labels=("hostname",),
    )
    for worker in snapshot.workers:
        node.add_metric([worker.hostname, worker.software], 1.0 if worker.online else 0.0)
        active.add_metric([worker.hostname], worker.active)
        processed.add_metric([worker.hostname], worker.processed)
        last_seen.add_metric([worker.hostname], worker.last_seen)
    yield from (node, active, processed, last_seen)


def _chords(snapshot: Snapshot) -> Iterator[Any]:
    chords = snapshot.chords
    if chords is None:
        return
    figures: list[tuple[str, str, float | None]] = [
        ("rabbitq_chord_parts_waiting", "Chord parts not yet taken by the coordinator.",
         chords.parts_waiting),
        ("rabbitq_chord_parts_held", "Chord parts the coordinator holds for incomplete chords.",
         chords.parts_held),
        ("rabbitq_chords_in_flight", "Chords the coordinator tallies.", chords.in_flight),
        ("rabbitq_chords_dead", "Chords in rabbitq.chords.dead.", chords.dead),
    ]  # fmt: skip
    for name, documentation, value in figures:
        if value is not None:  # in flight: unknown while no coordinator is heard from
            yield GaugeMetricFamily(name, documentation, value=value)


def _limits(snapshot: Snapshot) -> Iterator[Any]:
    if not snapshot.limits:
        return
    labels = ("limit", "kind")
    tokens = GaugeMetricFamily(
        "rabbitq_limit_tokens", "Tokens ready in a rate limit's bucket.", labels=labels
    )
    running = GaugeMetricFamily(
        "rabbitq_limit_running",
        "Slots held: tasks running under a concurrency or mutex limit.",
        labels=labels,
    )
    waiting = GaugeMetricFamily(
        "rabbitq_limit_waiting",
        "Tasks in a limit's waiting queues, not yet taken by a worker.",
        labels=labels,
    )
    for limit in snapshot.limits:
        label = [limit.name, limit.kind]
        if limit.tokens is not None:
            tokens.add_metric(label, limit.tokens)
        running.add_metric(label, limit.holders)
        waiting.add_metric(label, limit.waiting)
    yield from (tokens, running, waiting)


def _beat(snapshot: Snapshot) -> Iterator[Any]:
    beat = snapshot.beat
    if beat is None:
        return
    led = GaugeMetricFamily(
        "rabbitq_beat_led", "1 while a beat holds the group's lease.", labels=("group",)
    )
    led.add_metric([beat.group], 1.0 if beat.led else 0.0)
    yield led
