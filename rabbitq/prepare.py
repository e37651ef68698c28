"""Message preparation, pure: a task call (name, arguments, options) becomes the wire message
and where it goes, before anything is sent.

Every publish takes this path: ``delay``/``apply_async``, the canvas, the worker's follow-ups
and the beat. It raises on anything that would be refused later (a bad routing key, a
priority out of range, arguments the serializer cannot encode), so a caller learns of it at
the call, never from a dead letter.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rabbitq.canvas import CHORD_OPTION, signature_dicts
from rabbitq.chunks import MAP_TASK, STARMAP_TASK
from rabbitq.delays import EXCHANGE_PREFIX, ROUTE, delay_ms_until, delayed_route
from rabbitq.errors import ConfigurationError
from rabbitq.message import SENT_AT_HEADER, Envelope, TaskMessage, encode_task, sent_at_ms, utcnow
from rabbitq.publish_options import PublishOptions, absolute_time, eta_of
from rabbitq.request import current_request
from rabbitq.routing import route_for_task, validate_routing_key
from rabbitq.serializers import Serializer, serializer_named
from rabbitq.topology import TASK_EXCHANGE, Topology

if TYPE_CHECKING:
    from rabbitq.task import Task


@dataclass
class Context:
    """What surrounds a signature being applied."""

    parent_result: tuple[Any, ...] = ()  # (value,) to prepend, or () for nothing
    reply_to: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    continuation: list[dict[str, Any]] = field(default_factory=list)  # forward order
    chord_member: dict[str, Any] | None = None
    group_id: str | None = None
    group_index: int | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    # The serializer of the message this one follows (a worker continuing a chain, calling a
    # link): used unless the task or its options name one, so a JSON-only Celery caller can
    # read the result at the end of the chain it sent.
    serializer: str | None = None


# A message outside any workflow (``delay()``): read below, never changed, so one serves all.
_NO_CANVAS = Context()


@dataclass(frozen=True)
class Route:
    """Where a message goes: its routing key, and the queue to make sure exists (if known)."""

    routing_key: str
    queue: str | None


@dataclass(frozen=True)
class PreparedMessage:
    task_id: str
    route: Route
    envelope: Envelope
    exchange: str = TASK_EXCHANGE
    routing_key: str = ""  # what is published: the route's key, or its delayed form

    @property
    def delayed(self) -> bool:
        return self.exchange.startswith(EXCHANGE_PREFIX)


class Settings(Protocol):
    """What preparing reads of the App (a protocol: this module does not import the app)."""

    @property
    def topology(self) -> Topology: ...

    @property
    def default_queue(self) -> str: ...

    @property
    def serializer(self) -> Serializer: ...

    @property
    def tasks(self) -> Mapping[str, Task]: ...


def _routed_as(
    settings: Settings, task_name: str, kwargs: Mapping[str, Any] | None, task: Task | None
) -> tuple[str, Task | None]:
    """The task whose route a message takes: itself, or for ``task.map``/``starmap``/``chunks``
    (``celery.map``/``celery.starmap``) the mapped task, so a worker on that task's queue
    runs them (Celery sends them to the default queue, which such a worker never reads)."""
    mapped = (kwargs or {}).get("task") if task_name in (MAP_TASK, STARMAP_TASK) else None
    name = mapped.get("task") if isinstance(mapped, Mapping) else None
    if not isinstance(name, str):
        return task_name, task
    return name, settings.tasks.get(name)


def route(
    settings: Settings, task_name: str, options: PublishOptions, task: Task | None = None
) -> Route:
    """Explicit options win, then the routing file, then the task's own, then the default.

    Operations own the routing file, so it overrides what the code's decorator says.
    """
    if options.routing_key is not None:
        return Route(options.routing_key, options.queue)
    if options.queue is not None:
        return Route(options.queue, options.queue)
    configured = route_for_task(settings.topology, task_name)
    if configured is not None:
        return Route(configured, None)
    if task is not None and task.routing_key is not None:
        return Route(task.routing_key, task.queue)
    queue = (task.queue if task is not None else None) or settings.default_queue
    return Route(queue, queue)


@dataclass(frozen=True)
class _Sender:
    parent_id: str | None = None
    root_id: str | None = None


_NO_SENDER = _Sender()


def _sending_task() -> _Sender:
    """A task sent by a running task is its child, as Celery has it: its parent is that
    task and its root that task's root (the trace context that logs carry, task_logs.py)."""
    running = current_request.get()
    if running is None:
        return _NO_SENDER
    return _Sender(parent_id=running.id, root_id=running.root_id or running.id)


def prepare(
    settings: Settings,
    task_name: str,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    options: PublishOptions,
    task: Task | None = None,
    canvas: Context | None = None,
    *,
    ignore_result: bool = False,
) -> PreparedMessage:
    """Build the wire message and its route; raises before anything is sent.

    ``canvas`` says where the message sits in a workflow: the steps that follow it, the chord
    it reports to, its group (see ``canvas.py``). ``ignore_result``: nobody will read the
    result (no backend, or the task or call said so), so no reply address is set.
    """
    routed_name, routed_task = _routed_as(settings, task_name, kwargs, task)
    where = route(settings, routed_name, options, routed_task)
    if problem := validate_routing_key(where.routing_key):
        raise ConfigurationError(f"bad routing key {where.routing_key!r}: {problem}")
    canvas = canvas or _NO_CANVAS
    serializer_name = options.serializer or (task.serializer if task else None) or canvas.serializer
    serializer = serializer_named(serializer_name) if serializer_name else settings.serializer
    if options.priority is not None and not 0 <= options.priority <= 255:
        raise ConfigurationError(f"priority must be 0..255, got {options.priority}")
    time_limit = options.time_limit or (task.time_limit if task else None)
    soft_limit = options.soft_time_limit or (task.soft_time_limit if task else None)
    eta = eta_of(options.countdown, options.eta)
    sender = _sending_task()
    message = TaskMessage(
        task=task_name,
        id=options.task_id or str(uuid.uuid4()),
        eta=eta,
        args=list(args or ()),
        kwargs=dict(kwargs or {}),
        expires=absolute_time(options.expires, "expires"),
        priority=options.priority,
        parent_id=options.parent_id or canvas.parent_id or sender.parent_id,
        root_id=options.root_id or canvas.root_id or sender.root_id,
        group=options.group_id or canvas.group_id,
        group_index=options.group_index if options.group_id else canvas.group_index,
        timelimit=(soft_limit, time_limit),
        reply_to=None if ignore_result else options.reply_to,
        ignore_result=ignore_result,
        callbacks=signature_dicts(options.link),
        errbacks=signature_dicts(options.link_error),
        chain=list(reversed(canvas.continuation)) or None,
        embed_extras={CHORD_OPTION: canvas.chord_member} if canvas.chord_member else {},
        # Sent-at last: a follow-up's headers may carry its parent's, and this is a publish
        # of its own (the worker's queue-wait metric counts from it).
        headers={
            **canvas.headers,
            **(options.headers or {}),
            SENT_AT_HEADER: sent_at_ms(time.time()),
        },
    )
    try:
        envelope = encode_task(message, serializer)
    except TypeError as exc:
        raise ConfigurationError(f"cannot serialize arguments of {task_name}: {exc}") from exc
    delay_ms = delay_ms_until(eta, utcnow()) if eta is not None else 0
    if delay_ms > 0:
        delayed = delayed_route(delay_ms, ROUTE, where.routing_key)
        return PreparedMessage(message.id, where, envelope, delayed.exchange, delayed.routing_key)
    return PreparedMessage(message.id, where, envelope, TASK_EXCHANGE, where.routing_key)
