"""A real worker on a real broker, in a thread of the test process, drained with ``join()``.

It is ``rabbitq worker``'s own consumer (``worker/consumer.py``: every middleware, the chord
coordinator, revokes, remote control), on its own event loop, so a test can publish, ``join``
and look at what happened without a subprocess. What it cannot show is what needs a process
of its own (recycling, ``--processes``, signals): test those with ``rabbitq worker``.

``join`` waits for the countdowns this process sent (and the retries its worker scheduled),
not for the broker's delay levels as a whole: on a broker shared with other tests those
hold messages that are none of this test's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING

from rabbitq.app import App
from rabbitq.errors import RabbitqError
from rabbitq.middleware import Middleware, MiddlewareStack, TaskContext
from rabbitq.redaction import without_password
from rabbitq.worker.consumer import Consumer

if TYPE_CHECKING:
    from rabbitq.prepare import PreparedMessage

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
JOIN_TIMEOUT = 30.0
JOIN_POLL = 0.05  # seconds between looks at the queues
DUE_MARGIN = 0.5  # seconds after the last countdown came due: it has reached its queue by then


class Countdowns(Middleware):
    """The latest time a message this process sent, or a retry its worker scheduled, is due."""

    def __init__(self) -> None:
        self.latest = 0.0  # time.time()

    def before_publish(self, app: object, message: PreparedMessage) -> None:
        eta = message.envelope.headers.get("eta") if message.delayed else None
        if isinstance(eta, str):
            with contextlib.suppress(ValueError):
                self._due(dt.datetime.fromisoformat(eta).timestamp())

    def after_retry(self, context: TaskContext, exception: BaseException, eta: dt.datetime) -> None:
        self._due(eta.timestamp())

    def _due(self, at: float) -> None:
        self.latest = max(self.latest, at)


QUIET_LOOKS = 2  # looks in a row that must find nothing left, so a hand-over is not missed


class Worker:
    """``with Worker(app, ["default"]) as worker: add.delay(1, 2); worker.join()``."""

    def __init__(
        self,
        app: App,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = 4,
        coordinate_chords: bool = True,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.app = app
        self.start_timeout = start_timeout
        self.queues = tuple(queues) if queues is not None else (app.default_queue,)
        self.concurrency = concurrency
        self.coordinate_chords = coordinate_chords
        self.consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._main_task: asyncio.Task[None] | None = None
        self.countdowns = Countdowns()
        self._started = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Worker:
        if self._thread is not None:
            return self
        # Before the consumer is made: its middleware (after_retry) are the app's and its own.
        self.app.middleware = self.app.middleware.added(self.countdowns)
        self._thread = threading.Thread(target=self._run, name="rabbitq-test-worker", daemon=True)
        self._thread.start()
        if not self._started.wait(self.start_timeout):
            # Still connecting (a worker retries a broker that is down): give up on it.
            self._give_up()
            raise RabbitqError(
                f"the worker did not start consuming within {self.start_timeout}s "
                f"(is the broker at {without_password(self.app.broker_url)} up?)"
            )
        if self._error is not None:
            raise RabbitqError(f"the worker did not start: {self._error!r}") from self._error
        return self

    def _give_up(self) -> None:
        if self._loop is not None and self._main_task is not None:
            self._loop.call_soon_threadsafe(self._main_task.cancel)
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        self._thread = None
        self._forget_countdowns()

    def _forget_countdowns(self) -> None:
        self.app.middleware = MiddlewareStack(
            each for each in self.app.middleware if each is not self.countdowns
        )

    def stop(self) -> None:
        """Stop consuming, let running tasks finish and ack, then close."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT)
        self._thread = None
        self._forget_countdowns()

    def join(self, timeout: float = JOIN_TIMEOUT, *, delayed: bool = True) -> None:
        """Return once this worker's queues are empty and it runs nothing; with ``delayed``
        only after every countdown this process sent, and every retry its worker scheduled,
        has come due (they wait in real time here). Raises ``TimeoutError`` after
        ``timeout`` seconds, saying what is left."""
        if self.consumer is None:
            raise RabbitqError("the worker is not started (use `with Worker(app):`)")

        from rabbitq.amqp.pika_support import open_quickly

        connection = open_quickly(self.app.broker_url)
        try:
            channel = connection.channel()
            deadline = time.monotonic() + timeout
            quiet = 0
            while True:
                left = {
                    queue: int(channel.queue_declare(queue, passive=True).method.message_count)
                    for queue in self.queues
                }
                busy = {queue: count for queue, count in left.items() if count}
                running = self.consumer.in_flight
                due_in = self.countdowns.latest + DUE_MARGIN - time.time() if delayed else 0.0
                idle = not busy and running == 0 and due_in <= 0
                quiet = quiet + 1 if idle else 0
                if quiet >= QUIET_LOOKS:
                    return
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"worker not idle after {timeout}s: {running} running, waiting: {busy}"
                        + (f", a countdown due in {due_in:.1f}s" if due_in > 0 else "")
                    )
                time.sleep(JOIN_POLL)
        finally:
            connection.close()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main_task = asyncio.current_task()
        self._stop = asyncio.Event()
        consumer = Consumer(
            self.app,
            self.queues,
            concurrency=self.concurrency,
            coordinate_chords=self.coordinate_chords,
            heartbeat=False,
        )
        try:
            await consumer.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            await consumer.stop(timeout=1.0)
            return
        self.consumer = consumer
        self._started.set()
        await self._stop.wait()
        await consumer.stop(timeout=STOP_TIMEOUT)
