"""Asking workers over the pidbox mailbox, and writing the revocation log (pika, blocking).

One connection per ``PidboxClient`` (a context manager). ``call`` broadcasts a request to
``celery.pidbox`` and, when replies are wanted, collects them on an exclusive reply queue of
its own, as kombu's client does: ``timeout`` is the longest wait for the *next* reply, not a
total, and ``limit`` (the number of nodes named) ends the wait early.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

import pika
import pika.exceptions

from rabbitq.amqp.connection_parameters import open_blocking
from rabbitq.broker_urls import refuse_in_memory
from rabbitq.control import pidbox
from rabbitq.errors import ControlError, MessageError
from rabbitq.message import Envelope
from rabbitq.revocations import CONTENT_TYPE, Revocation, stream_arguments
from rabbitq.topology import CONTROL_EXCHANGE, CONTROL_REPLY_EXCHANGE, REVOCATION_STREAM

_clock = itertools.count(1)


class PidboxClient:
    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        refuse_in_memory(url, "remote control (inspect, control, revoke)")
        self.url = url
        self.connect_timeout = connect_timeout
        self._connection: pika.BlockingConnection | None = None

    def __enter__(self) -> PidboxClient:
        self._connection = open_blocking(
            self.url,
            "remote control",
            socket_timeout=self.connect_timeout,
            blocked_connection_timeout=self.connect_timeout,
        )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                self._connection.close()

    def call(
        self,
        method: str,
        arguments: dict[str, Any] | None = None,
        *,
        destination: list[str] | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
        reply: bool = True,
        timeout: float = 1.0,
        limit: int | None = None,
        on_reply: Callable[[dict[str, Any]], object] | None = None,
    ) -> list[dict[str, Any]]:
        """Send ``method`` to the nodes; their replies, each ``{nodename: value}``."""
        connection = self._connection
        assert connection is not None, "use PidboxClient as a context manager"
        channel = connection.channel()
        channel.exchange_declare(CONTROL_EXCHANGE, "fanout", durable=False, auto_delete=False)
        ticket = oid = queue = None
        if reply:
            channel.exchange_declare(
                CONTROL_REPLY_EXCHANGE, "direct", durable=False, auto_delete=False
            )
            oid, ticket = str(uuid.uuid4()), str(uuid.uuid4())
            queue = pidbox.reply_queue(oid)
            channel.queue_declare(
                queue,
                durable=False,
                exclusive=True,
                auto_delete=True,
                arguments=pidbox.QUEUE_ARGUMENTS,
            )
            channel.queue_bind(queue, CONTROL_REPLY_EXCHANGE, routing_key=oid)
        request = pidbox.Request(
            method,
            arguments or {},
            destination,
            pattern,
            matcher,
            ticket,
            CONTROL_REPLY_EXCHANGE if reply else None,
            oid,
        )
        envelope = pidbox.encode_request(request, next(_clock), timeout)
        channel.basic_publish(CONTROL_EXCHANGE, "", envelope.body, _properties(envelope))
        if queue is None:
            channel.close()
            return []
        if limit is None and destination is not None:
            limit = len(destination)
        replies: list[dict[str, Any]] = []
        for frame, properties, body in channel.consume(
            queue, auto_ack=True, inactivity_timeout=timeout
        ):
            if frame is None:  # no reply within ``timeout`` of the last one
                break
            headers = properties.headers or {}
            if headers.get("ticket", ticket) != ticket:
                continue  # an answer to an earlier request
            try:
                answer = pidbox.decode_reply(
                    Envelope(body, headers, content_type=properties.content_type)
                )
            except (MessageError, ValueError) as exc:
                answer = {"?": {"error": f"unreadable reply: {exc}"}}
            replies.append(answer)
            if on_reply is not None:
                on_reply(answer)
            if limit is not None and len(replies) >= limit:
                break
        channel.cancel()
        channel.close()
        return replies

    def append_revocation(self, revocation: Revocation, kept_for: float) -> None:
        """Write ``revocation`` into the log, confirmed; the stream is created if missing."""
        connection = self._connection
        assert connection is not None, "use PidboxClient as a context manager"
        channel = connection.channel()
        try:
            channel.queue_declare(REVOCATION_STREAM, passive=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise ControlError(f"cannot use {REVOCATION_STREAM}: {exc}") from exc
            channel = connection.channel()
            channel.queue_declare(
                REVOCATION_STREAM, durable=True, arguments=stream_arguments(kept_for)
            )
        channel.confirm_delivery()
        properties = pika.BasicProperties(content_type=CONTENT_TYPE, delivery_mode=2)
        try:
            channel.basic_publish(
                "", REVOCATION_STREAM, revocation.encode(), properties, mandatory=True
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            raise ControlError(
                f"the revocation was not stored in {REVOCATION_STREAM}: {exc}"
            ) from exc
        channel.close()


def _properties(envelope: Envelope) -> pika.BasicProperties:
    # pika encodes no floats in a header table (kombu sends ``expires`` as a double): whole
    # seconds, rounded up, say the same to a reader.
    headers = {
        key: math.ceil(value) if isinstance(value, float) else value
        for key, value in envelope.headers.items()
    }
    return pika.BasicProperties(
        content_type=envelope.content_type,
        content_encoding=envelope.content_encoding,
        headers=headers,
        delivery_mode=envelope.delivery_mode,
    )
