"""The application: configuration, the task registry, and the one path every publish takes.

Configuration is read here and nowhere else: constructor arguments first, then the
environment (``RABBITQ_BROKER_URL``, ``RABBITQ_ROUTING``), then defaults.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.blocking import BlockingPublisher
from rabbitq.amqp.declare import (
    declare_delay_levels,
    ensure_queue,
    run_blocking,
    with_connection,
)
from rabbitq.delays import ROUTE, delay_ms_until, delayed_route
from rabbitq.errors import ConfigurationError, UnknownTaskError
from rabbitq.message import Envelope, TaskMessage, encode_task, utcnow
from rabbitq.result import AsyncResult
from rabbitq.retries import RetryPolicy
from rabbitq.routing import load_routing, route_for_task, validate_routing_key
from rabbitq.serializers import serializer_named
from rabbitq.task import PublishOptions, Task
from rabbitq.topology import TASK_EXCHANGE, Topology

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_QUEUE = "default"


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
        return self.exchange != TASK_EXCHANGE


class App:
    """A rabbitq application: ``app = rabbitq.App("shop", broker="amqp://...")``."""

    def __init__(
        self,
        name: str = "rabbitq",
        broker: str | None = None,
        *,
        routing: str | os.PathLike[str] | Topology | None = None,
        serializer: str = "msgpack",
        default_queue: str = DEFAULT_QUEUE,
        publish_timeout: float = 30.0,
        redelivery_limit: int = 5,
        declare_queues_on_publish: bool = True,
    ) -> None:
        self.name = name
        self.broker_url = broker or os.environ.get("RABBITQ_BROKER_URL") or DEFAULT_BROKER_URL
        self.topology = _load_topology(routing)
        self.serializer = serializer_named(serializer)
        self.default_queue = default_queue
        self.publish_timeout = publish_timeout
        if redelivery_limit < 1:
            raise ConfigurationError("redelivery_limit must be at least 1")
        self.redelivery_limit = redelivery_limit
        self.declare_queues_on_publish = declare_queues_on_publish
        self.tasks: dict[str, Task] = {}
        self._publisher: BlockingPublisher | None = None
        self._publisher_lock = threading.Lock()
        self._async_publishers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncPublisher
        ] = weakref.WeakKeyDictionary()
        self._ensured_queues: set[str] = set()
        self._ensured_pid = os.getpid()
        self._delay_levels_pid: int | None = None

    def __repr__(self) -> str:
        return f"<App {self.name} tasks={len(self.tasks)}>"

    # -- registry -----------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[..., Any], /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        routing_key: str | None = None,
        bind: bool = False,
        serializer: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        autoretry_for: tuple[type[BaseException], ...] = (),
        max_retries: int | None = 3,
        retry_backoff: bool | float = False,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        default_retry_delay: float = 180.0,
    ) -> Callable[[Callable[..., Any]], Task]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        routing_key: str | None = None,
        bind: bool = False,
        serializer: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        autoretry_for: tuple[type[BaseException], ...] = (),
        max_retries: int | None = 3,
        retry_backoff: bool | float = False,
        retry_backoff_max: float = 600.0,
        retry_jitter: bool = True,
        default_retry_delay: float = 180.0,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a task: ``@app.task`` or ``@app.task(queue="reports", ...)``.

        Retry options keep Celery's names: ``autoretry_for``, ``max_retries`` (None: forever),
        ``retry_backoff``, ``retry_backoff_max``, ``retry_jitter``, ``default_retry_delay``.
        """
        policy = RetryPolicy(
            autoretry_for=tuple(autoretry_for),
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            retry_jitter=retry_jitter,
            default_retry_delay=default_retry_delay,
        )

        def register(function: Callable[..., Any]) -> Task:
            task_name = name or f"{function.__module__}.{function.__qualname__}"
            if task_name in self.tasks and self.tasks[task_name].fn is not function:
                raise ConfigurationError(f"a different task is already named {task_name!r}")
            if routing_key is not None and (problem := validate_routing_key(routing_key)):
                raise ConfigurationError(f"task {task_name!r}: bad routing_key: {problem}")
            if serializer is not None:
                serializer_named(serializer)
            task = Task(
                self,
                function,
                name=task_name,
                queue=queue,
                routing_key=routing_key,
                bind=bind,
                serializer=serializer,
                time_limit=time_limit,
                soft_time_limit=soft_time_limit,
                retry_policy=policy,
            )
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    def get_task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTaskError(name) from None

    # -- routing and message building (pure) ----------------------------------------------------

    def route(self, task_name: str, options: PublishOptions, task: Task | None = None) -> Route:
        """Explicit options win, then the routing file, then the task's own, then the default.

        Operations own the routing file, so it overrides what the code's decorator says.
        """
        if options.routing_key is not None:
            return Route(options.routing_key, options.queue)
        if options.queue is not None:
            return Route(options.queue, options.queue)
        configured = route_for_task(self.topology, task_name)
        if configured is not None:
            return Route(configured, None)
        if task is not None and task.routing_key is not None:
            return Route(task.routing_key, task.queue)
        queue = (task.queue if task is not None else None) or self.default_queue
        return Route(queue, queue)

    def prepare(
        self,
        task_name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: PublishOptions,
        task: Task | None = None,
    ) -> PreparedMessage:
        """Build the wire message and its route; raises before anything is sent."""
        route = self.route(task_name, options, task)
        if problem := validate_routing_key(route.routing_key):
            raise ConfigurationError(f"bad routing key {route.routing_key!r}: {problem}")
        serializer_name = options.serializer or (task.serializer if task else None)
        serializer = serializer_named(serializer_name) if serializer_name else self.serializer
        if options.priority is not None and not 0 <= options.priority <= 255:
            raise ConfigurationError(f"priority must be 0..255, got {options.priority}")
        time_limit = options.time_limit or (task.time_limit if task else None)
        soft_limit = options.soft_time_limit or (task.soft_time_limit if task else None)
        eta = _eta(options.countdown, options.eta)
        message = TaskMessage(
            task=task_name,
            eta=eta,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            expires=_absolute_time(options.expires, "expires"),
            priority=options.priority,
            parent_id=options.parent_id,
            root_id=options.root_id,
            timelimit=(soft_limit, time_limit),
            headers=dict(options.headers or {}),
        )
        if options.task_id is not None:
            message.id = options.task_id
            message.root_id = options.root_id or options.task_id
        try:
            envelope = encode_task(message, serializer)
        except TypeError as exc:
            raise ConfigurationError(f"cannot serialize arguments of {task_name}: {exc}") from exc
        delay_ms = delay_ms_until(eta, utcnow()) if eta is not None else 0
        if delay_ms > 0:
            delayed = delayed_route(delay_ms, ROUTE, route.routing_key)
            return PreparedMessage(
                message.id, route, envelope, delayed.exchange, delayed.routing_key
            )
        return PreparedMessage(message.id, route, envelope, TASK_EXCHANGE, route.routing_key)

    # -- publishing ---------------------------------------------------------------------------

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        _task: Task | None = None,
        **options: Any,
    ) -> AsyncResult:
        """Publish a task by name (it need not be registered here), as Celery's ``send_task``."""
        prepared = self.prepare(name, args, kwargs, _options(options), _task)
        self._ensure_queue_sync(prepared.route.queue)
        if prepared.delayed:
            self._ensure_delay_levels_sync()
        self.publisher.publish(prepared.routing_key, prepared.envelope, exchange=prepared.exchange)
        return AsyncResult(prepared.task_id, self, name)

    async def asend_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        _task: Task | None = None,
        **options: Any,
    ) -> AsyncResult:
        """``send_task`` for asyncio code."""
        prepared = self.prepare(name, args, kwargs, _options(options), _task)
        publisher = self.async_publisher()
        await self._ensure_queue_async(prepared.route.queue, publisher)
        if prepared.delayed and not self._delay_levels_ready():
            assert publisher.connection is not None
            await declare_delay_levels(publisher.connection, self.topology.delay_queue_type)
            self._delay_levels_pid = os.getpid()
        await publisher.publish(prepared.routing_key, prepared.envelope, exchange=prepared.exchange)
        return AsyncResult(prepared.task_id, self, name)

    @property
    def publisher(self) -> BlockingPublisher:
        """The process's synchronous publisher (made on first use, remade after a fork)."""
        with self._publisher_lock:
            if self._publisher is None:
                self._publisher = BlockingPublisher(
                    self.broker_url, publish_timeout=self.publish_timeout
                )
            return self._publisher

    def async_publisher(self) -> AsyncPublisher:
        """The publisher of the running event loop (one per loop)."""
        loop = asyncio.get_running_loop()
        publisher = self._async_publishers.get(loop)
        if publisher is None:
            publisher = AsyncPublisher(self.broker_url, publish_timeout=self.publish_timeout)
            self._async_publishers[loop] = publisher
        return publisher

    def _queues_to_ensure(self, queue: str | None) -> bool:
        if self._ensured_pid != os.getpid():
            self._ensured_queues = set()
            self._ensured_pid = os.getpid()
        return (
            self.declare_queues_on_publish
            and queue is not None
            and (queue not in self._ensured_queues)
        )

    def _ensure_queue_sync(self, queue: str | None) -> None:
        # Celery users expect delay() to work before any worker has started: declare the
        # target queue once per process (skipped if it exists, whatever its arguments).
        if not self._queues_to_ensure(queue):
            return
        assert queue is not None
        spec = self.topology.queue(queue)
        run_blocking(with_connection(self.broker_url, lambda conn: ensure_queue(conn, spec)))
        self._ensured_queues.add(queue)

    async def _ensure_queue_async(self, queue: str | None, publisher: AsyncPublisher) -> None:
        if not self._queues_to_ensure(queue):
            return
        assert queue is not None
        await publisher.connect()
        assert publisher.connection is not None
        await ensure_queue(publisher.connection, self.topology.queue(queue))
        self._ensured_queues.add(queue)

    def _delay_levels_ready(self) -> bool:
        return self._delay_levels_pid == os.getpid()

    def _ensure_delay_levels_sync(self) -> None:
        # Declared once per process, all levels together (see amqp/declare.py for why).
        if not self._delay_levels_ready():
            kind = self.topology.delay_queue_type
            run_blocking(
                with_connection(self.broker_url, lambda conn: declare_delay_levels(conn, kind))
            )
            self._delay_levels_pid = os.getpid()

    def close(self) -> None:
        """Close the synchronous publisher (waits briefly for in-flight confirms)."""
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None

    async def aclose(self) -> None:
        """Close the running loop's async publisher."""
        publisher = self._async_publishers.pop(asyncio.get_running_loop(), None)
        if publisher is not None:
            await publisher.close()


_OPTION_NAMES = frozenset(PublishOptions.__dataclass_fields__)


def _options(options: Mapping[str, Any]) -> PublishOptions:
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(
            f"unknown apply_async option(s): {', '.join(sorted(unknown))}; "
            f"expected any of: {', '.join(sorted(_OPTION_NAMES))}"
        )
    return PublishOptions(**options)


def _absolute_time(value: float | dt.datetime | None, name: str) -> dt.datetime | None:
    """Seconds from now, or an aware datetime. Naive datetimes are ambiguous: rejected."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc)), got {value!r}"
            )
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return utcnow() + dt.timedelta(seconds=value)
    raise ConfigurationError(f"{name} must be seconds or an aware datetime, got {value!r}")


def _eta(countdown: float | None, eta: dt.datetime | None) -> dt.datetime | None:
    if countdown is not None and eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int | float):
            raise ConfigurationError(f"countdown must be a number of seconds, got {countdown!r}")
        return utcnow() + dt.timedelta(seconds=countdown) if countdown > 0 else None
    if eta is not None:
        return _absolute_time(eta, "eta")
    return None


def _load_topology(routing: str | os.PathLike[str] | Topology | None) -> Topology:
    if isinstance(routing, Topology):
        return routing
    path = routing or os.environ.get("RABBITQ_ROUTING")
    return load_routing(path) if path else Topology()


def load_app(path: str) -> App:
    """Import ``module[:attribute]`` and return the App it names (``-A shop.tasks``)."""
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"cannot import app module {module_name!r}: {exc}") from exc
    if attribute:
        found = getattr(module, attribute, None)
        if not isinstance(found, App):
            raise ConfigurationError(f"{path!r} does not name a rabbitq.App")
        return found
    apps = [value for value in vars(module).values() if isinstance(value, App)]
    if len(apps) != 1:
        raise ConfigurationError(
            f"module {module_name!r} defines {len(apps)} rabbitq.App objects; "
            f"name one as {module_name}:ATTRIBUTE"
        )
    return apps[0]
