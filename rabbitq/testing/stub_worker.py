"""A worker on the in-memory broker: the real pipeline, in a thread, drained with ``join()``.

What runs is what runs in ``rabbitq worker``: ``worker/pipeline.py`` with the app's
middleware and the worker's time limits, the same executor (threads for plain functions, the
loop for ``async def``), the same follow-ups (results, chains, errbacks) and the same chord
coordinator. Only the transport differs: deliveries come from a ``StubBroker`` and acks go
back to it. The pipeline reads the stub's virtual clock, so ``join()`` can jump over a
countdown or a retry's backoff instead of sleeping through it.

Left out, because the stub does not model them: global limits and ``rate_limit`` (tasks
run without them, with a warning), remote control, revokes, heartbeats and task events
(events sent by the app's own middleware are kept in ``StubBroker.events``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, cast

from rabbitq.app import App
from rabbitq.broker_urls import is_in_memory
from rabbitq.chords import CHORD_QUEUE
from rabbitq.errors import ConfigurationError, RabbitqError
from rabbitq.limits.resolve import task_limits
from rabbitq.middleware import MiddlewareStack, WorkerStats
from rabbitq.request import current_request
from rabbitq.testing.stub_broker import StubBroker, StubMessage, stub_for
from rabbitq.testing.stub_publishers import AsyncStubPublisher
from rabbitq.worker.coordinator import ChordCoordinator
from rabbitq.worker.delivery import Delivery
from rabbitq.worker.executor import Executor
from rabbitq.worker.followups import Followups
from rabbitq.worker.pipeline import Pipeline
from rabbitq.worker.slots import Slots
from rabbitq.worker.time_limits import TimeLimits

log = logging.getLogger("rabbitq.testing")

IDLE_POLL = 0.05  # seconds between looks when nothing arrived (delays due on real time)
JOIN_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DEFECT_PAUSE = 0.5  # seconds before a message the pipeline could not settle goes back


class StubChannel:
    """What a delivery's ``channel`` tells the pipeline: whether the broker took it back."""

    def __init__(self) -> None:
        self.is_closed = False


class StubAcks:
    """The pipeline's ``Acker``: an ack goes straight to the stub."""

    def __init__(self, broker: StubBroker, held: set[int]) -> None:
        self.broker = broker
        self.held = held

    def ack(self, delivery: Delivery) -> None:
        self.held.discard(delivery.tag)
        self.broker.ack(delivery.tag)


class StubChordPart:
    """A message of ``rabbitq.chords`` as the coordinator reads an aio-pika one."""

    def __init__(self, message: StubMessage, acks: StubAcks) -> None:
        envelope = message.envelope
        self.body = envelope.body
        self.headers = envelope.headers
        self.content_type = envelope.content_type
        self.content_encoding = envelope.content_encoding
        self.message_id = envelope.message_id
        self.correlation_id = envelope.correlation_id
        self.reply_to = envelope.reply_to
        self.priority = envelope.priority
        self.delivery_mode = envelope.delivery_mode
        self.redelivered = message.redelivered
        self._tag = message.tag
        self._acks = acks

    async def ack(self) -> None:
        self._acks.held.discard(self._tag)
        self._acks.broker.ack(self._tag)


class StubWorker:
    """``with StubWorker(app) as worker: add.delay(1, 2); worker.join()``.

    ``queues``: the task queues to consume (None: every task queue the broker knows, now and
    as they are declared). ``concurrency``: tasks running at once. ``coordinate_chords``:
    also be the chord coordinator (one worker per broker should be).
    """

    def __init__(
        self,
        app: App,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 4,
        coordinate_chords: bool = True,
        name: str = "stub@localhost",
    ) -> None:
        if not is_in_memory(app.broker_url):
            raise ConfigurationError(
                f"StubWorker runs on the in-memory broker (App(broker='memory://...')), not "
                f"on {app.broker_url.split('@')[-1]!r}; on RabbitMQ use rabbitq.testing.Worker"
            )
        if concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        self.app = app
        limited = sorted(task_limits(app.tasks, app.topology.limits))
        if limited:
            # The slots and buckets are RabbitMQ queues the stub does not model.
            log.warning(
                "the stub worker runs %s without their limits (docs/testing.md)",
                ", ".join(limited),
            )
        self.broker = stub_for(app.broker_url)
        self.queues = tuple(queues) if queues is not None else None
        for queue in self.queues or ():
            self.broker.declare(app.topology.queue(queue))
        self.concurrency = concurrency
        self.coordinate_chords = coordinate_chords
        self.name = name
        self.stats = WorkerStats()
        self.failures: list[BaseException] = []  # what the pipeline itself raised (a defect)
        self._held: set[int] = set()  # tags delivered to this worker and not acked yet
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None
        self._channel = StubChannel()

    def __enter__(self) -> StubWorker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> StubWorker:
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name=f"rabbitq-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(STOP_TIMEOUT):
            raise RabbitqError("the stub worker did not start")
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Let what runs finish (up to ``timeout``); anything still unacked goes back to the
        broker, redelivered, as when a real worker's channel closes."""
        if self._thread is None or self._loop is None:
            return
        self._stopping = True
        self.broker.wake()
        self._thread.join(timeout)
        self._thread = None

    @property
    def in_thread(self) -> bool:
        """True in this worker's own thread or inside any running task (its threads carry
        the task's request), where ``join`` would wait for itself."""
        if current_request.get() is not None:
            return True
        return self._thread is not None and threading.current_thread() is self._thread

    def join(self, timeout: float = JOIN_TIMEOUT, *, advance_clock: bool = True) -> None:
        """Return once every queue this worker consumes is empty and nothing is running.

        With ``advance_clock`` the broker's clock jumps to each delayed message whenever
        nothing else is left, so countdowns and retry backoffs take no real time (in order);
        without, delayed messages wait for ``StubBroker.advance``. Raises ``TimeoutError``
        (saying what is left) after ``timeout`` real seconds, and re-raises the first error
        the pipeline itself raised, if any.
        """
        if self.in_thread:
            raise RabbitqError("join() from inside a task of the same worker would never return")
        if self._thread is None:
            raise RabbitqError("the stub worker is not started (use `with StubWorker(app):`)")
        deadline = time.monotonic() + timeout
        while True:
            self._raise_failure()
            if self._in_flight == 0 and not any(self.broker.ready_counts(self._queues()).values()):
                # Unacked: a message another stub worker runs (or this one has just taken).
                # The chord coordinator's held parts and ledger do not count: with nothing
                # running, ready or delayed, no part can still come.
                settled = self.broker.unacked(besides=CHORD_QUEUE) == 0
                if settled and (self.broker.delayed() == 0 or not advance_clock):
                    return
                if advance_clock and self.broker.advance_to_next_due():
                    continue
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"stub worker not idle after {timeout}s: {self._in_flight} running, "
                    f"{len(self._held)} unacked, {self.broker.delayed()} delayed, ready: "
                    f"{self.broker.ready_counts(self._queues())}"
                )
            self.broker.wait(0.01)

    def _raise_failure(self) -> None:
        if self.failures:
            failure = self.failures.pop(0)
            raise RabbitqError(f"the stub worker's pipeline failed: {failure!r}") from failure

    def _queues(self) -> list[str]:
        queues = list(self.queues) if self.queues is not None else self.broker.task_queues()
        if self.coordinate_chords:
            queues.append(CHORD_QUEUE)
        return queues

    # -- the worker's thread ----------------------------------------------------------------

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        publisher = AsyncStubPublisher(self.broker)
        # The tasks' own publishes (adelay inside a task) go out through the same stub.
        self.app.use_async_publisher(publisher)
        executor = Executor(self.concurrency)
        followups = Followups(self.app, publisher)
        acks = StubAcks(self.broker, self._held)
        middleware = MiddlewareStack(
            (*self.app.middleware, TimeLimits(self.app.consumer_timeout), self.stats)
        )
        pipeline = Pipeline(
            self.app,
            middleware,
            publisher,
            acks,
            executor,
            followups,
            slots=Slots(self.concurrency),
            worker_name=self.name,
            stopping=lambda: self._stopping,
            recycle=self._cannot_recycle,
            clock=self.broker.now,
        )
        coordinator = None
        if self.coordinate_chords:
            coordinator = ChordCoordinator(
                self.app,
                None,
                publisher,
                followups,
                fold_after=self.app.chord_fold_after,
                fold_parts=self.app.chord_fold_parts,
            )
            coordinator.begin_ticking()
        pending: set[asyncio.Task[None]] = set()
        await middleware.emit("worker_start", self)
        self._ready.set()
        try:
            while not self._stopping:
                message = None
                if len(pending) < self.concurrency * 4:  # the prefetch of a real worker
                    message = self.broker.get(self._queues())
                if message is None:
                    await asyncio.to_thread(self.broker.wait, IDLE_POLL)
                    continue
                self._held.add(message.tag)
                self._in_flight += 1
                if message.queue == CHORD_QUEUE and coordinator is not None:
                    part = cast(Any, StubChordPart(message, acks))
                    job = asyncio.create_task(self._settle(coordinator.receive(part)))
                else:
                    delivery = self._delivery(message)
                    job = asyncio.create_task(self._handle(pipeline, delivery))
                pending.add(job)
                job.add_done_callback(pending.discard)
            if pending:
                await asyncio.wait(pending, timeout=STOP_TIMEOUT)
            if coordinator is not None:
                await coordinator.stop()
        finally:
            self._channel.is_closed = True
            for tag in list(self._held):
                self.broker.give_back(tag)
            self._held.clear()
            executor.shutdown()
            await middleware.emit("worker_stop", self)

    def _delivery(self, message: StubMessage) -> Delivery:
        return Delivery(
            queue=message.queue,
            channel=cast(Any, self._channel),
            tag=message.tag,
            envelope=message.envelope,
            exchange=message.exchange,
            routing_key=message.routing_key,
            redelivered=message.redelivered,
        )

    async def _handle(self, pipeline: Pipeline, delivery: Delivery) -> None:
        try:
            await pipeline.handle(delivery)
        except Exception as exc:
            # A defect (a middleware that raises, say): the pipeline settles every path it
            # knows. The test hears of it at join(); the message goes back to its queue,
            # redelivered, as on RabbitMQ, after a pause so a lasting fault does not spin.
            log.exception("the stub worker could not settle a message from %s", delivery.queue)
            self.failures.append(exc)
            await asyncio.sleep(DEFECT_PAUSE)
            self._held.discard(delivery.tag)
            self.broker.give_back(delivery.tag)
        finally:
            self._in_flight -= 1
            self.broker.wake()

    async def _settle(self, receiving: Any) -> None:
        try:
            await receiving
        except Exception as exc:
            log.exception("the stub worker's chord coordinator failed")
            self.failures.append(exc)
        finally:
            self._in_flight -= 1
            self.broker.wake()

    def _cannot_recycle(self, reason: str) -> dt.datetime:
        # A thread past its hard time limit cannot be stopped, and a test process is not
        # replaced: its message is parked and concluded as stopped, as in a real worker.
        log.warning("%s; a stub worker cannot replace its process", reason)
        return self.broker.now()
