"""The Redis backend, with Celery's key scheme so either side can read the other's results.

A result is ``SET celery-task-meta-<id> <document> EX <expires>`` and, in the same
pipeline, ``PUBLISH celery-task-meta-<id> <document>``. A waiting caller subscribes to the
channels first, then reads the keys it subscribed to: a result stored in between is seen by
one or the other, and the caller sleeps in the subscription instead of polling.

Every call has a deadline: the client connects within ``CONNECT_TIMEOUT`` and waits for an
answer at most ``SOCKET_TIMEOUT`` (both overridable in the URL, redis-py's
``?socket_connect_timeout=`` and ``?socket_timeout=``). A Redis that is down, unreachable or
frozen raises ``ResultBackendError`` instead of hanging the caller or the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from rabbitq.errors import MessageDecodeError, ResultBackendError
from rabbitq.extras import require
from rabbitq.redaction import without_password
from rabbitq.results.backend import ResultBackend
from rabbitq.results.meta import PENDING, ResultMeta, decode_meta, encode_meta
from rabbitq.serializers import Serializer, serializer_named

if TYPE_CHECKING:
    import redis as redis_sync
    import redis.asyncio as redis_async

    from rabbitq.amqp.contract import AsyncPublisher

# Here, not where redis is first imported (in the methods below): App(result_backend=
# "redis://...") imports this module on first use, so a missing extra is named there.
require("redis", feature="the redis result backend")

KEY_PREFIX = "celery-task-meta-"
SUBSCRIBE_BATCH = 500
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 10.0


def result_key(task_id: str) -> str:
    return f"{KEY_PREFIX}{task_id}"


class RedisBackend(ResultBackend):
    def __init__(self, url: str, serializer: Serializer, expires: float | None) -> None:
        super().__init__(url, serializer, expires)
        self._sync: redis_sync.Redis | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis_async.Redis] = (
            weakref.WeakKeyDictionary()
        )

    # -- clients ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """Redis not answering (refused, unreachable, past a timeout) as ``ResultBackendError``.

        The worker treats it as transient (the result is stored again later); a caller sees
        which Redis failed instead of a bare redis-py error or a hang.
        """
        import redis.exceptions

        try:
            yield
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise ResultBackendError(
                f"the Redis result backend at {without_password(self.url)} did not answer: {exc}"
            ) from exc

    def _client(self) -> redis_sync.Redis:
        if self._sync is None:
            import redis as redis_sync

            self._sync = redis_sync.Redis.from_url(  # the pool is fork-aware
                self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT
            )
        return self._sync

    def _async_client(self) -> redis_async.Redis:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            import redis.asyncio as redis_async

            client = redis_async.Redis.from_url(
                self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=SOCKET_TIMEOUT
            )
            self._async[loop] = client
        return client

    # -- worker side ------------------------------------------------------------------------

    async def store(
        self,
        meta: ResultMeta,
        reply_to: str | None,
        publisher: AsyncPublisher,
        serializer: Serializer | None = None,
    ) -> None:
        key = result_key(meta.task_id)
        value = encode_meta(meta, serializer or self.serializer)
        with self._answering():
            await self._store(key, value)

    async def _store(self, key: str, value: bytes) -> None:
        async with self._async_client().pipeline(transaction=False) as pipe:
            if self.expires:
                pipe.set(key, value, px=int(self.expires * 1000))
            else:
                pipe.set(key, value)
            pipe.publish(key, value)
            await pipe.execute()

    # -- caller side ------------------------------------------------------------------------

    def _decode(self, value: bytes | str | None, task_id: str) -> ResultMeta:
        if value is None:
            return ResultMeta(task_id, PENDING)
        return decode_meta(self._loads(value), task_id)

    def _loads(self, value: bytes | str) -> Any:
        if isinstance(value, str):
            value = value.encode()
        # Celery may have written it with a different result serializer: try the other one.
        try:
            return self.serializer.loads(value)
        except Exception:
            other = "json" if self.serializer.name != "json" else "msgpack"
            try:
                return serializer_named(other).loads(value)
            except Exception as exc:
                raise MessageDecodeError(f"unreadable result in Redis: {exc}") from exc

    def state(self, task_id: str) -> ResultMeta:
        with self._answering():
            value = self._client().get(result_key(task_id))
        return self._decode(value, task_id)

    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, ResultMeta]:
        with self._answering():
            return self._wait(task_ids, timeout)

    def _wait(self, task_ids: list[str], timeout: float | None) -> dict[str, ResultMeta]:
        deadline = None if timeout is None else time.monotonic() + timeout
        client = self._client()
        keys = {result_key(task_id): task_id for task_id in task_ids}
        # Any: redis-py types pubsub() from 8.x on, and left it untyped before.
        pubsub: Any = cast(Any, client).pubsub(ignore_subscribe_messages=True)
        ready: dict[str, ResultMeta] = {}
        try:
            key_list = list(keys)
            for start in range(0, len(key_list), SUBSCRIBE_BATCH):
                pubsub.subscribe(*key_list[start : start + SUBSCRIBE_BATCH])
            for start in range(0, len(key_list), SUBSCRIBE_BATCH):
                batch = key_list[start : start + SUBSCRIBE_BATCH]
                for key, value in zip(batch, client.mget(batch), strict=True):
                    meta = self._decode(value, keys[key])
                    if meta.ready:
                        ready[keys[key]] = meta
            while len(ready) < len(keys):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                message = pubsub.get_message(timeout=min(remaining or 1.0, 1.0))
                if message is None or message.get("type") != "message":
                    continue
                channel = message["channel"]
                task_id = keys.get(channel.decode() if isinstance(channel, bytes) else channel)
                if task_id is not None:
                    meta = self._decode(message["data"], task_id)
                    if meta.ready:
                        ready[task_id] = meta
        finally:
            pubsub.close()
        return ready

    async def await_ready(self, task_id: str, timeout: float | None) -> ResultMeta | None:
        with self._answering():
            return await self._await_ready(task_id, timeout)

    async def _await_ready(self, task_id: str, timeout: float | None) -> ResultMeta | None:
        client = self._async_client()
        key = result_key(task_id)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(key)
        try:
            meta = self._decode(await client.get(key), task_id)
            if meta.ready:
                return meta

            async def next_ready() -> ResultMeta:
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        found = self._decode(message["data"], task_id)
                        if found.ready:
                            return found

            try:
                return await asyncio.wait_for(next_ready(), timeout)
            except TimeoutError:
                return None
        finally:
            await cast(Any, pubsub).aclose()  # typed from redis-py 8.x on, untyped before

    def forget(self, task_id: str) -> None:
        with self._answering():
            self._client().delete(result_key(task_id))

    async def aclose(self) -> None:
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
