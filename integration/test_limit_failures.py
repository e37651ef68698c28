"""Where a limited task ends when something goes wrong around its limit: each path of
``worker/limits.py`` on a real broker, with the worker in a thread (rabbitq.testing.Worker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pika
import pytest

import rabbitq
from integration.support import queue_depth, wait_for
from rabbitq.amqp import limit_queues
from rabbitq.limits.names import ORIGIN_HEADER, RETURNED_QUEUE, scope_name, waiting_queue
from rabbitq.publish_options import PublishOptions
from rabbitq.routing import parse_routing
from rabbitq.testing import Worker
from rabbitq.topology import dead_letter_queue_name


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.ran: list[str] = []

    def run(self, label: str, seconds: float) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        time.sleep(seconds)
        with self.lock:
            self.running -= 1
            self.ran.append(label)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def app(broker_url: str, unique_name: str) -> Iterator[rabbitq.App]:
    app = rabbitq.App("limited", broker=broker_url, default_queue=unique_name)
    yield app
    app.close()


def delete_queue(broker_url: str, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        connection.channel().queue_delete(queue)
    finally:
        connection.close()


def test_a_waiting_queue_deleted_under_the_worker_is_declared_again_and_nothing_is_lost(
    app: rabbitq.App, broker_url: str, unique_name: str, recorder: Recorder
) -> None:
    @app.task(limits=rabbitq.Concurrency(f"{unique_name}-c", 1))
    def one_at_a_time(label: str) -> None:
        recorder.run(label, 0.1)

    with Worker(app, [unique_name]) as worker:
        delete_queue(broker_url, waiting_queue(scope_name(f"{unique_name}-c")))
        for i in range(4):
            one_at_a_time.delay(f"t{i}")
        worker.join()
        wait_for(lambda: len(recorder.ran) == 4, 30)
    assert sorted(recorder.ran) == ["t0", "t1", "t2", "t3"]
    assert recorder.most == 1


def test_a_waiting_copy_that_expired_is_dead_lettered_and_the_slot_passes_on(
    app: rabbitq.App, broker_url: str, unique_name: str, recorder: Recorder
) -> None:
    @app.task(limits=rabbitq.Concurrency(f"{unique_name}-c", 1))
    def slow(label: str, seconds: float) -> None:
        recorder.run(label, seconds)

    with Worker(app, [unique_name]) as worker:
        slow.delay("long", 1.5)
        wait_for(lambda: recorder.running == 1, 10)
        slow.apply_async(("expires", 0.0), expires=0.5)
        slow.delay("after", 0.0)
        wait_for(lambda: len(recorder.ran) == 2, 30)
        worker.join()
    assert recorder.ran == ["long", "after"]
    assert queue_depth(broker_url, dead_letter_queue_name(unique_name)) == 1


def test_a_key_function_that_raises_is_the_task_s_failure(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    def broken_key(user: str) -> str:
        raise LookupError("no tenant for " + user)

    ran: list[str] = []

    @app.task(limits=rabbitq.Mutex(f"{unique_name}-m", key=broken_key), max_retries=0)
    def sync(user: str) -> None:
        ran.append(user)

    with Worker(app, [unique_name]) as worker:
        sync.delay("ada")
        worker.join()
        wait_for(lambda: queue_depth(broker_url, dead_letter_queue_name(unique_name)) == 1, 10)
    assert ran == []


def test_a_copy_left_on_a_key_nobody_holds_comes_back_and_runs(
    app: rabbitq.App, broker_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limit_queues, "RETURN_AFTER_MS", 300)
    ran: list[str] = []

    @app.task(limits=rabbitq.Mutex(f"{unique_name}-m", key="user"))
    def sync(user: str) -> None:
        ran.append(user)

    stranded = rabbitq.App("limited", broker=broker_url, default_queue=unique_name)
    message = stranded.prepare(sync.name, ("ada",), None, PublishOptions())
    with Worker(app, [unique_name]):
        # As a holder that died after the copy was parked would leave it: no slot held, no
        # arrival of that key to look again.
        scope = scope_name(f"{unique_name}-m", "ada")
        publish_copy(broker_url, message, unique_name, waiting_queue(scope),
                     limit_queues.waiting_arguments(keyed=True))  # fmt: skip
        wait_for(lambda: ran == ["ada"], 30, lambda: f"ran {ran}")
    stranded.close()


def publish_copy(broker_url: str, message: Any, origin: str, queue: str = RETURNED_QUEUE,
                 arguments: dict[str, Any] | None = None) -> None:  # fmt: skip
    """A copy of ``message`` from ``origin`` in ``queue``, as a worker parks it (a waiting
    queue) or a mutex key's waiting queue dead-letters it after RETURN_AFTER (the returned)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments=arguments)
    headers = {**message.envelope.headers, ORIGIN_HEADER: origin}
    channel.basic_publish(
        "", queue, message.envelope.body,
        pika.BasicProperties(headers=headers, content_type=message.envelope.content_type,
                             content_encoding=message.envelope.content_encoding),
    )  # fmt: skip
    connection.close()


def test_a_returned_copy_goes_back_to_its_own_queue_not_to_whoever_takes_it(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    # The returned queue is one per vhost: a worker of another app (here: of another queue)
    # must not run the copy, only send it home, where its own workers admit it again.
    ran: list[str] = []

    @app.task(limits=rabbitq.Mutex(f"{unique_name}-m", key="user"))
    def sync(user: str) -> None:
        ran.append(user)

    home = f"{unique_name}-home"
    other = rabbitq.App("limited", broker=broker_url, default_queue=home)
    other.ensure_queue(home)
    message = other.prepare(sync.name, ("ada",), None, PublishOptions())
    with Worker(app, [unique_name]):
        publish_copy(broker_url, message, home)
        wait_for(lambda: queue_depth(broker_url, home) == 1, 30)
        assert queue_depth(broker_url, RETURNED_QUEUE) == 0
    other.close()
    assert ran == []
    assert ORIGIN_HEADER not in first_message_headers(broker_url, home)


def first_message_headers(broker_url: str, queue: str) -> dict[str, Any]:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        _method, properties, _body = connection.channel().basic_get(queue, auto_ack=False)
        return dict(properties.headers or {})
    finally:
        connection.close()


def test_a_returned_copy_whose_queue_is_gone_runs_where_it_was_taken(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    ran: list[str] = []

    @app.task(limits=rabbitq.Mutex(f"{unique_name}-m", key="user"))
    def sync(user: str) -> None:
        ran.append(user)

    message = app.prepare(sync.name, ("ada",), None, PublishOptions())
    with Worker(app, [unique_name]):
        publish_copy(broker_url, message, f"{unique_name}-deleted")
        wait_for(lambda: ran == ["ada"], 30, lambda: f"ran {ran}")
        wait_for(lambda: queue_depth(broker_url, RETURNED_QUEUE) == 0, 10)


def test_a_task_waiting_for_a_token_at_shutdown_is_handed_back_unrun(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    ran: list[str] = []

    @app.task(limits=rabbitq.Rate(f"{unique_name}-r", "1/h"))
    def hourly(label: str) -> None:
        ran.append(label)

    worker = Worker(app, [unique_name]).start()
    hourly.delay("first")
    wait_for(lambda: ran == ["first"], 30)
    hourly.delay("second")  # no token for an hour
    wait_for(
        lambda: queue_depth(broker_url, waiting_queue(scope_name(f"{unique_name}-r"))) == 0, 10
    )
    worker.stop()
    assert ran == ["first"]
    # Back in its task queue (handed back), or in the rate's waiting queue: never lost.
    left = queue_depth(broker_url, unique_name) + queue_depth(
        broker_url, waiting_queue(scope_name(f"{unique_name}-r"))
    )
    assert left == 1


def test_a_limit_in_the_routing_file_holds_the_tasks_it_names(
    broker_url: str, unique_name: str, recorder: Recorder
) -> None:
    routing = parse_routing(
        f"limits:\n  {unique_name}-y: {{concurrency: 1, tasks: ['limited.*']}}\n", "routing.yaml"
    )
    app = rabbitq.App("limited", broker=broker_url, default_queue=unique_name, routing=routing)

    @app.task(name="limited.report")
    def report(label: str) -> None:
        recorder.run(label, 0.05)

    with Worker(app, [unique_name]) as worker:
        for i in range(5):
            report.delay(f"r{i}")
        wait_for(lambda: len(recorder.ran) == 5, 30)
        worker.join()
    app.close()
    assert recorder.most == 1
