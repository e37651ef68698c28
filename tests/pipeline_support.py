"""An in-memory stand-in for the broker side of one worker: it records what the pipeline
publishes and acks, and can refuse publishes, so every branch runs without a broker."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import rabbitq
from rabbitq.errors import PublishError
from rabbitq.message import Envelope, TaskMessage, encode_task
from rabbitq.middleware import MiddlewareStack, WorkerStats
from rabbitq.serializers import MSGPACK
from rabbitq.worker.delivery import Delivery
from rabbitq.worker.executor import Executor
from rabbitq.worker.followups import Followups
from rabbitq.worker.pipeline import Pipeline, Recycle
from rabbitq.worker.slots import Slots

_tags = itertools.count(1)


@dataclass(eq=False)
class FakeChannel:
    is_closed: bool = False


@dataclass(frozen=True)
class Published:
    exchange: str
    routing_key: str
    envelope: Envelope


@dataclass
class InMemoryPublisher:
    published: list[Published] = field(default_factory=list)
    # Decides, per publish, whether to refuse it: return an exception to raise, or None.
    refuse: Callable[[Published], BaseException | None] = lambda _p: None
    connection: Any = None
    events: list[Published] = field(default_factory=list)  # send_event: never confirmed

    def send_event(self, routing_key: str, envelope: Envelope) -> bool:
        self.events.append(Published("celeryev", routing_key, envelope))
        return True

    async def connect(self) -> None:
        return None

    async def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = "rabbitq",
        timeout: float | None = None,
    ) -> None:
        item = Published(exchange, routing_key, envelope)
        error = self.refuse(item)
        if error is not None:
            raise error
        self.published.append(item)

    async def publish_batch(
        self, items: Sequence[tuple[str, str, Envelope]], *, timeout: float | None = None
    ) -> list[PublishError | None]:
        """One outcome per item, as the contract says (``amqp/contract.py``); a refusal that
        is not a ``PublishError`` stands for "cannot publish at all" and is raised."""
        outcomes: list[PublishError | None] = []
        for exchange, routing_key, envelope in items:
            try:
                await self.publish(routing_key, envelope, exchange=exchange)
                outcomes.append(None)
            except PublishError as exc:
                outcomes.append(exc)
        return outcomes

    def to(self, routing_key: str) -> list[Published]:
        return [p for p in self.published if p.routing_key == routing_key]


@dataclass
class RecordingAcks:
    acked: list[int] = field(default_factory=list)
    nacked: list[int] = field(default_factory=list)

    def ack(self, delivery: Delivery) -> None:
        self.acked.append(delivery.tag)


def delivery_of(
    envelope: Envelope,
    *,
    queue: str = "work",
    redelivered: bool = False,
    channel: FakeChannel | None = None,
) -> Delivery:
    return Delivery(
        queue=queue,
        channel=channel or FakeChannel(),  # type: ignore[arg-type]
        tag=next(_tags),
        envelope=envelope,
        exchange="rabbitq",
        routing_key=queue,
        redelivered=redelivered,
    )


def task_envelope(task: str, *args: Any, **fields: Any) -> Envelope:
    return encode_task(TaskMessage(task=task, args=list(args), **fields), MSGPACK)


@dataclass
class Harness:
    app: rabbitq.App
    publisher: InMemoryPublisher
    acks: RecordingAcks
    pipeline: Pipeline
    stats: WorkerStats
    stopping: bool = False

    async def deliver(self, envelope: Envelope, **how: Any) -> Delivery:
        delivery = delivery_of(envelope, **how)
        await self.pipeline.handle(delivery)
        return delivery

    def dead(self, queue: str = "work") -> list[Published]:
        return self.publisher.to(f"{queue}.dead")

    def pipeline_backoff(self, seconds: float) -> None:
        """Send unconfirmed successors again after ``seconds`` (tests need not wait)."""
        self.pipeline.settle_backoff_first = seconds


def harness(
    app: rabbitq.App,
    publisher: InMemoryPublisher | None = None,
    middleware: MiddlewareStack | None = None,
    recycle: Recycle | None = None,
) -> Harness:
    """``middleware``: instead of the app's own (with the worker's counters after it);
    ``recycle``: what the pipeline calls when it gives up a stuck run."""
    publisher = publisher or InMemoryPublisher()
    acks = RecordingAcks()
    stats = WorkerStats()
    app._declare_once._delay_levels = True  # the worker declared them at start
    holder: dict[str, Harness] = {}
    pipeline = Pipeline(
        app,
        middleware if middleware is not None else app.middleware.added(stats),
        publisher,
        acks,
        Executor(4),
        Followups(app, publisher),  # type: ignore[arg-type]
        slots=Slots(4),
        worker_name="test@host",
        stopping=lambda: holder["h"].stopping,
        recycle=recycle,
    )
    holder["h"] = Harness(app, publisher, acks, pipeline, stats)
    return holder["h"]


def make_app(**options: Any) -> rabbitq.App:
    return rabbitq.App(
        "pipeline", broker="amqp://guest:guest@127.0.0.1:1/", declare_queues_on_publish=False,
        **options,
    )  # fmt: skip
