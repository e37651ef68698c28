"""A real worker on a real broker, in a thread of the test process, drained with ``join()``.

It is ``rabbitq worker``'s own consumer (``worker/consumer.py``: every middleware, the chord
coordinator, revokes, remote control), on its own event loop, so a test can publish, ``join``
and look at what happened without a subprocess. What it cannot show is what needs a process
of its own (recycling, ``--processes``, signals): test those with ``rabbitq worker``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from rabbitq.app import App
from rabbitq.delays import LEVELS, level_name
from rabbitq.errors import RabbitqError
from rabbitq.redaction import without_password
from rabbitq.worker.consumer import Consumer

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
JOIN_TIMEOUT = 30.0
JOIN_POLL = 0.05  # seconds between looks at the queues
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

    def stop(self) -> None:
        """Stop consuming, let running tasks finish and ack, then close."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT)
        self._thread = None

    def join(self, timeout: float = JOIN_TIMEOUT, *, delayed: bool = True) -> None:
        """Return once this worker's queues are empty and it runs nothing; with ``delayed``
        also once the delay levels are empty (countdowns and retries wait in real time).
        Raises ``TimeoutError`` after ``timeout`` seconds, saying what is left."""
        if self.consumer is None:
            raise RabbitqError("the worker is not started (use `with Worker(app):`)")
        import pika

        from rabbitq.amqp.pika_support import quick_parameters

        watched = [*self.queues, *(level_name(k) for k in range(LEVELS) if delayed)]
        connection = pika.BlockingConnection(quick_parameters(self.app.broker_url))
        try:
            channel = connection.channel()
            deadline = time.monotonic() + timeout
            quiet = 0
            while True:
                left = {
                    queue: int(channel.queue_declare(queue, passive=True).method.message_count)
                    for queue in watched
                }
                busy = {queue: count for queue, count in left.items() if count}
                running = self.consumer.in_flight
                quiet = quiet + 1 if not busy and running == 0 else 0
                if quiet >= QUIET_LOOKS:
                    return
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"worker not idle after {timeout}s: {running} running, waiting: {busy}"
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
