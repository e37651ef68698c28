"""Eager mode: every publish runs at once, in this process, through the worker's pipeline.

Celery's ``task_always_eager`` calls the task function directly and skips what a worker
does (routing, serialization, retries through the broker, dead letters, chords). Here an
eager app publishes to a private in-memory broker and a ``StubWorker`` drains it before
``delay()`` returns, so the result is ready and every path is the real one: arguments are
serialized and checked, retries are retried (their backoff on the stub's clock, so no real
waiting), failures end in ``<queue>.dead``, chains and chords complete.

``with rabbitq.testing.eager(app):`` around one test, or ``rabbitq.testing.make_eager(app)``
once for a whole test run (Celery's ``task_always_eager = True``). Results come back over
``rpc://`` unless the app has a backend of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rabbitq.testing.stub_broker import StubBroker
from rabbitq.testing.stub_worker import StubWorker

if TYPE_CHECKING:
    from rabbitq.app import App


class EagerRunner:
    """Points ``app`` at a broker of its own and drains it after each publish."""

    def __init__(self, app: App, *, concurrency: int = 4) -> None:
        self.app = app
        self.broker = StubBroker(f"eager-{id(app):x}")
        self._saved = (app.broker_url, app.result_backend_url)
        app.use_broker(self.broker.url)
        if app.result_backend_url is None:
            app.use_result_backend("rpc://")
        self.worker = StubWorker(app, concurrency=concurrency)

    def after_publish(self) -> None:
        """Run what was published (and what that publishes) to the end. A task publishing
        from inside the eager worker leaves it to the ``join`` already under way."""
        if self.worker.in_thread:
            return
        self.worker.start()
        self.worker.join()

    async def aafter_publish(self) -> None:
        if self.worker.in_thread:
            return
        await asyncio.to_thread(self.after_publish)

    def close(self) -> None:
        """Stop the worker and give the app back its broker and result backend."""
        self.worker.stop()
        self.broker.close()
        url, backend = self._saved
        self.app.use_broker(url)
        if backend != self.app.result_backend_url:
            self.app.use_result_backend(backend)


def make_eager(app: App) -> StubBroker:
    """Make ``app`` eager until ``undo_eager(app)``; returns its in-memory broker."""
    if isinstance(app.eager, EagerRunner):
        return app.eager.broker
    runner = EagerRunner(app)
    app.eager = runner
    return runner.broker


def undo_eager(app: App) -> None:
    """Give ``app`` back its broker and result backend."""
    runner = app.eager
    app.eager = None
    if isinstance(runner, EagerRunner):
        runner.close()


@contextlib.contextmanager
def eager(app: App) -> Iterator[StubBroker]:
    """``with eager(app) as broker:`` every ``delay()`` inside runs before it returns; the
    broker is there to look at (``broker.dead_letters("default")``)."""
    if app.eager is not None:
        yield make_eager(app)  # already eager (make_eager): nothing to undo
        return
    broker = make_eager(app)
    try:
        yield broker
    finally:
        undo_eager(app)
