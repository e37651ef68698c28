"""A Redis result backend that is down or frozen raises ResultBackendError; nothing hangs.

The URL sets redis-py's timeouts to one second (the defaults are 5 s to connect, 10 s per
answer), so a frozen Redis costs the test a second, not ten.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

import rabbitq
from rabbitq.testing import LocalRedis

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def local_redis() -> Iterator[LocalRedis]:
    """A Redis of this test's own, which it may stop or freeze."""
    with LocalRedis() as redis:
        yield redis


def app_on(redis: LocalRedis) -> rabbitq.App:
    url = f"{redis.url}?socket_timeout=1&socket_connect_timeout=1"
    return rabbitq.App("redis-down", broker="amqp://guest:guest@127.0.0.1:1/", result_backend=url)


@pytest.fixture
def frozen(local_redis: LocalRedis) -> Iterator[LocalRedis]:
    """Redis stopped with SIGSTOP: the kernel still accepts connections, nothing answers."""
    process = local_redis._process
    assert process is not None
    os.kill(process.pid, signal.SIGSTOP)
    try:
        yield local_redis
    finally:
        os.kill(process.pid, signal.SIGCONT)


def test_get_with_redis_down_raises_result_backend_error(local_redis: LocalRedis) -> None:
    app = app_on(local_redis)
    local_redis.stop()
    with pytest.raises(rabbitq.ResultBackendError, match="did not answer"):
        app.AsyncResult("some-task-id").get()


def test_get_with_redis_frozen_raises_result_backend_error(frozen: LocalRedis) -> None:
    with pytest.raises(rabbitq.ResultBackendError, match="did not answer"):
        app_on(frozen).AsyncResult("some-task-id").get()


def test_state_with_redis_frozen_raises_result_backend_error(frozen: LocalRedis) -> None:
    with pytest.raises(rabbitq.ResultBackendError):
        _ = app_on(frozen).AsyncResult("some-task-id").state


async def test_aget_with_redis_frozen_raises_result_backend_error(frozen: LocalRedis) -> None:
    app = app_on(frozen)
    try:
        with pytest.raises(rabbitq.ResultBackendError, match="did not answer"):
            await app.AsyncResult("some-task-id").aget()
    finally:
        await app.aclose()
