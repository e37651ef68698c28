"""Publishing from synchronous code: one pika I/O thread per process.

pika connections are not thread-safe, and a blocking publish that waits for its own confirm
caps one caller at the broker's round trip. So a single I/O thread owns a pika
``SelectConnection``; ``publish()`` hands it the message and waits for that message's
confirm. Messages from many request threads are in flight together on one channel and their
confirms pipeline, so throughput grows with the number of callers.

Safety properties, each handled below where it happens:

* fork: the thread and connection belong to the process that made them. A child (gunicorn,
  uwsgi, multiprocessing) notices the pid changed and builds its own, never touching the
  parent's socket.
* broker restart / dropped connection: the thread reconnects with backoff; messages that were
  sent but not confirmed are sent again after reconnecting (at-least-once: a confirm that was
  lost in flight may mean a duplicate, never a loss). A publish with ``reconnect=False``
  instead fails with ``PublishConnectionError`` at the connection error (and at once while
  the connection is down), never sent again by the publisher.
* ``connection.blocked`` (the broker is out of memory or disk): publishes wait, and a caller
  whose confirm does not arrive within its timeout gets ``PublishTimeoutError`` saying so.
* every publish is ``mandatory``: a returned message fails its caller with ``UnroutableError``.
* replies (the rpc result backend): on request, the same channel also consumes an exclusive,
  auto-delete reply queue, declared before any publish that names it and again after every
  reconnect (its name stays; the broker deleted the old one with the old connection).
* events (``send_event``): on a second channel, opened at the first event, without confirms;
  callers never wait, and a bounded buffer (``event_buffer.py``) refuses what it cannot hold.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pika
import pika.exceptions
import pika.spec

from rabbitq.amqp.confirms import ConfirmTracker, PublishRequest
from rabbitq.amqp.connection_parameters import describe_failure, pika_parameters
from rabbitq.amqp.contract import BatchItem, Outcomes
from rabbitq.amqp.event_buffer import EventBuffer
from rabbitq.broker_urls import endpoints
from rabbitq.errors import (
    PublishConnectionError,
    PublishError,
    PublishNackedError,
    PublishTimeoutError,
)
from rabbitq.message import Envelope, envelope_from_properties, properties_of
from rabbitq.topology import EVENT_EXCHANGE, TASK_EXCHANGE

log = logging.getLogger("rabbitq.publisher")

RECONNECT_BACKOFF_MAX = 5.0


def to_pika_properties(envelope: Envelope) -> pika.BasicProperties:
    return pika.BasicProperties(**properties_of(envelope))


class BlockingPublisher:
    """Thread-safe, fork-safe publisher with confirms for synchronous callers."""

    def __init__(
        self,
        url: str,
        *,
        publish_timeout: float = 30.0,
        heartbeat: int = 30,
        exchanges: Sequence[tuple[str, str]] = ((TASK_EXCHANGE, "topic"),),
    ) -> None:
        self.url = url
        self.publish_timeout = publish_timeout
        self._heartbeat = heartbeat
        self._exchanges = tuple(exchanges)
        self._reset_state()
        _live_publishers.add(self)

    def _reset_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pending: collections.deque[PublishRequest] = collections.deque()
        self._closing = False
        # The last connection failed or was lost and no new one is ready yet (under the lock).
        self._down = False
        # Only the I/O thread touches what follows.
        self._connection: pika.SelectConnection | None = None
        self._channel: Any = None
        self._renewing = False  # closing the channel to open a fresh one (after a nack)
        self._ready = False
        self._blocked_reason: str | None = None
        self._last_error: str | None = None
        # Which of the URL's nodes the next connection tries: moved on after each failure or
        # loss, so a publisher whose node dies reconnects to the next (failover).
        self._node = 0
        self._confirms = ConfirmTracker()
        self._reply_queue: str | None = None
        self._on_reply: Callable[[Envelope], None] | None = None
        self._replies_ready = threading.Event()
        self.events = EventBuffer()
        self._event_channel: Any = None  # I/O thread only, as the channel above
        self._event_channel_opening = False
        self._close_deadline = 0.0  # close() waits for buffered events until then

    # -- caller side -------------------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = TASK_EXCHANGE,
        timeout: float | None = None,
        reconnect: bool = True,
    ) -> None:
        """Publish and return once the broker confirmed it; raise ``PublishError`` otherwise."""
        request = self._submit([(exchange, routing_key, envelope)], reconnect)[0]
        self._wait([request], timeout)

    def publish_many(
        self,
        messages: Iterable[tuple[str, Envelope]],
        *,
        exchange: str = TASK_EXCHANGE,
        timeout: float | None = None,
    ) -> Outcomes:
        """Publish many at once with pipelined confirms; one error (or None) per message."""
        return self.publish_batch([(exchange, rk, env) for rk, env in messages], timeout=timeout)

    def publish_batch(
        self, items: Sequence[BatchItem], *, timeout: float | None = None, reconnect: bool = True
    ) -> Outcomes:
        """``(exchange, routing_key, envelope)`` each, confirms pipelined; one outcome per
        item, in order (``contract.py``)."""
        requests = self._submit(items, reconnect)
        deadline = time.monotonic() + (timeout if timeout is not None else self.publish_timeout)
        errors: list[PublishError | None] = []
        for request in requests:
            try:
                self._wait([request], max(0.0, deadline - time.monotonic()))
                errors.append(None)
            except PublishError as exc:
                errors.append(exc)
        return errors

    def enable_replies(self, on_reply: Callable[[Envelope], None]) -> str:
        """Consume this process's reply queue; returns its name once it is consuming.

        Call before publishing a message whose ``reply_to`` is that name, so no reply can
        arrive before the queue exists.
        """
        if self._pid != os.getpid():
            self._reset_state()
        with self._lock:
            if self._reply_queue is None:
                self._reply_queue = f"rabbitq.reply.{uuid.uuid4().hex}"
                self._on_reply = on_reply
                self._ensure_thread()
                connection = self._connection if self._ready else None
                if connection is not None:
                    connection.ioloop.add_callback_threadsafe(
                        lambda: self._setup_replies(lambda: None)
                    )
            name = self._reply_queue
        if not self._replies_ready.wait(self.publish_timeout):
            raise PublishTimeoutError(
                f"reply queue {name} not ready within {self.publish_timeout:g}s "
                f"({self._last_error or 'connecting'})"
            )
        return name

    def send_event(self, routing_key: str, envelope: Envelope) -> bool:
        """Hand an event to the I/O thread (``contract.py``); False when its buffer is full.
        Never waits: not for the broker, not for a connection."""
        if self._pid != os.getpid():
            self._reset_state()
        if not self.events.offer(routing_key, envelope):
            return False
        with self._lock:
            if self._closing:
                return False
            self._ensure_thread()
            connection = self._connection if self._ready else None
        if connection is not None:
            with contextlib.suppress(Exception):  # going away: the reconnect sends them
                connection.ioloop.add_callback_threadsafe(self._flush_events)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Close the connection after in-flight publishes are confirmed and buffered events
        written (or ``timeout``)."""
        if self._pid != os.getpid():
            return
        with self._lock:
            self._closing = True
            self._close_deadline = time.monotonic() + timeout
            thread = self._thread
            connection = self._connection
        if thread is None:
            return
        if connection is not None:
            with contextlib.suppress(Exception):  # the loop may already be gone
                connection.ioloop.add_callback_threadsafe(self._close_connection)
        thread.join(timeout)

    def _submit(
        self, items: Sequence[tuple[str, str, Envelope]], reconnect: bool = True
    ) -> list[PublishRequest]:
        if self._pid != os.getpid():
            # Forked: the parent's thread does not exist here and its socket is not ours.
            self._reset_state()
        requests = [PublishRequest(ex, rk, env, reconnect=reconnect) for ex, rk, env in items]
        with self._lock:
            if self._closing:
                raise PublishError("publisher is closed")
            if self._down and not reconnect:
                error = self._not_connected()
                for request in requests:
                    request.resolve(error)
                return requests
            self._pending.extend(requests)
            self._ensure_thread()
            connection = self._connection if self._ready else None
        if connection is not None:
            # If the connection is going away, the reconnect flushes pending requests.
            with contextlib.suppress(Exception):
                connection.ioloop.add_callback_threadsafe(self._flush)
        return requests

    def _wait(self, requests: Sequence[PublishRequest], timeout: float | None) -> None:
        limit = timeout if timeout is not None else self.publish_timeout
        deadline = time.monotonic() + limit
        for request in requests:
            if not request.outcome.wait(max(0.0, deadline - time.monotonic())):
                request.abandoned = True
                raise PublishTimeoutError(self._timeout_reason(request, limit))
            if request.outcome.error is not None:
                raise request.outcome.error

    def _timeout_reason(self, request: PublishRequest, limit: float) -> str:
        what = f"no publisher confirm for routing key {request.routing_key!r} within {limit:g}s"
        if self._blocked_reason is not None:
            return f"{what}: the broker has blocked the connection ({self._blocked_reason})"
        if not self._ready:
            return f"{what}: not connected to the broker ({self._last_error or 'connecting'})"
        return what

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="rabbitq-publisher", daemon=True)
            self._thread.start()

    # -- I/O thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._lock:
                if self._closing and not self._pending:
                    return
            started = time.monotonic()
            self._connect_and_serve()
            with self._lock:
                if self._closing:
                    self._fail_pending(PublishError("publisher closed before the confirm"))
                    return
            # Back off, but not after a connection that lived a while (a one-off drop).
            attempt = 0 if time.monotonic() - started > 10 else attempt + 1
            delay = min(RECONNECT_BACKOFF_MAX, 0.1 * 2**attempt) * (0.5 + random.random() / 2)
            time.sleep(delay)

    def _connect_and_serve(self) -> None:
        try:
            nodes = pika_parameters(
                self.url,
                heartbeat=self._heartbeat,
                connection_attempts=1,
                blocked_connection_timeout=None,  # our per-call timeout governs instead
                client_properties={"connection_name": f"rabbitq-publisher-{os.getpid()}"},
            )
            self._node %= len(nodes)
            params = nodes[self._node]
            connection = pika.SelectConnection(
                params,
                on_open_callback=self._on_connection_open,
                on_open_error_callback=self._on_connection_error,
                on_close_callback=self._on_connection_closed,
            )
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._connection_failed()
            return
        with self._lock:
            self._connection = connection
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.ioloop.start()
        with self._lock:
            self._connection = None
            self._ready = False

    def _on_connection_open(self, connection: pika.SelectConnection) -> None:
        self._blocked_reason = None
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_error(self, connection: pika.SelectConnection, error: Any) -> None:
        node = endpoints(self.url)[self._node]
        self._last_error = describe_failure(node, error)
        self._node += 1
        log.warning("publisher cannot connect: %s", self._last_error)
        self._connection_failed()
        connection.ioloop.stop()

    def _on_connection_closed(self, connection: pika.SelectConnection, reason: Any) -> None:
        self._ready = False
        self._replies_ready.clear()
        self._channel = None
        self._event_channel = None
        self._event_channel_opening = False
        self._last_error = str(reason)
        self._renewing = False  # a renewal cut short by the loss: the reconnect opens anew
        if not self._closing:
            self._node += 1
            log.warning("publisher connection lost (%s); reconnecting", reason)
        self._requeue_unconfirmed()
        connection.ioloop.stop()

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(ack_nack_callback=self._on_confirm, callback=self._on_confirm_ok)

    def _on_confirm_ok(self, _frame: Any) -> None:
        self._confirms.reset()
        self._declare_exchanges(list(self._exchanges))

    def _declare_exchanges(self, remaining: list[tuple[str, str]]) -> None:
        # The exchange must exist before the first publish, or the broker closes the channel
        # (404) instead of returning an unroutable message.
        if not remaining:
            self._setup_replies(self._become_ready)
            return
        name, kind = remaining[0]
        self._channel.exchange_declare(
            exchange=name,
            exchange_type=kind,
            durable=True,
            callback=lambda _frame: self._declare_exchanges(remaining[1:]),
        )

    def _become_ready(self) -> None:
        self._ready = True
        with self._lock:
            self._down = False
        self._flush()
        self._flush_events()

    def _flush_events(self) -> None:
        """Send the buffered events (I/O thread); the first opens the event channel. Not
        while the broker blocks the connection: pika would only pile them up in its own
        unbounded buffer; they wait in ours (bounded, dropped and counted) until unblocked."""
        if not self._ready or not len(self.events) or self._blocked_reason is not None:
            return
        channel = self._event_channel
        if channel is None:
            self._open_event_channel()
            return
        for routing_key, envelope in self.events.take():
            try:
                channel.basic_publish(
                    EVENT_EXCHANGE, routing_key, envelope.body, to_pika_properties(envelope)
                )
            except Exception as exc:  # the channel went: the next events reopen it
                self.events.lost += 1
                log.debug("event lost: %s: %s", type(exc).__name__, exc)

    def _open_event_channel(self) -> None:
        connection = self._connection
        if self._event_channel_opening or connection is None or not connection.is_open:
            return
        self._event_channel_opening = True

        def declared(channel: Any) -> None:
            self._event_channel = channel
            self._event_channel_opening = False
            self._flush_events()

        def opened(channel: Any) -> None:
            channel.add_on_close_callback(self._on_event_channel_closed)
            # Durable topic, as Celery declares it: either side may come first.
            channel.exchange_declare(
                exchange=EVENT_EXCHANGE,
                exchange_type="topic",
                durable=True,
                callback=lambda _frame: declared(channel),
            )

        connection.channel(on_open_callback=opened)

    def _on_event_channel_closed(self, _channel: Any, reason: Any) -> None:
        self._event_channel = None
        self._event_channel_opening = False
        if not self._closing:
            log.warning("publisher event channel closed: %s", reason)

    def _setup_replies(self, then: Callable[[], None]) -> None:
        name, channel = self._reply_queue, self._channel
        if name is None or channel is None:
            then()
            return

        def consuming(_frame: Any) -> None:
            self._replies_ready.set()
            then()

        channel.queue_declare(
            queue=name,
            exclusive=True,
            auto_delete=True,
            callback=lambda _frame: channel.basic_consume(
                name, self._on_reply_message, auto_ack=True, callback=consuming
            ),
        )

    def _on_reply_message(
        self, _channel: Any, _method: Any, properties: pika.BasicProperties, body: bytes
    ) -> None:
        if self._on_reply is not None:
            self._on_reply(envelope_from_properties(properties, body))

    def _on_channel_closed(self, channel: Any, reason: Any) -> None:
        self._ready = False
        self._replies_ready.clear()
        self._channel = None
        renewing, self._renewing = self._renewing, False
        connection = self._connection
        if self._closing and renewing:
            # Closed by us while closing: what it held unconfirmed gets no confirm now.
            for request in self._confirms.take_unconfirmed():
                request.resolve(PublishError("publisher closed before the confirm"))
            return
        if connection is None or not connection.is_open or self._closing:
            return
        if renewing:
            # Closed by us after a nack: what was in flight goes again, on the new channel,
            # but for a caller who decides itself (``reconnect=False``, publish_retry.py).
            self._hand_back_unconfirmed(
                PublishConnectionError(
                    "the publishing channel was renewed before the confirm; the broker may or "
                    "may not have the message"
                )
            )
            connection.channel(on_open_callback=self._on_channel_open)
            return
        # A channel error (e.g. a message over the broker's max size) is not transient:
        # fail what was in flight with the broker's reason instead of resending it forever.
        log.warning("publisher channel closed by the broker: %s", reason)
        error = PublishError(f"the broker closed the publishing channel: {reason}")
        for request in self._confirms.take_unconfirmed():
            request.resolve(error)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        self._blocked_reason = getattr(frame.method, "reason", "") or "resource alarm"
        log.warning("broker blocked the publisher connection: %s", self._blocked_reason)

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        log.info("broker unblocked the publisher connection")
        self._blocked_reason = None
        self._flush_events()

    def _flush(self) -> None:
        if not self._ready or self._channel is None:
            return
        while True:
            with self._lock:
                if not self._pending:
                    return
                request = self._pending.popleft()
            if request.abandoned or request.outcome.done():
                continue
            try:
                self._channel.basic_publish(
                    request.exchange,
                    request.routing_key,
                    request.envelope.body,
                    to_pika_properties(request.envelope),
                    mandatory=True,
                )
            except Exception as exc:
                request.resolve(PublishError(f"publish failed: {type(exc).__name__}: {exc}"))
                continue
            self._confirms.sent(request)

    def _on_return(
        self, _channel: Any, _method: Any, properties: pika.BasicProperties, _body: bytes
    ) -> None:
        self._confirms.returned(properties.message_id)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        again = self._confirms.confirmed(
            method.delivery_tag,
            multiple=bool(method.multiple),
            ack=isinstance(method, pika.spec.Basic.Ack),
        )
        if not again:
            return
        if self._closing:
            # No fresh channel is coming: a nack is the answer.
            for request in again:
                request.resolve(PublishNackedError("the broker nacked the message"))
            return
        # Sent again first, on a fresh channel (``ConfirmTracker.confirmed`` says why).
        with self._lock:
            self._pending.extendleft(reversed(again))
        self._renew_channel()

    def _renew_channel(self) -> None:
        channel = self._channel
        if self._renewing or channel is None or not channel.is_open:
            return
        self._renewing = True
        self._ready = False
        channel.close()

    def _requeue_unconfirmed(self) -> None:
        reason = self._last_error or "connection lost"
        self._hand_back_unconfirmed(
            PublishConnectionError(
                "the connection was lost before the confirm; the broker may or may not have "
                f"the message ({reason})"
            )
        )
        self._connection_failed()

    def _hand_back_unconfirmed(self, lost: PublishConnectionError) -> None:
        # Sent but never confirmed: the broker may or may not have it. Send again on the next
        # channel, ahead of newer requests (at-least-once), unless its caller decides
        # (reconnect=False): then it fails now, and publish_retry.py may send it again.
        in_flight = self._confirms.take_unconfirmed()
        for request in in_flight:
            if not request.reconnect:
                request.resolve(lost)
        with self._lock:
            self._pending.extendleft(reversed([r for r in in_flight if r.reconnect]))

    def _connection_failed(self) -> None:
        """Mark the connection down; fail the waiting publishes that do not wait for the next."""
        error = self._not_connected()
        with self._lock:
            self._down = True
            waiting = [r for r in self._pending if r.reconnect]
            for request in self._pending:
                if not request.reconnect:
                    request.resolve(error)
            self._pending = collections.deque(waiting)

    def _not_connected(self) -> PublishConnectionError:
        reason = self._last_error or "connection failed"
        return PublishConnectionError(f"not connected to the broker ({reason}): not sent")

    def _fail_pending(self, error: PublishError) -> None:
        while self._pending:
            self._pending.popleft().resolve(error)

    def _close_connection(self) -> None:
        connection = self._connection
        if connection is None:
            return
        # A task-sent event right before close() may still wait for its channel to open.
        events_waiting = (
            len(self.events) > 0 and self._ready and time.monotonic() < self._close_deadline
        )
        if (len(self._confirms) or events_waiting) and connection.is_open:
            # Let in-flight confirms arrive first; close() waits up to its timeout for them.
            self._flush_events()
            connection.ioloop.call_later(0.01, self._close_connection)
            return
        if connection.is_open:
            connection.close()
        else:
            connection.ioloop.stop()


_live_publishers: weakref.WeakSet[BlockingPublisher] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    for publisher in list(_live_publishers):
        publisher.close(timeout=2.0)
