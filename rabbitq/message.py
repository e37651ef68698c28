"""The wire format: Celery's message protocol, version 2.

A task message is an AMQP message whose properties and headers say which task to run and
whose body is ``[args, kwargs, embed]``::

    properties: message_id = correlation_id = task id, content_type, content_encoding,
                delivery_mode = 2 (persistent), reply_to, priority
    headers:    lang, task, id, root_id, parent_id, group, eta, expires (ISO 8601),
                retries, timelimit [hard, soft], argsrepr, kwargsrepr, origin,
                plus rabbitq_* headers that Celery ignores, among them rabbitq_sent_at:
                when it was published (epoch milliseconds; ``SENT_AT_HEADER``)
    body:       [args, kwargs, {"callbacks", "errbacks", "chain", "chord"}]

Speaking Celery's protocol lets a team move one queue at a time between Celery and rabbitq.
This module is pure: it turns ``TaskMessage`` into an ``Envelope`` and back.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import reprlib
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rabbitq.errors import MessageDecodeError
from rabbitq.serializers import Serializer, serializer_for_content_type

PROTOCOL_HEADERS = frozenset(
    {
        "lang", "task", "id", "root_id", "parent_id", "group", "group_index", "eta", "expires",
        "retries", "timelimit", "argsrepr", "kwargsrepr", "origin", "shadow", "meth",
        "ignore_result", "replaced_task_nesting", "stamped_headers", "stamps",
    }
)  # fmt: skip

# RabbitMQ's own dead-lettering bookkeeping (added when a message expires from a delay level
# or is dead-lettered). Never carried into a republished message: see retries.py.
BROKER_DEATH_HEADERS = frozenset(
    {
        "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason",
    }
)  # fmt: skip

# When rabbitq published the message, in whole milliseconds since the epoch: an integer
# because pika's AMQP tables have no float. The worker's queue-wait metric reads it (a
# Celery producer's messages carry none, and are left out of that metric).
SENT_AT_HEADER = "rabbitq_sent_at"


def sent_at_ms(now: float) -> int:
    """``now`` (``time.time()``) as the value of ``SENT_AT_HEADER``."""
    return int(now * 1000)


def sent_at_of(headers: Mapping[str, Any]) -> float | None:
    """The publish time in ``headers`` (epoch seconds), or None when it carries none."""
    value = headers.get(SENT_AT_HEADER)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value / 1000
    return None


_repr = reprlib.Repr()
_repr.maxstring = 256
_repr.maxother = 256


@dataclass
class Envelope:
    """An AMQP message as plain data, independent of pika and aio-pika."""

    body: bytes
    headers: dict[str, Any]
    content_type: str | None = None
    content_encoding: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    priority: int | None = None
    delivery_mode: int = 2  # persistent: a broker restart must not lose a task
    expiration: str | None = None


def envelope_from_properties(properties: Any, body: bytes) -> Envelope:
    """An incoming message as an ``Envelope``.

    ``properties`` is pika's ``BasicProperties`` or aiormq's (pamqp's) ``Basic.Properties``:
    both carry the AMQP property names, so one function serves the CLI and the worker.
    """
    return Envelope(
        body=body,
        headers=dict(properties.headers or {}),
        content_type=properties.content_type,
        content_encoding=properties.content_encoding,
        message_id=properties.message_id,
        correlation_id=properties.correlation_id,
        reply_to=properties.reply_to,
        priority=properties.priority,
        delivery_mode=int(properties.delivery_mode or 2),
    )


def properties_of(envelope: Envelope) -> dict[str, Any]:
    """The AMQP basic properties by their protocol names, which pika's ``BasicProperties``
    and pamqp's ``Basic.Properties`` both take (the reverse of ``envelope_from_properties``)."""
    return {
        "content_type": envelope.content_type,
        "content_encoding": envelope.content_encoding,
        "headers": envelope.headers,
        "delivery_mode": envelope.delivery_mode,
        "priority": envelope.priority,
        "correlation_id": envelope.correlation_id,
        "reply_to": envelope.reply_to,
        "message_id": envelope.message_id,
        "expiration": envelope.expiration,
    }


@dataclass
class TaskMessage:
    """One request to run a task, as both producers and workers see it."""

    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    eta: dt.datetime | None = None
    expires: dt.datetime | None = None
    retries: int = 0
    timelimit: tuple[float | None, float | None] = (None, None)  # (soft, hard) seconds
    origin: str | None = None
    reply_to: str | None = None
    priority: int | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None
    ignore_result: bool = False  # the producer does not want the result stored
    # rabbitq_* embed keys (canvas bookkeeping) travel here; Celery ignores them.
    embed_extras: dict[str, Any] = field(default_factory=dict)
    # Headers that are not part of the protocol: user headers and rabbitq_* bookkeeping.
    headers: dict[str, Any] = field(default_factory=dict)
    # The serializer the body came in ("json", "msgpack"); set by decode_task. Results are
    # written in it by default, so a Celery caller that accepts only JSON can read them.
    serializer: str | None = None

    def __post_init__(self) -> None:
        if self.root_id is None:
            self.root_id = self.id

    def is_expired(self, now: dt.datetime | None = None) -> bool:
        if self.expires is None:
            return False
        return (now or utcnow()) >= self.expires


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_origin() -> str:
    return _origin_of(os.getpid())


# Keyed by pid: once per process (gethostname is a system call), again in a forked child.
@functools.lru_cache(maxsize=1)
def _origin_of(pid: int) -> str:
    return f"{pid}@{socket.gethostname()}"


def _args_repr(args: Sequence[Any]) -> str:
    # ``delay()`` without arguments is common: skip reprlib for the empty tuple.
    return _repr.repr(tuple(args)) if args else "()"


def _kwargs_repr(kwargs: Mapping[str, Any]) -> str:
    return _repr.repr(dict(kwargs)) if kwargs else "{}"


def encode_task(message: TaskMessage, serializer: Serializer) -> Envelope:
    """Build the AMQP message for ``message``: Celery protocol v2 headers and body."""
    embed: dict[str, Any] = {
        "callbacks": message.callbacks,
        "errbacks": message.errbacks,
        "chain": message.chain,
        "chord": message.chord,
    }
    embed.update(message.embed_extras)
    body = serializer.dumps([list(message.args), dict(message.kwargs), embed])
    headers: dict[str, Any] = dict(message.headers)
    headers.update(
        {
            "lang": "py",
            "task": message.task,
            "id": message.id,
            "root_id": message.root_id,
            "parent_id": message.parent_id,
            "group": message.group,
            "group_index": message.group_index,
            "eta": message.eta.isoformat() if message.eta else None,
            "expires": message.expires.isoformat() if message.expires else None,
            "retries": message.retries,
            "timelimit": _timelimit_header(message.timelimit),
            "argsrepr": _args_repr(message.args),
            "kwargsrepr": _kwargs_repr(message.kwargs),
            "origin": message.origin or default_origin(),
        }
    )
    if message.ignore_result:
        headers["ignore_result"] = True
    return Envelope(
        body=body,
        headers=headers,
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        message_id=message.id,
        correlation_id=message.id,
        reply_to=message.reply_to,
        priority=message.priority,
    )


_KNOWN_EMBED = frozenset({"callbacks", "errbacks", "chain", "chord"})


def decode_task(envelope: Envelope) -> TaskMessage:
    """Parse a protocol v2 message. Anything malformed raises ``MessageDecodeError``."""
    headers = envelope.headers or {}
    task = headers.get("task")
    task_id = headers.get("id") or envelope.correlation_id or envelope.message_id
    if not isinstance(task, str) or not task:
        raise MessageDecodeError("missing 'task' header: not a Celery protocol v2 task message")
    if not isinstance(task_id, str) or not task_id:
        raise MessageDecodeError("missing task id ('id' header or correlation_id)")
    serializer = serializer_for_content_type(envelope.content_type)
    try:
        body = serializer.loads(envelope.body)
    except Exception as exc:  # any decoder error means the same thing: unreadable body
        raise MessageDecodeError(
            f"body is not valid {serializer.name}: {type(exc).__name__}: {exc}"
        ) from exc
    args, kwargs, embed = _split_body(body)
    return TaskMessage(
        task=task,
        args=list(args),
        kwargs=dict(kwargs),
        id=task_id,
        root_id=_optional_str(headers, "root_id") or task_id,
        parent_id=_optional_str(headers, "parent_id"),
        group=_optional_str(headers, "group"),
        group_index=headers.get("group_index")
        if isinstance(headers.get("group_index"), int)
        else None,
        eta=_parse_time(headers.get("eta"), "eta"),
        expires=_parse_time(headers.get("expires"), "expires"),
        retries=_parse_int(headers.get("retries"), "retries"),
        timelimit=_parse_timelimit(headers.get("timelimit")),
        origin=_optional_str(headers, "origin"),
        reply_to=envelope.reply_to,
        priority=envelope.priority,
        callbacks=embed.get("callbacks"),
        errbacks=embed.get("errbacks"),
        chain=embed.get("chain"),
        chord=embed.get("chord"),
        ignore_result=bool(headers.get("ignore_result")),
        serializer=serializer.name,
        embed_extras={k: v for k, v in embed.items() if k not in _KNOWN_EMBED} if embed else {},
        headers={
            k: v
            for k, v in headers.items()
            if k not in PROTOCOL_HEADERS and k not in BROKER_DEATH_HEADERS
        },
    )


def _split_body(body: Any) -> tuple[Sequence[Any], Mapping[str, Any], dict[str, Any]]:
    if not isinstance(body, list | tuple) or len(body) not in (2, 3):
        raise MessageDecodeError(f"body must be [args, kwargs, embed], got {type(body).__name__}")
    args, kwargs = body[0], body[1]
    embed = body[2] if len(body) == 3 else {}
    if not isinstance(args, list | tuple):
        raise MessageDecodeError(f"args must be a list, got {type(args).__name__}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise MessageDecodeError("kwargs must be a mapping with string keys")
    if embed is None:
        embed = {}
    if not isinstance(embed, dict):
        raise MessageDecodeError(f"embed must be a mapping, got {type(embed).__name__}")
    return args, kwargs, embed


def _optional_str(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _parse_time(value: Any, name: str) -> dt.datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise MessageDecodeError(f"header {name!r} is not ISO 8601: {value!r}") from None
    else:
        raise MessageDecodeError(f"header {name!r} must be an ISO 8601 string")
    # Celery sends naive times when enable_utc is on; they mean UTC.
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _parse_int(value: Any, name: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageDecodeError(f"header {name!r} must be an integer, got {value!r}")
    return value


# Celery's producers and workers put the hard limit first (``app/amqp.py``: ``[time_limit,
# soft_time_limit]``; ``worker/request.py`` reads it back that way), whatever its protocol
# page says: so does the wire here, while ``TaskMessage.timelimit`` stays ``(soft, hard)``.
def _timelimit_header(timelimit: tuple[float | None, float | None]) -> list[int | Decimal | None]:
    soft, hard = timelimit
    return [_header_seconds(hard), _header_seconds(soft)]


def _parse_timelimit(value: Any) -> tuple[float | None, float | None]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        return (None, None)
    hard, soft = value
    return (_number_or_none(soft), _number_or_none(hard))


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return float(value)
    return None


def _header_seconds(value: float | None) -> int | Decimal | None:
    """Seconds as an AMQP table takes them from every client: pika has no float type, so a
    whole number goes as an integer (what Celery's workers read best) and a fraction as a
    decimal."""
    if value is None:
        return None
    if float(value).is_integer():
        return int(value)
    return Decimal(str(value))
