"""Celery's remote-control mailbox ("pidbox") on the wire: pure encoding, no I/O.

Kombu's ``Mailbox('celery', type='fanout')`` as Celery 5 uses it:

* requests go to the fanout exchange ``celery.pidbox`` (routing key ``''``), so every node's
  queue ``<nodename>.celery.pidbox`` gets each one; the body says ``method``, ``arguments``,
  ``destination`` (a list of node names, or null for all), ``pattern``/``matcher`` (glob or
  pcre), and, when replies are wanted, ``ticket`` and ``reply_to``;
* a node answers ``{nodename: value}`` on the direct exchange ``reply.celery.pidbox`` with
  the asker's routing key, the ``ticket`` in a header; an error is ``{"error": why}``;
* every queue is exclusive (RabbitMQ 4.3 refuses transient non-exclusive queues, and Celery
  5.7 declares them so), auto-deleted, with a 10 s ``x-expires`` and a 300 s message TTL:
  a request nobody takes in time is dropped, never delivered late.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field
from typing import Any

from rabbitq.errors import MessageDecodeError
from rabbitq.message import Envelope
from rabbitq.serializers import JSON, serializer_for_content_type
from rabbitq.topology import CONTROL_EXCHANGE, CONTROL_REPLY_EXCHANGE

QUEUE_SUFFIX = f".{CONTROL_EXCHANGE}"  # <nodename>.celery.pidbox
REPLY_SUFFIX = f".{CONTROL_REPLY_EXCHANGE}"  # <oid>.reply.celery.pidbox
# Celery's control_queue_expires (10 s) and control_queue_ttl (300 s), in milliseconds.
QUEUE_ARGUMENTS: dict[str, Any] = {"x-expires": 10_000, "x-message-ttl": 300_000}


def node_queue(nodename: str) -> str:
    return f"{nodename}{QUEUE_SUFFIX}"


def reply_queue(oid: str) -> str:
    return f"{oid}{REPLY_SUFFIX}"


@dataclass(frozen=True)
class Request:
    method: str
    arguments: dict[str, Any] = field(default_factory=dict)
    destination: list[str] | None = None
    pattern: str | None = None
    matcher: str | None = None
    ticket: str | None = None
    reply_exchange: str | None = None
    reply_routing_key: str | None = None
    serializer_content_type: str = JSON.content_type

    @property
    def wants_reply(self) -> bool:
        return self.ticket is not None and self.reply_routing_key is not None

    def is_for(self, nodename: str) -> bool:
        """Kombu's rule: a destination list names nodes exactly; else a pattern matches;
        else every node."""
        if self.destination is not None:
            return nodename in self.destination
        if self.pattern and self.matcher:
            return matches(nodename, self.pattern, self.matcher)
        return True


def matches(nodename: str, pattern: str, matcher: str) -> bool:
    if matcher == "glob":
        return fnmatch.fnmatchcase(nodename, pattern)
    if matcher == "pcre":
        try:
            return re.search(pattern, nodename) is not None
        except re.error:
            return False
    return False


def decode_request(envelope: Envelope) -> Request:
    serializer = serializer_for_content_type(envelope.content_type or JSON.content_type)
    try:
        body = serializer.loads(envelope.body)
    except Exception as exc:
        raise MessageDecodeError(f"control request is not valid {serializer.name}: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        raise MessageDecodeError("control request without a method")
    arguments = body.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise MessageDecodeError("control request arguments must be a mapping")
    destination = body.get("destination")
    if destination is not None and not (
        isinstance(destination, list) and all(isinstance(d, str) for d in destination)
    ):
        raise MessageDecodeError("control request destination must be a list of node names")
    reply_to = body.get("reply_to")
    if not isinstance(reply_to, dict):
        reply_to = {}
    ticket = body.get("ticket")
    return Request(
        body["method"],
        {str(k): v for k, v in arguments.items()},
        destination,
        _text(body.get("pattern")),
        _text(body.get("matcher")),
        str(ticket) if ticket is not None else None,
        _text(reply_to.get("exchange")),
        _text(reply_to.get("routing_key")),
        serializer.content_type,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def encode_request(request: Request, clock: int = 0, timeout: float | None = None) -> Envelope:
    body: dict[str, Any] = {
        "method": request.method,
        "arguments": request.arguments,
        "destination": request.destination,
        "pattern": request.pattern,
        "matcher": request.matcher,
    }
    if request.wants_reply:
        body["ticket"] = request.ticket
        body["reply_to"] = {
            "exchange": request.reply_exchange or CONTROL_REPLY_EXCHANGE,
            "routing_key": request.reply_routing_key,
        }
    headers: dict[str, Any] = {"clock": clock}
    if timeout is not None:
        headers["expires"] = time.time() + timeout
    return Envelope(
        JSON.dumps(body), headers, content_type=JSON.content_type, content_encoding="utf-8"
    )


def encode_reply(request: Request, nodename: str, value: Any, clock: int = 0) -> Envelope:
    serializer = serializer_for_content_type(request.serializer_content_type)
    return Envelope(
        serializer.dumps({nodename: value}),
        {"ticket": request.ticket, "clock": clock},
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        delivery_mode=1,
    )


def decode_reply(envelope: Envelope) -> dict[str, Any]:
    serializer = serializer_for_content_type(envelope.content_type or JSON.content_type)
    body = serializer.loads(envelope.body)
    if not isinstance(body, dict):
        raise MessageDecodeError("control reply is not a mapping")
    return body
