"""Publish retries (Celery's ``retry``/``retry_policy``) against a broker the tests kill and
start again: every claim of docs/calling.md, one test each."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import rabbitq
from integration.support import drain_queue
from rabbitq.testing import LocalBroker
from rabbitq.testing.local_broker import free_port

pytestmark = pytest.mark.timeout(180)

LONG = 60.0  # the publish timeout, when the policy is what should end the call


@pytest.fixture
def broker(restartable_broker: LocalBroker) -> Iterator[LocalBroker]:
    yield restartable_broker


def app_and_task(url: str, queue: str, publish_timeout: float = LONG) -> rabbitq.Task:
    app = rabbitq.App("retry", broker=url, publish_timeout=publish_timeout)
    task = app.task(name="retry.t", queue=queue)(lambda *args: None)
    task.apply_async(("warm-up",))  # connected, and the queue declared
    return task


def message_ids(broker: LocalBroker, queue: str) -> list[str]:
    # (A warm-up message taken before a kill may come back: the broker had not stored the ack.)
    return [properties.message_id for properties, _body in drain_queue(broker.url, queue)]


class InThread:
    """A publish running in a thread of its own while the test's thread restarts the broker
    (LocalBroker dies with the thread that started it, so that must be the test's)."""

    def __init__(self, call: Callable[[], rabbitq.AsyncResult]) -> None:
        self.outcome: list[rabbitq.AsyncResult | BaseException] = []

        def run() -> None:
            try:
                self.outcome.append(call())
            except BaseException as exc:
                self.outcome.append(exc)

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def result(self) -> rabbitq.AsyncResult | BaseException:
        self.thread.join(120)
        return self.outcome[0]


def test_retry_false_raises_at_once_when_the_broker_was_never_reached() -> None:
    # Without the declaration before a first publish, which waits up to publish_timeout.
    app = rabbitq.App(
        "retry",
        broker=f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        declare_queues_on_publish=False,
    )
    task = app.task(name="retry.t")(lambda: None)
    with pytest.raises(rabbitq.PublishConnectionError, match="not sent"):
        task.apply_async(retry=False)
    app.close()


def test_retry_false_raises_at_the_first_connection_error(
    broker: LocalBroker, unique_name: str
) -> None:
    task = app_and_task(broker.url, unique_name)
    broker.kill()
    # Not at the 60 s publish_timeout: that would raise PublishTimeoutError instead.
    with pytest.raises(rabbitq.PublishConnectionError):
        task.apply_async(("lost",), retry=False)
    task.app.close()


async def test_retry_false_raises_at_the_first_connection_error_in_asyncio(
    broker: LocalBroker, unique_name: str
) -> None:
    app = rabbitq.App("retry", broker=broker.url, publish_timeout=LONG)
    task = app.task(name="retry.t", queue=unique_name)(lambda *args: None)
    await task.aapply_async(("warm-up",))
    broker.kill()
    with pytest.raises(rabbitq.PublishConnectionError):
        await task.aapply_async(("lost",), retry=False)
    await app.aclose()


def test_the_default_policy_gives_up_long_before_publish_timeout(
    broker: LocalBroker, unique_name: str
) -> None:
    task = app_and_task(broker.url, unique_name)
    broker.kill()
    with pytest.raises(rabbitq.PublishConnectionError):
        task.apply_async(("lost",), retry=True)  # Celery's policy: 3 retries, 0.6 s of waits
    task.app.close()


def test_an_unlimited_policy_waits_for_the_broker_and_sends_once(
    broker: LocalBroker, unique_name: str
) -> None:
    task = app_and_task(broker.url, unique_name)
    drain_queue(broker.url, unique_name)
    broker.kill()
    publishing = InThread(lambda: task.apply_async(("back",), retry_policy={"max_retries": None}))
    time.sleep(1.0)
    broker.start()
    handle = publishing.result()
    assert isinstance(handle, rabbitq.AsyncResult)
    assert message_ids(broker, unique_name).count(handle.id) == 1
    task.app.close()


async def test_an_unlimited_policy_waits_for_the_broker_in_asyncio(
    broker: LocalBroker, unique_name: str
) -> None:
    app = rabbitq.App("retry", broker=broker.url, publish_timeout=LONG)
    task = app.task(name="retry.t", queue=unique_name)(lambda *args: None)
    await task.aapply_async(("warm-up",))
    drain_queue(broker.url, unique_name)
    broker.kill()
    publishing = asyncio.create_task(
        task.aapply_async(("back",), retry_policy={"max_retries": None})
    )
    await asyncio.sleep(1.0)  # it meets the connection error and retries
    broker.start()  # blocks the loop meanwhile: the retries carry on once it is back
    handle = await publishing
    assert message_ids(broker, unique_name).count(handle.id) == 1
    await app.aclose()


def test_publish_timeout_ends_an_unlimited_policy(broker: LocalBroker, unique_name: str) -> None:
    task = app_and_task(broker.url, unique_name, publish_timeout=2.0)
    broker.kill()
    # With no limit on retries, only the 2 s publish_timeout can end the call: that it
    # returns at all (within the test's own timeout) is the behaviour. No timing bound
    # beyond that: these machines are shared and noisy.
    with pytest.raises(rabbitq.PublishConnectionError):
        task.apply_async(("lost",), retry_policy={"max_retries": None})
    task.app.close()


def test_a_message_whose_confirm_was_lost_is_sent_again_with_its_task_id(
    broker: LocalBroker, unique_name: str
) -> None:
    task = app_and_task(broker.url, unique_name)
    drain_queue(broker.url, unique_name)
    # Blocked: the broker takes the message off the socket no further, so no confirm comes;
    # then the connection is lost with the message unconfirmed.
    broker.rabbitmqctl("set_vm_memory_high_watermark", "0.000001")

    publishing = InThread(
        lambda: task.apply_async(("again",), task_id="kept-id", retry_policy={"max_retries": None})
    )
    time.sleep(1.0)
    assert not publishing.outcome, "no confirm while the broker blocks the connection"
    broker.kill()
    broker.start()  # the watermark is back to its default
    handle = publishing.result()
    assert isinstance(handle, rabbitq.AsyncResult) and handle.id == "kept-id"
    assert "kept-id" in message_ids(broker, unique_name)  # (twice, had the first copy landed)
    task.app.close()


def test_with_retry_false_a_lost_confirm_is_not_sent_again(
    broker: LocalBroker, unique_name: str
) -> None:
    task = app_and_task(broker.url, unique_name)
    drain_queue(broker.url, unique_name)
    broker.rabbitmqctl("set_vm_memory_high_watermark", "0.000001")
    publishing = InThread(lambda: task.apply_async(("once",), task_id="once-id", retry=False))
    time.sleep(1.0)
    broker.kill()
    error = publishing.result()
    assert isinstance(error, rabbitq.PublishConnectionError), error
    assert "lost before the confirm" in str(error)
    broker.start()
    time.sleep(1.0)  # the publisher would have resent it by now, had it kept it
    assert "once-id" not in message_ids(broker, unique_name)
    task.app.close()


def test_the_readme_line_runs_as_written(broker_url: str) -> None:
    app = rabbitq.App("readme", broker=broker_url)

    @app.task
    def send_email(to: str, subject: str, body: str) -> None: ...

    result = send_email.apply_async(
        args=["user@example.com", "Welcome", "Hi"], countdown=60, retry=True
    )
    assert isinstance(result, rabbitq.AsyncResult)
    app.close()
