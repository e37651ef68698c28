"""rabbitq's pytest plugin (entry point ``pytest11``, loaded wherever rabbitq is installed).

Fixtures for testing your own tasks (docs/testing.md):

* ``rabbitq_app`` — your app: the one named by ``--rabbitq-app module:attribute`` or the ini
  option ``rabbitq_app``; override the fixture in ``conftest.py`` to build it yourself;
  without either, a fresh ``App("tests")``.
* ``rabbitq_stub`` — an in-memory broker (``StubBroker``), with ``rabbitq_app`` pointed at it
  for the test (results over ``rpc://`` unless the app keeps them elsewhere).
* ``rabbitq_stub_worker`` — a ``StubWorker`` on it: the worker's own pipeline; ``join()``.
* ``rabbitq_eager`` — ``rabbitq_app`` in eager mode for the test; yields its broker.
* ``rabbitq_broker`` — one RabbitMQ for the whole run: ``$RABBITQ_TEST_URL`` if set, else a
  throwaway ``LocalBroker`` (needs ``rabbitmq-server`` installed, no Docker).
* ``rabbitq_worker`` — a real worker on it in a thread (``Worker``), ``rabbitq_app`` pointed
  at that broker; its queues (ini ``rabbitq_queues``, else the app's default queue and the
  routing file's queues) and their dead-letter queues are purged first; ``join()``.

Every fixture that points the app somewhere gives it back its broker and backend after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from rabbitq.app import App
from rabbitq.app_path import load_app
from rabbitq.testing.eager import eager
from rabbitq.testing.local_broker import LocalBroker
from rabbitq.testing.stub_broker import StubBroker
from rabbitq.testing.stub_worker import StubWorker
from rabbitq.testing.thread_worker import Worker
from rabbitq.topology import dead_letter_queue_name

URL_VARIABLE = "RABBITQ_TEST_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rabbitq")
    group.addoption(
        "--rabbitq-app",
        default=None,
        help="module:attribute of the rabbitq.App the rabbitq_* fixtures use",
    )
    parser.addini("rabbitq_app", "module:attribute of the App the rabbitq_* fixtures use")
    parser.addini(
        "rabbitq_queues",
        "queues rabbitq_worker consumes (default: the app's default queue and routing file's)",
        type="args",
    )


@dataclass(frozen=True)
class RunningBroker:
    """A broker the tests did not start (``$RABBITQ_TEST_URL``)."""

    url: str


@pytest.fixture
def rabbitq_app(request: pytest.FixtureRequest) -> App:
    path = request.config.getoption("rabbitq_app") or request.config.getini("rabbitq_app")
    return load_app(str(path)) if path else App("tests")


@contextmanager
def pointed_at(app: App, url: str) -> Iterator[None]:
    """``app`` publishes to ``url`` (results over ``rpc://`` if it keeps none) until the end."""
    saved_url, saved_backend = app.broker_url, app.result_backend_url
    app.use_broker(url)
    if saved_backend is None:
        app.use_result_backend("rpc://")
    try:
        yield
    finally:
        app.use_broker(saved_url)
        if saved_backend is None:
            app.use_result_backend(None)


@pytest.fixture
def rabbitq_stub(rabbitq_app: App) -> Iterator[StubBroker]:
    broker = StubBroker()
    with pointed_at(rabbitq_app, broker.url):
        yield broker
    broker.close()


@pytest.fixture
def rabbitq_stub_worker(rabbitq_app: App, rabbitq_stub: StubBroker) -> Iterator[StubWorker]:
    with StubWorker(rabbitq_app) as worker:
        yield worker


@pytest.fixture
def rabbitq_eager(rabbitq_app: App) -> Iterator[StubBroker]:
    with eager(rabbitq_app) as broker:
        yield broker


@pytest.fixture(scope="session")
def rabbitq_broker() -> Iterator[LocalBroker | RunningBroker]:
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield RunningBroker(url)
        return
    with LocalBroker() as broker:
        yield broker


@pytest.fixture
def rabbitq_worker(
    request: pytest.FixtureRequest,
    rabbitq_app: App,
    rabbitq_broker: LocalBroker | RunningBroker,
) -> Iterator[Worker]:
    configured = request.config.getini("rabbitq_queues")
    queues = list(configured) or [
        rabbitq_app.default_queue,
        *rabbitq_app.topology.configured_queue_names(),
    ]
    # Before the worker starts: it would take what is left at once.
    _purge(rabbitq_broker.url, queues)
    with (
        pointed_at(rabbitq_app, rabbitq_broker.url),
        Worker(rabbitq_app, dict.fromkeys(queues)) as worker,
    ):
        yield worker


def _purge(url: str, queues: list[str]) -> None:
    """What an earlier test left in these queues must not run in this one (a queue not
    declared yet has nothing in it)."""
    import pika
    import pika.exceptions

    from rabbitq.amqp.pika_support import open_quickly

    connection = open_quickly(url)
    try:
        for queue in queues:
            for name in (queue, dead_letter_queue_name(queue)):
                channel = connection.channel()
                try:
                    channel.queue_purge(name)
                except pika.exceptions.ChannelClosedByBroker as exc:
                    if exc.reply_code != 404:
                        raise
                    continue  # the broker closed the channel: the next name gets a new one
                channel.close()
    finally:
        connection.close()
