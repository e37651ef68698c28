"""Bookkeeping of publishes in flight on one confirming channel. Pure: no I/O.

After ``confirm.select`` the broker numbers the channel's publishes 1, 2, 3... and answers
each with ``basic.ack`` or ``basic.nack`` (``multiple`` covers every tag up to the given one).
A mandatory message that no queue binds comes back first as ``basic.return``, which carries
no delivery tag: RabbitMQ sends it before the ack of the same message and in publish order,
so it belongs to the oldest in-flight publish with the same message id.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from dataclasses import dataclass, field

from rabbitq.errors import PublishError, PublishNackedError, UnroutableError
from rabbitq.message import Envelope


class Outcome:
    """A one-shot result slot; cheaper than a Future (one lock, one wake-up)."""

    __slots__ = ("_done", "_is_set", "error")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._is_set = False
        self.error: PublishError | None = None

    def done(self) -> bool:
        return self._is_set

    def set(self, error: PublishError | None) -> None:
        # Only the publisher's I/O thread sets outcomes, so check-then-act does not race.
        if not self._is_set:
            self._is_set = True
            self.error = error
            self._done.release()

    def wait(self, timeout: float) -> bool:
        if self._done.acquire(timeout=timeout):
            self._done.release()  # stay "done" for any later look
            return True
        return False


@dataclass(eq=False)
class PublishRequest:
    exchange: str
    routing_key: str
    envelope: Envelope
    outcome: Outcome = field(default_factory=Outcome)
    returned: bool = False
    abandoned: bool = False  # the caller timed out: do not (re)send it
    # Nacked once already: sent again on a fresh channel, a second nack is the answer.
    nacked: bool = False
    # False: a connection error fails it (PublishConnectionError) instead of it waiting for
    # the reconnect and being sent again (publish_retry.py decides what follows).
    reconnect: bool = True

    def resolve(self, error: PublishError | None) -> None:
        self.outcome.set(error)


class ConfirmTracker:
    """Matches the broker's acks, nacks and returns to the requests that were published."""

    def __init__(self) -> None:
        self._next_tag = 1
        self._unconfirmed: dict[int, PublishRequest] = {}
        self._by_message_id: dict[str | None, collections.deque[PublishRequest]] = {}

    def __len__(self) -> int:
        return len(self._unconfirmed)

    def reset(self) -> None:
        """A new channel numbers its publishes from 1 again."""
        self._next_tag = 1
        self._unconfirmed.clear()
        self._by_message_id.clear()

    def sent(self, request: PublishRequest) -> None:
        self._unconfirmed[self._next_tag] = request
        message_id = request.envelope.message_id
        self._by_message_id.setdefault(message_id, collections.deque()).append(request)
        self._next_tag += 1

    def returned(self, message_id: str | None) -> None:
        for request in self._by_message_id.get(message_id, ()):
            if not request.returned:
                request.returned = True
                return

    def confirmed(self, delivery_tag: int, *, multiple: bool, ack: bool) -> list[PublishRequest]:
        """Resolve what the ack or nack covers; returns the requests nacked for the first time,
        unresolved, for the publisher to send again on a fresh channel.

        Why once more: after a quorum queue's leader moves (a node lost), a channel that had
        published to it may go on nacking every publish to it (RabbitMQ 3.10 does, until the
        channel is closed), while a new channel's publishes are taken. A second nack, on the
        fresh channel, is the broker's answer (a full queue with ``reject-publish``).
        """
        tags = (
            [tag for tag in self._unconfirmed if tag <= delivery_tag]
            if multiple
            else [delivery_tag]
        )
        again: list[PublishRequest] = []
        for tag in tags:
            request = self._unconfirmed.pop(tag, None)
            if request is None:
                continue
            self._forget_message_id(request)
            if not ack and not request.nacked and not request.abandoned:
                request.nacked = True
                request.returned = False
                again.append(request)
            elif not ack:
                request.resolve(PublishNackedError("the broker nacked the message"))
            elif request.returned:
                request.resolve(UnroutableError(request.routing_key, request.exchange))
            else:
                request.resolve(None)
        return again

    def take_unconfirmed(self) -> list[PublishRequest]:
        """Everything sent but not confirmed, oldest first; the tracker is left empty."""
        in_flight = [self._unconfirmed[tag] for tag in sorted(self._unconfirmed)]
        self.reset()
        for request in in_flight:
            request.returned = False
        return in_flight

    def _forget_message_id(self, request: PublishRequest) -> None:
        queue = self._by_message_id.get(request.envelope.message_id)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(request)
            if not queue:
                del self._by_message_id[request.envelope.message_id]
