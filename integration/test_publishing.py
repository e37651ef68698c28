"""Publishing against a real broker: confirms, mandatory routing, threads, forks, asyncio."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading

import pika
import pytest

import rabbitq
from integration.support import drain_queue, queue_depth


@pytest.fixture
def app(broker_url: str) -> rabbitq.App:
    app = rabbitq.App("pub", broker=broker_url)
    yield app
    app.close()


def test_delay_returns_a_handle_with_the_task_id_once_stored(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    task = app.task(name="pub.t", queue=unique_name)(lambda x: x)
    handle = task.delay(1)
    assert isinstance(handle, rabbitq.AsyncResult) and len(handle.id) == 36
    [(properties, _body)] = drain_queue(broker_url, unique_name)
    assert properties.headers["id"] == handle.id and properties.delivery_mode == 2


def test_unroutable_routing_key_raises_at_the_caller(app: rabbitq.App) -> None:
    task = app.task(name="pub.nowhere", routing_key="no.queue.binds.this")(lambda: None)
    with pytest.raises(rabbitq.UnroutableError, match=r"no\.queue\.binds\.this"):
        task.delay()


async def test_unroutable_routing_key_raises_from_asyncio_too(app: rabbitq.App) -> None:
    task = app.task(name="pub.nowhere_async", routing_key="nobody.home")(lambda: None)
    with pytest.raises(rabbitq.UnroutableError, match=r"nobody\.home"):
        await task.adelay()
    await app.aclose()


def test_routing_key_reaches_a_queue_bound_by_topic_pattern(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    app.task(name="pub.declare", queue=unique_name)(lambda: None).delay()  # declares the queue
    drain_queue(broker_url, unique_name)
    task = app.task(name="pub.welcome", routing_key=f"{unique_name}.welcome")(lambda: None)
    task.delay()
    assert queue_depth(broker_url, unique_name) == 1


def test_queue_is_declared_with_its_dead_letter_queue_on_first_publish(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    app.task(name="pub.first", queue=unique_name)(lambda: None).delay()
    assert queue_depth(broker_url, unique_name) == 1
    assert queue_depth(broker_url, unique_name + ".dead") == 0


def test_publishing_from_16_threads_at_once(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    task = app.task(name="pub.threads", queue=unique_name)(lambda i: i)
    ids: list[str] = []
    lock = threading.Lock()

    def publish_many() -> None:
        for i in range(100):
            handle = task.delay(i)
            with lock:
                ids.append(handle.id)

    threads = [threading.Thread(target=publish_many) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 1600
    stored = {p.headers["id"] for p, _ in drain_queue(broker_url, unique_name)}
    assert stored == set(ids)


def _publish_in_child(
    app: rabbitq.App, task_name: str, queue: str, result: multiprocessing.Queue
) -> None:
    try:
        handle = app.send_task(task_name, (os.getpid(),), queue=queue)
        result.put(("ok", handle.id))
    except Exception as exc:  # reported to the parent
        result.put(("error", repr(exc)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_publishing_from_a_forked_child_uses_its_own_connection(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    task = app.task(name="pub.fork", queue=unique_name)(lambda pid: pid)
    parent_id = task.delay(0).id  # the parent's publisher thread and connection now exist
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = context.Queue()
    children = [
        context.Process(target=_publish_in_child, args=(app, task.name, unique_name, results))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=30) for _ in children]
    for child in children:
        child.join(10)
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    after_id = task.delay(1).id  # the parent's connection still works
    stored = {p.headers["id"] for p, _ in drain_queue(broker_url, unique_name)}
    assert stored == {parent_id, after_id, *(value for _, value in outcomes)}


async def test_adelay_publishes_from_asyncio(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    task = app.task(name="pub.async", queue=unique_name)(lambda i: i)
    handles = await asyncio.gather(*(task.adelay(i) for i in range(50)))
    await app.aclose()
    stored = {p.headers["id"] for p, _ in drain_queue(broker_url, unique_name)}
    assert stored == {h.id for h in handles}


def test_publish_while_broker_is_unreachable_fails_clearly() -> None:
    # Celery's default publish retry policy runs out first (docs/calling.md).
    app = rabbitq.App(
        "down",
        broker="amqp://guest:guest@127.0.0.1:1/",
        publish_timeout=1.0,
        declare_queues_on_publish=False,
    )
    task = app.task(name="pub.down")(lambda: None)
    with pytest.raises(rabbitq.PublishConnectionError, match="not connected"):
        task.delay()
    app.close()


def test_message_is_persistent_and_carries_celery_headers(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    task = app.task(name="pub.headers", queue=unique_name)(lambda a, b=None: None)
    task.apply_async((1,), {"b": 2}, priority=3, headers={"tenant": "acme"}, expires=60)
    [(properties, _body)] = drain_queue(broker_url, unique_name)
    assert properties.content_type == "application/x-msgpack"
    assert properties.priority == 3
    assert properties.headers["task"] == "pub.headers"
    assert properties.headers["tenant"] == "acme"
    assert properties.headers["expires"]
    assert properties.correlation_id == properties.message_id == properties.headers["id"]


def test_raw_pika_sees_the_rabbitq_exchange_as_durable_topic(
    app: rabbitq.App, broker_url: str, unique_name: str
) -> None:
    app.task(name="pub.x", queue=unique_name)(lambda: None).delay()
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        # passive=False with matching arguments succeeds only if type and durability match
        connection.channel().exchange_declare("rabbitq", "topic", durable=True)
    finally:
        connection.close()
