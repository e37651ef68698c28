"""Declarations for synchronous publishers: ``declare.py``'s own code, on a pika connection.

``delay()`` declares a task's queue (and, for a countdown, the delay levels) before its first
publish there. It must not need an event loop, nor wait longer than ``publish_timeout``: the
broker may be down, and the caller asked for an answer within that time.

What is declared, with which arguments and which fallbacks, is written once, in
``declare.py``. Those functions only ``await`` channel operations on the connection they are
given, so this module hands them a pika ``BlockingConnection`` behind the few aio-pika
methods they call and runs each coroutine to its end in the caller's thread: every ``await``
completes at once because pika has already done the work. A broker-side refusal becomes the
aiormq exception ``declare.py`` expects (406 is how it sees a conflicting queue); a lost
connection stays a pika error and the whole declaration starts again (it is idempotent)
until the deadline, after which the caller gets ``PublishTimeoutError``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import aiormq.exceptions
import pika
import pika.exceptions
from aio_pika.abc import AbstractConnection
from pika.adapters.blocking_connection import BlockingChannel
from pika.adapters.utils.connection_workflow import AMQPConnectorException

from rabbitq.amqp.connection_parameters import (
    connection_failure,
    describe_failure,
    pika_parameters,
)
from rabbitq.amqp.declare import declare_delay_levels, ensure_queue
from rabbitq.broker_urls import Endpoint, endpoints
from rabbitq.errors import PublishTimeoutError
from rabbitq.tls import tls_failure
from rabbitq.topology import QueueSpec, QueueType

T = TypeVar("T")

RETRY_BACKOFF_MAX = 2.0

# What declare.py catches, by the broker's reply code.
_REFUSALS: dict[int, type[aiormq.exceptions.ChannelClosed]] = {
    403: aiormq.exceptions.ChannelAccessRefused,
    404: aiormq.exceptions.ChannelNotFoundEntity,
    406: aiormq.exceptions.ChannelPreconditionFailed,
}


def ensure_queue_blocking(url: str, spec: QueueSpec, timeout: float) -> None:
    """``declare.ensure_queue`` within ``timeout`` seconds, else ``PublishTimeoutError``."""
    within_deadline(url, timeout, f"queue {spec.name!r}", lambda conn: ensure_queue(conn, spec))


def declare_delay_levels_blocking(url: str, queue_type: QueueType, timeout: float) -> QueueType:
    """``declare.declare_delay_levels`` within ``timeout`` seconds."""
    return within_deadline(
        url, timeout, "the delay levels", lambda conn: declare_delay_levels(conn, queue_type)
    )


def within_deadline(
    url: str,
    timeout: float,
    what: str,
    work: Callable[[AbstractConnection], Coroutine[Any, Any, T]],
) -> T:
    deadline = time.monotonic() + timeout
    attempt = 0
    last_error = "connecting"
    # Each node's latest handshake failure: when every node refused our TLS, waiting does
    # not mend a certificate, so the caller hears so at once.
    tls_refusals: dict[int, tuple[Endpoint, BaseException]] = {}
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise PublishTimeoutError(
                f"could not declare {what} within {timeout:g}s: not connected to the broker "
                f"({last_error})"
            )
        nodes = _parameters(url, remaining)
        node = attempt % len(nodes)  # each attempt the next node: failover
        try:
            connection = pika.BlockingConnection(nodes[node])
        except (pika.exceptions.AMQPError, AMQPConnectorException, OSError) as exc:
            # Refused, or (a peer that accepts TCP and never speaks) the handshake timed out.
            endpoint = endpoints(url)[node]
            last_error = describe_failure(endpoint, exc)
            if tls_failure(exc) is None:
                tls_refusals.pop(node, None)
            else:
                tls_refusals[node] = (endpoint, exc)
                if len(tls_refusals) == len(nodes):
                    failure = connection_failure(list(tls_refusals.values()), f"declaring {what}")
                    raise failure from None
        else:
            try:
                return run_to_end(work(cast(AbstractConnection, PikaConnection(connection))))
            except (
                pika.exceptions.AMQPConnectionError,
                pika.exceptions.ChannelWrongStateError,
            ) as exc:
                # The connection went away mid-way: declaring again from the start is safe.
                last_error = _describe(exc)
            finally:
                if connection.is_open:
                    connection.close()
        attempt += 1
        pause = min(RETRY_BACKOFF_MAX, 0.1 * 2**attempt) * (0.5 + random.random() / 2)
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))


def _parameters(url: str, remaining: float) -> list[pika.URLParameters]:
    # Bound every phase of opening by what is left of the caller's deadline.
    return pika_parameters(
        url,
        connection_attempts=1,
        socket_timeout=remaining,
        stack_timeout=remaining,
        blocked_connection_timeout=remaining,
        client_properties={"connection_name": f"rabbitq-declare-{os.getpid()}"},
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def run_to_end(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine whose every ``await`` is already complete, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        value: T = done.value
        return value
    coroutine.close()
    raise RuntimeError("a declaration awaited something that is not a pika operation")


def _refusal(error: pika.exceptions.ChannelClosedByBroker) -> aiormq.exceptions.ChannelClosed:
    kind = _REFUSALS.get(error.reply_code, aiormq.exceptions.ChannelClosed)
    return kind(f"{error.reply_code} {error.reply_text}")


# -- the slice of aio-pika's API that declare.py uses, on pika -------------------------------


class PikaConnection:
    def __init__(self, connection: pika.BlockingConnection) -> None:
        self._connection = connection

    def channel(self) -> PikaChannel:
        return PikaChannel(self._connection)


class PikaChannel:
    """``async with connection.channel() as channel``: one pika channel, closed on exit."""

    def __init__(self, connection: pika.BlockingConnection) -> None:
        self._connection = connection
        self._channel: BlockingChannel | None = None

    async def __aenter__(self) -> PikaChannel:
        self._channel = self._connection.channel()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._channel is not None and self._channel.is_open:
            self._channel.close()

    def _call(self, operation: Callable[[BlockingChannel], Any]) -> None:
        assert self._channel is not None
        try:
            operation(self._channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            raise _refusal(exc) from None

    async def declare_exchange(
        self, name: str, type: Any, *, durable: bool = False, arguments: Any = None
    ) -> PikaExchange:
        kind = str(getattr(type, "value", type))
        self._call(
            lambda ch: ch.exchange_declare(
                name, exchange_type=kind, durable=durable, arguments=arguments
            )
        )
        return PikaExchange(self, name)

    async def declare_queue(
        self,
        name: str,
        *,
        durable: bool = False,
        passive: bool = False,
        arguments: Any = None,
    ) -> PikaQueue:
        self._call(
            lambda ch: ch.queue_declare(name, passive=passive, durable=durable, arguments=arguments)
        )
        return PikaQueue(self, name)

    async def get_queue(self, name: str, *, ensure: bool = True) -> PikaQueue:
        if ensure:
            await self.declare_queue(name, passive=True)
        return PikaQueue(self, name)

    async def get_exchange(self, name: str, *, ensure: bool = True) -> PikaExchange:
        if ensure:
            self._call(lambda ch: ch.exchange_declare(name, passive=True))
        return PikaExchange(self, name)


def _name(exchange: str | PikaExchange) -> str:
    return exchange if isinstance(exchange, str) else exchange.name


class PikaQueue:
    def __init__(self, channel: PikaChannel, name: str) -> None:
        self._channel = channel
        self.name = name

    async def bind(self, exchange: str | PikaExchange, routing_key: str | None = None) -> None:
        # aio-pika binds with the queue's name when no routing key is given.
        key = self.name if routing_key is None else routing_key
        self._channel._call(lambda ch: ch.queue_bind(self.name, _name(exchange), key))


class PikaExchange:
    def __init__(self, channel: PikaChannel, name: str) -> None:
        self._channel = channel
        self.name = name

    async def bind(self, source: str | PikaExchange, routing_key: str = "") -> None:
        self._channel._call(
            lambda ch: ch.exchange_bind(self.name, _name(source), routing_key=routing_key)
        )
