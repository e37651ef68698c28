"""The worker's Prometheus metrics (``metrics/worker_metrics.py``) as middleware in the
pipeline, against an in-memory broker: what each kind of run adds to which series."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from dataclasses import dataclass, field

import prometheus_client

import rabbitq
from rabbitq.errors import SoftTimeLimitExceeded
from rabbitq.message import SENT_AT_HEADER
from rabbitq.metrics.worker_metrics import WorkerMetrics, WorkerMetricSet, queue_wait
from rabbitq.middleware import WorkerStats
from rabbitq.middleware.revocations import Revocations
from rabbitq.revocations import Revocation
from rabbitq.worker.time_limits import TimeLimits
from tests.pipeline_support import Harness, harness, make_app, task_envelope

NOW = 1_700_000_000.0
released = asyncio.Event()


def metrics_app() -> rabbitq.App:
    app = make_app()

    @app.task(name="ok")
    async def ok() -> str:
        return "done"

    @app.task(name="boom")
    async def boom() -> None:
        raise ValueError("boom")

    @app.task(name="retries", bind=True, max_retries=1)
    async def retries(self: rabbitq.Task) -> None:
        raise self.retry(countdown=30)

    @app.task(name="waits")
    async def waits() -> None:
        await released.wait()

    @app.task(name="cleans_up", soft_time_limit=0.05)
    async def cleans_up() -> str:
        with contextlib.suppress(SoftTimeLimitExceeded):
            await asyncio.sleep(5)
        return "done"

    @app.task(name="stopped", time_limit=0.05)
    async def stopped() -> None:
        await asyncio.sleep(5)

    return app


@dataclass
class Measured:
    harness: Harness
    middleware: WorkerMetrics
    registry: prometheus_client.CollectorRegistry
    revocations: Revocations = field(default_factory=Revocations)

    def value(self, name: str, **labels: str) -> float:
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


def measured(app: rabbitq.App | None = None) -> Measured:
    app = app or metrics_app()
    registry = prometheus_client.CollectorRegistry()
    middleware = WorkerMetrics(WorkerMetricSet(registry), clock=lambda: NOW)
    revocations = Revocations()
    stack = app.middleware.added(TimeLimits(app.consumer_timeout), middleware, WorkerStats())
    stack = type(stack)((revocations, *stack))  # revocations first, as the worker runs them
    return Measured(harness(app, middleware=stack), middleware, registry, revocations)


async def test_a_task_that_returns_counts_as_succeeded_with_its_runtime_observed() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("ok"))
    assert m.value("rabbitq_tasks_total", task="ok", outcome="succeeded") == 1
    assert m.value("rabbitq_task_runtime_seconds_count", task="ok") == 1


async def test_a_task_that_raises_counts_as_failed_and_as_a_dead_letter_by_reason() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("boom"))
    assert m.value("rabbitq_tasks_total", task="boom", outcome="failed") == 1
    labels = {"task": "boom", "queue": "work", "reason": "task-failed"}
    assert m.value("rabbitq_dead_letters_total", **labels) == 1


async def test_a_retried_run_counts_as_retried_not_failed() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("retries"))
    assert m.value("rabbitq_tasks_total", task="retries", outcome="retried") == 1
    assert m.value("rabbitq_tasks_total", task="retries", outcome="failed") == 0


async def test_a_run_past_its_last_retry_counts_as_failed_retries_exhausted() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("retries", retries=1))
    assert m.value("rabbitq_tasks_total", task="retries", outcome="failed") == 1
    labels = {"task": "retries", "queue": "work", "reason": "retries-exhausted"}
    assert m.value("rabbitq_dead_letters_total", **labels) == 1


async def test_a_message_that_never_ran_counts_only_as_a_dead_letter_with_no_task() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("nobody.knows.me"))
    labels = {"task": "", "queue": "work", "reason": "unknown-task"}
    assert m.value("rabbitq_dead_letters_total", **labels) == 1
    assert m.value("rabbitq_tasks_total", task="nobody.knows.me", outcome="failed") == 0


async def test_a_revoked_task_counts_as_revoked_without_a_runtime() -> None:
    m = measured()
    envelope = task_envelope("ok", id="gone")
    m.revocations.apply(Revocation(("gone",), keep_until=time.time() + 60))
    await m.harness.deliver(envelope)
    assert m.value("rabbitq_tasks_total", task="ok", outcome="revoked") == 1
    assert m.value("rabbitq_task_runtime_seconds_count", task="ok") == 0


async def test_every_outcome_of_a_task_seen_once_is_a_series_from_then_on() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("ok"))
    for outcome in ("failed", "retried", "revoked", "skipped"):
        found = m.registry.get_sample_value(
            "rabbitq_tasks_total", {"task": "ok", "outcome": outcome}
        )
        assert found == 0


async def test_a_redelivered_message_counts_as_a_redelivery_of_its_queue() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("ok"), redelivered=True)
    await m.harness.deliver(task_envelope("ok"))
    assert m.value("rabbitq_redeliveries_total", queue="work") == 1


async def test_the_queue_wait_counts_from_the_sent_at_header() -> None:
    m = measured()
    sent = int((NOW - 2.5) * 1000)
    await m.harness.deliver(task_envelope("ok", headers={SENT_AT_HEADER: sent}))
    assert m.value("rabbitq_task_queue_wait_seconds_sum", task="ok") == 2.5


async def test_a_message_without_sent_at_or_eta_is_left_out_of_the_queue_wait() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("ok"))
    assert m.value("rabbitq_task_queue_wait_seconds_count", task="ok") == 0


def test_the_queue_wait_of_a_delayed_message_counts_from_its_eta() -> None:
    eta = dt.datetime.fromtimestamp(NOW - 1.0, dt.UTC)
    assert queue_wait(eta, NOW - 60.0, NOW) == 1.0


def test_the_queue_wait_of_an_eta_already_past_at_publish_counts_from_the_publish() -> None:
    eta = dt.datetime.fromtimestamp(NOW - 60.0, dt.UTC)
    assert queue_wait(eta, NOW - 3.0, NOW) == 3.0


def test_a_queue_wait_made_negative_by_clock_skew_is_zero() -> None:
    assert queue_wait(None, NOW + 5.0, NOW) == 0.0


async def test_a_run_that_passes_its_soft_limit_counts_a_soft_limit_hit() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("cleans_up"))
    assert m.value("rabbitq_time_limit_hits_total", task="cleans_up", limit="soft") == 1
    assert m.value("rabbitq_tasks_total", task="cleans_up", outcome="succeeded") == 1


async def test_a_run_stopped_at_its_hard_limit_counts_a_hard_limit_hit() -> None:
    m = measured()
    await m.harness.deliver(task_envelope("stopped"))
    assert m.value("rabbitq_time_limit_hits_total", task="stopped", limit="hard") == 1
    labels = {"task": "stopped", "queue": "work", "reason": "time-limit"}
    assert m.value("rabbitq_dead_letters_total", **labels) == 1


@dataclass
class Consuming:
    """What the metrics read of the consumer."""

    harness: Harness
    concurrency: int = 4
    prefetch: int = 16
    queues: tuple[str, ...] = ("work", "emails")

    @property
    def active(self) -> int:
        return self.harness.pipeline.running


async def test_in_flight_is_sampled_from_the_tasks_running_now() -> None:
    m = measured()
    released.clear()
    m.middleware.worker_start(Consuming(m.harness))
    running = asyncio.create_task(m.harness.deliver(task_envelope("waits")))
    while m.harness.pipeline.running == 0:
        await asyncio.sleep(0)
    m.middleware.sample()
    assert m.value("rabbitq_tasks_in_flight") == 1
    released.set()
    await running
    m.middleware.sample()
    assert m.value("rabbitq_tasks_in_flight") == 0
    m.middleware.worker_stop(Consuming(m.harness))


async def test_concurrency_and_prefetch_per_queue_are_set_as_consuming_starts() -> None:
    m = measured()
    m.middleware.worker_start(Consuming(m.harness))
    assert m.value("rabbitq_worker_concurrency") == 4
    assert m.value("rabbitq_worker_prefetch", queue="emails") == 16
    assert m.value("rabbitq_worker_processes") == 1
    m.middleware.worker_stop(Consuming(m.harness))
    assert m.value("rabbitq_worker_processes") == 0
