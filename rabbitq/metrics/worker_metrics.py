"""What a worker process did, as Prometheus metrics: a middleware (``WorkerMetrics``).

Where each figure comes from::

    metric                                   hook                 labels
    rabbitq_tasks_total                      after_process        task, outcome=succeeded |
                                             after_retry            failed | retried |
                                             after_skip             revoked | skipped
    rabbitq_dead_letters_total               after_dead_letter    task, queue, reason
    rabbitq_task_runtime_seconds             after_process        task
    rabbitq_task_queue_wait_seconds          before_process       task
    rabbitq_time_limit_hits_total            after_process        task, limit=soft | hard
    rabbitq_redeliveries_total               message_received     queue
    rabbitq_tasks_in_flight                  sampled every second
    rabbitq_worker_concurrency               worker_start
    rabbitq_worker_prefetch                  worker_start         queue
    rabbitq_worker_processes                 worker_start

A run counts once in ``rabbitq_tasks_total``: ``succeeded`` or ``failed`` as it ends (a
failure is then dead-lettered, also counted in ``rabbitq_dead_letters_total``), ``retried``
once its next attempt is confirmed, ``revoked`` when it was revoked (before it started, or
terminated while it ran), ``skipped`` when a middleware skipped it. Dead letters of messages
that never ran (undecodable, unknown task, expired, redelivery limit) are counted only in
``rabbitq_dead_letters_total``; their ``task`` label is empty unless the task is registered.

Queue wait is published -> started: from the eta of a delayed message (a countdown, a
retry), else from rabbitq's ``rabbitq_sent_at`` header. A message with neither (a Celery
producer's) is left out rather than guessed. The two clocks are the producer's and the
worker's: a wait that skew makes negative counts as zero.

The in-flight gauge is sampled (each second, and as consuming stops) from the pipeline's own
count of running tasks instead of counted up and down in hooks: a run cut short by a lost
channel or abandoned at its hard limit gets no ``after_process``, and a count kept in hooks
would drift with every such run. Sampling also costs a task nothing.

Under ``--processes N`` every process writes its figures to prometheus-client's
multiprocess files and the supervisor serves their sum (``endpoint.py``): the gauges are
``livesum``, so a process that exits stops counting in them, while its counters stay.

The hot path is kept cheap: each task name's labelled series are looked up once and kept
(``_TaskSeries``), so a task costs a few dict lookups and the increments themselves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from rabbitq.errors import Terminated
from rabbitq.message import sent_at_of
from rabbitq.metrics.prometheus import prometheus_client
from rabbitq.middleware.middleware import DeadLettered, Middleware, Outcome, TaskContext
from rabbitq.middleware.revocations import REVOKED_REASON

Counter = prometheus_client.Counter
Gauge = prometheus_client.Gauge
Histogram = prometheus_client.Histogram
CollectorRegistry = prometheus_client.CollectorRegistry

SAMPLE_EVERY = 1.0  # seconds between samples of the in-flight gauge

OUTCOMES = ("succeeded", "failed", "retried", "revoked", "skipped")
LIMITS = ("soft", "hard")

# Tasks run from milliseconds to the broker's consumer timeout (30 min by default).
RUNTIME_BUCKETS = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 1800.0,
)  # fmt: skip
# A wait is a few milliseconds on an idle worker, hours behind a backlog.
QUEUE_WAIT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0, 21600.0, 86400.0,
)  # fmt: skip


class ObservedWorker(Protocol):
    """What the metrics read of the worker's consumer (``worker/consumer.py``)."""

    @property
    def active(self) -> int: ...

    concurrency: int
    prefetch: int
    queues: tuple[str, ...]


class WorkerMetricSet:
    """The worker's metrics, registered once in ``registry``."""

    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.tasks = Counter(
            "rabbitq_tasks",
            "Task runs by how they ended (succeeded, failed, retried, revoked, skipped).",
            ("task", "outcome"),
            registry=registry,
        )
        self.dead_letters = Counter(
            "rabbitq_dead_letters",
            "Messages this worker dead-lettered, by source queue and reason.",
            ("task", "queue", "reason"),
            registry=registry,
        )
        self.runtime = Histogram(
            "rabbitq_task_runtime_seconds",
            "How long each run of a task took, whatever its outcome.",
            ("task",),
            buckets=RUNTIME_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "rabbitq_task_queue_wait_seconds",
            "From publish (or the eta of a delayed message) to the start of the run.",
            ("task",),
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self.time_limit_hits = Counter(
            "rabbitq_time_limit_hits",
            "Runs that reached their soft or hard time limit.",
            ("task", "limit"),
            registry=registry,
        )
        self.redeliveries = Counter(
            "rabbitq_redeliveries",
            "Deliveries the broker marked redelivered (a worker or channel went away).",
            ("queue",),
            registry=registry,
        )
        self.in_flight = Gauge(
            "rabbitq_tasks_in_flight",
            "Tasks running now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.concurrency = Gauge(
            "rabbitq_worker_concurrency",
            "Tasks the worker's processes may run at once.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.prefetch = Gauge(
            "rabbitq_worker_prefetch",
            "Unacked deliveries the worker's processes may hold, per queue.",
            ("queue",),
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.processes = Gauge(
            "rabbitq_worker_processes",
            "Worker processes consuming.",
            registry=registry,
            multiprocess_mode="livesum",
        )


_sets: weakref.WeakKeyDictionary[prometheus_client.CollectorRegistry, WorkerMetricSet] = (
    weakref.WeakKeyDictionary()
)


def metric_set(registry: prometheus_client.CollectorRegistry | None = None) -> WorkerMetricSet:
    """The worker's metrics in ``registry`` (default: prometheus-client's), created on first
    use: a registry refuses a second metric of the same name."""
    registry = registry if registry is not None else prometheus_client.REGISTRY
    found = _sets.get(registry)
    if found is None:
        found = _sets[registry] = WorkerMetricSet(registry)
    return found


class _TaskSeries:
    """One task's labelled series, looked up once."""

    __slots__ = ("by_outcome", "hard", "queue_wait", "runtime", "soft")

    def __init__(self, metrics: WorkerMetricSet, task: str) -> None:
        self.by_outcome = {outcome: metrics.tasks.labels(task, outcome) for outcome in OUTCOMES}
        self.runtime = metrics.runtime.labels(task)
        self.queue_wait = metrics.queue_wait.labels(task)
        self.soft = metrics.time_limit_hits.labels(task, "soft")
        self.hard = metrics.time_limit_hits.labels(task, "hard")


def queue_wait(eta: dt.datetime | None, sent_at: float | None, started: float) -> float | None:
    """Seconds from when the message could first run to ``started`` (all epoch seconds): the
    later of its eta and its publish, when it has either; never negative (clock skew)."""
    since = eta.timestamp() if eta is not None else None
    if sent_at is not None and (since is None or sent_at > since):
        since = sent_at
    if since is None:
        return None
    return max(0.0, started - since)


class WorkerMetrics(Middleware):
    """Counts what this process runs into ``metrics`` (default: the worker's metrics in
    prometheus-client's default registry). ``clock`` is ``time.time``: tests pass their own."""

    def __init__(
        self,
        metrics: WorkerMetricSet | None = None,
        *,
        clock: Callable[[], float] | None = None,
        sample_every: float = SAMPLE_EVERY,
    ) -> None:
        self.metrics = metrics if metrics is not None else metric_set()
        self.clock = clock or time.time
        self.sample_every = sample_every
        self._series: dict[str, _TaskSeries] = {}
        self._redeliveries: dict[str, Any] = {}
        self._worker: ObservedWorker | None = None
        self._sampler: asyncio.TimerHandle | None = None

    def series(self, task: str) -> _TaskSeries:
        found = self._series.get(task)
        if found is None:
            found = self._series[task] = _TaskSeries(self.metrics, task)
        return found

    # -- the worker's life --------------------------------------------------------------------

    def worker_start(self, worker: ObservedWorker) -> None:
        self._worker = worker
        self.metrics.processes.set(1)
        self.metrics.concurrency.set(worker.concurrency)
        for queue in worker.queues:
            self.metrics.prefetch.labels(queue).set(worker.prefetch)
        self.sample()

    def worker_stop(self, worker: ObservedWorker) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            self._sampler = None
        self.metrics.in_flight.set(0)
        self.metrics.processes.set(0)

    def sample(self) -> None:
        """Set the in-flight gauge from the worker's count of running tasks, and look again
        in ``sample_every`` seconds."""
        if self._worker is None:
            return
        self.metrics.in_flight.set(self._worker.active)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # called outside the worker's loop (a test): once is enough
            return
        self._sampler = loop.call_later(self.sample_every, self.sample)

    # -- one delivery -------------------------------------------------------------------------

    def message_received(self, delivery: Any) -> None:
        if delivery.redelivered:
            counter = self._redeliveries.get(delivery.queue)
            if counter is None:
                counter = self._redeliveries[delivery.queue] = self.metrics.redeliveries.labels(
                    delivery.queue
                )
            counter.inc()

    def before_process(self, context: TaskContext) -> None:
        message = context.message
        wait = queue_wait(message.eta, sent_at_of(message.headers), self.clock())
        if wait is not None:
            self.series(context.task.name).queue_wait.observe(wait)

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        series = self.series(context.task.name)
        series.runtime.observe(context.runtime)
        exception = outcome.exception
        if exception is None:
            series.by_outcome["succeeded"].inc()
        elif isinstance(exception, Terminated):
            series.by_outcome["revoked"].inc()
        elif not outcome.retried:  # a retry counts once its next attempt is confirmed
            series.by_outcome["failed"].inc()
        control = context.control
        if control is not None:
            if control.soft_requested:
                series.soft.inc()
            if control.hard_requested:
                series.hard.inc()

    def after_retry(self, context: TaskContext, exception: BaseException, eta: dt.datetime) -> None:
        self.series(context.task.name).by_outcome["retried"].inc()

    def after_skip(self, context: TaskContext, reason: str) -> None:
        outcome = "revoked" if reason == REVOKED_REASON else "skipped"
        self.series(context.task.name).by_outcome[outcome].inc()

    def after_dead_letter(self, dead: DeadLettered) -> None:
        task = dead.task.name if dead.task is not None else ""
        self.metrics.dead_letters.labels(task, dead.delivery.queue, dead.reason).inc()
