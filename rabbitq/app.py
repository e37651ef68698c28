"""The application: configuration, the task registry, and the one path every publish takes.

Configuration is read here and nowhere else: constructor arguments first, then the
environment (``RABBITQ_BROKER_URL``, ``RABBITQ_ROUTING``), then defaults.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    Unpack,
    overload,
)

from rabbitq import prepare as preparing
from rabbitq.amqp import contract
from rabbitq.amqp.contract import BatchItem, Outcomes, raise_first
from rabbitq.beat.schedules import PeriodicEntries, PeriodicEntry, PeriodicOptions, periodic_entry
from rabbitq.broker_urls import broker_url
from rabbitq.builtin_tasks import register_builtin_tasks
from rabbitq.canvas import (
    ResultHandle,
    Signature,
)
from rabbitq.compile import compile_signature
from rabbitq.errors import ConfigurationError, UnknownTaskError
from rabbitq.events.sent import TaskSentEvents
from rabbitq.limits.spec import (
    Concurrency,
    Limit,
    LocalRate,
    Mutex,
    Rate,
    call_parameters,
    check_key,
    check_shared,
    combine,
)
from rabbitq.message_size import (
    DEFAULT_MAX_MESSAGE_SIZE,
    check_max_message_size,
    refuse_oversized,
)
from rabbitq.middleware import CelerySignals, Middleware, MiddlewareStack
from rabbitq.prepare import Context, PreparedMessage, Route
from rabbitq.publish_options import (
    OPTION_NAMES,
    PublishOptions,
    parse_options,
)
from rabbitq.publish_retry import PublishRetryPolicy, apublish_retrying, publish_retrying, resolve
from rabbitq.results.backend import ResultBackend
from rabbitq.results.factory import backend_from_url
from rabbitq.results.handles import AsyncResult as _AsyncResult
from rabbitq.results.rpc import RpcBackend
from rabbitq.retries import RetryPolicy
from rabbitq.routing import load_routing, validate_routing_key
from rabbitq.serializers import serializer_named
from rabbitq.signing import Signer, signer_from_settings
from rabbitq.task import Task, TaskOptions
from rabbitq.task_logs import LogFormat, check_log_format
from rabbitq.task_names import task_name_for
from rabbitq.timeouts import DEFAULT_CONSUMER_TIMEOUT, check_consumer_timeout
from rabbitq.topology import Topology
from rabbitq.transports import async_publisher_for, declarations_for, publisher_for

if TYPE_CHECKING:
    from rabbitq.control.client import Control

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_BROKER_URL = "amqp://guest:guest@localhost:5672/"
DEFAULT_QUEUE = "default"


class RunsPublished(Protocol):
    """Eager mode's hook (``testing/eager.py``): run what was just published, to the end."""

    def after_publish(self) -> None: ...

    async def aafter_publish(self) -> None: ...


class App:
    """A rabbitq application: ``app = rabbitq.App("shop", broker="amqp://...")``."""

    def __init__(
        self,
        name: str = "rabbitq",
        broker: str | Sequence[str] | None = None,
        *,
        broker_use_ssl: bool | Mapping[str, Any] | None = None,
        routing: str | os.PathLike[str] | Topology | None = None,
        serializer: str = "msgpack",
        default_queue: str = DEFAULT_QUEUE,
        publish_timeout: float = 30.0,
        redelivery_limit: int = 5,
        declare_queues_on_publish: bool = True,
        result_backend: str | None = None,
        result_serializer: str | None = None,
        result_expires: float | None = 86400.0,
        ignore_result: bool = False,
        track_started: bool = False,
        chord_fold_after: float = 600.0,
        chord_fold_parts: int = 1000,
        middleware: Sequence[Middleware] = (),
        followup_retry_for: float = 300.0,
        consumer_timeout: float | None = DEFAULT_CONSUMER_TIMEOUT,
        task_time_limit: float | None = None,
        task_soft_time_limit: float | None = None,
        task_publish_retry: bool = True,
        task_publish_retry_policy: Mapping[str, Any] | None = None,
        worker_send_task_events: bool = False,
        task_send_sent_event: bool = False,
        revocations_kept_for: float | None = None,
        metrics_port: int | None = None,
        metrics_bind: str = "0.0.0.0",
        log_format: str = "plain",
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        signing_key: str | bytes | None = None,
        signing_keys: Mapping[str, str | bytes] | None = None,
    ) -> None:
        self.name = name
        # One string however it was given: several nodes are joined by ";" and TLS settings
        # ride in each URL's query, so every process handed it reaches the broker the same way.
        self.broker_url = broker_url(
            broker or os.environ.get("RABBITQ_BROKER_URL") or DEFAULT_BROKER_URL, broker_use_ssl
        )
        self.topology = _load_topology(routing)
        self.serializer = serializer_named(serializer)
        self.default_queue = default_queue
        self.publish_timeout = publish_timeout
        self.max_message_size = check_max_message_size(max_message_size)
        self.signer = signer_from_settings(signing_key, signing_keys)
        # Celery's publish retries on a lost connection (``publish_retry.py``): apply_async's
        # retry/retry_policy, else the task's, else these; Celery's defaults.
        self.task_publish_retry = task_publish_retry
        self.task_publish_retry_policy = PublishRetryPolicy().updated(
            task_publish_retry_policy, "task_publish_retry_policy"
        )
        resolve(task_publish_retry, self.task_publish_retry_policy, None, None, None, None)
        if redelivery_limit < 1:
            raise ConfigurationError("redelivery_limit must be at least 1")
        self.redelivery_limit = redelivery_limit
        self.declare_queues_on_publish = declare_queues_on_publish
        self.tasks: dict[str, Task] = {}
        # Results: Celery's defaults (a day's expiry, results kept unless ignored).
        self.result_backend_url = result_backend or os.environ.get("RABBITQ_RESULT_BACKEND")
        # None: each result in the serializer its task came in (see worker/followups.py).
        self.result_serializer_name = result_serializer
        self.result_serializer = (
            serializer_named(result_serializer) if result_serializer else self.serializer
        )
        self.result_expires = result_expires
        self.ignore_result = ignore_result
        self.track_started = track_started
        # The chord coordinator folds parts held this long (or this many for one chord) into
        # one message: RabbitMQ's consumer_timeout (30 min by default) closes a channel that
        # holds a delivery unacked for longer.
        self.chord_fold_after = chord_fold_after
        self.chord_fold_parts = chord_fold_parts
        # Celery's event settings: task events from workers (``rabbitq worker -E`` too), and
        # task-sent events from this app's publishes (``events/``).
        self.worker_send_task_events = worker_send_task_events
        self.task_send_sent_event = task_send_sent_event
        # Celery's signals first, so their receivers see a task before user middleware does.
        sent_events = (TaskSentEvents(),) if task_send_sent_event else ()
        self.middleware = MiddlewareStack((CelerySignals(), *middleware, *sent_events))
        # A task that succeeded but whose follow-ups hit a transient error (broker or Redis
        # down) has them retried this long before it is dead-lettered followup-failed.
        if followup_retry_for < 0:
            raise ConfigurationError("followup_retry_for must not be negative")
        self.followup_retry_for = followup_retry_for
        # The broker's consumer timeout on worker deliveries (seconds; None: it enforces
        # none): every run stops before it (``timeouts.py``), and workers ask for it per
        # consumer where the broker allows that.
        self.consumer_timeout = check_consumer_timeout(consumer_timeout)
        # Celery's task_time_limit / task_soft_time_limit: for tasks that set none.
        self.task_time_limit = _time_limit("task_time_limit", task_time_limit)
        self.task_soft_time_limit = _time_limit("task_soft_time_limit", task_soft_time_limit)
        # A revoke is kept this long at most (seconds; default the results' expiry, or a day):
        # long enough for a task waiting in a delay level to arrive and be dropped.
        kept_for = revocations_kept_for if revocations_kept_for is not None else result_expires
        if kept_for is not None and kept_for <= 0:
            raise ConfigurationError("revocations_kept_for must be positive")
        self.revocations_kept_for: float = kept_for or 86400.0
        # ``rabbitq worker`` serves /metrics on this port (``--metrics-port`` wins; None:
        # no metrics), on this address (``metrics/endpoint.py``: why all interfaces).
        if metrics_port is not None and not 0 < metrics_port < 65536:
            raise ConfigurationError(f"metrics_port must be 1..65535, got {metrics_port}")
        self.metrics_port = metrics_port
        self.metrics_bind = metrics_bind
        # How ``rabbitq worker`` writes its log (``--log-format`` wins; ``task_logs.py``).
        self.log_format: LogFormat = check_log_format(log_format)
        self._control: Control | None = None
        self._backend: ResultBackend | None = None
        self._backend_lock = threading.Lock()
        register_builtin_tasks(self)
        self._publisher: contract.Publisher | None = None
        self._publisher_lock = threading.Lock()
        self._async_publishers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, contract.AsyncPublisher
        ] = weakref.WeakKeyDictionary()
        self._declare_once = declarations_for(self)
        self.periodic = PeriodicEntries()
        self.limits: dict[str, Limit] = {}  # the global limits declared in code, by name
        # Eager mode (Celery's task_always_eager): every publish from outside a worker runs
        # at once, here, through the in-memory broker and the worker's pipeline. Set by
        # ``rabbitq.testing.eager`` (which the app does not import: it sits above the worker).
        self.eager: RunsPublished | None = None

    def __repr__(self) -> str:
        return f"<App {self.name} tasks={len(self.tasks)}>"

    @property
    def control(self) -> Control:
        """Remote control of the workers (Celery's ``app.control``): ``revoke``, ``inspect``,
        ``ping``, ``shutdown``, ``broadcast`` (``control/client.py``)."""
        if self._control is None:
            from rabbitq.control.client import Control

            self._control = Control(self)
        return self._control

    def add_middleware(self, *middleware: Middleware) -> None:
        """Add middleware after those already installed (before workers start)."""
        self.middleware = self.middleware.added(*middleware)

    # -- registry -----------------------------------------------------------------------------

    # The overloads keep the function's signature for type checkers (``Task[P, R]``, see
    # task.py); ``bind=True`` drops the first parameter, the task itself.
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        bind: Literal[False] = False,
        **options: Unpack[TaskOptions],
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    @overload
    def task(
        self, fn: None = None, /, *, bind: Literal[True], **options: Unpack[TaskOptions]
    ) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...

    @overload
    def task(
        self, fn: None = None, /, *, bind: bool, **options: Unpack[TaskOptions]
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
        ignore_result: bool | None = None,
        publish_retry: bool | None = None,
        publish_retry_policy: Mapping[str, Any] | None = None,
        rate_limit: str | None = None,
        limits: Limit | Sequence[Limit] = (),
        **unknown: Any,
    ) -> Task | Callable[[Callable[..., Any]], Task]:
        """Register a task: ``@app.task`` or ``@app.task(queue="reports", ...)``.

        Retry options keep Celery's names: ``autoretry_for``, ``max_retries`` (None: forever),
        ``retry_backoff``, ``retry_backoff_max``, ``retry_jitter``, ``default_retry_delay``.
        ``publish_retry`` and ``publish_retry_policy`` are this task's publish retries on a lost
        connection (``apply_async(retry=, retry_policy=)`` for all its calls).
        ``rate_limit="10/s"`` is Celery's, per worker process; ``limits=`` takes global
        limits (``rabbitq.Rate``, ``Concurrency``, ``Mutex``: docs/limits.md).
        """
        refuse_unknown_task_options(unknown)
        local_rate = LocalRate(rate_limit) if rate_limit is not None else None
        own_limits = (limits,) if isinstance(limits, Rate | Concurrency | Mutex) else tuple(limits)
        policy = RetryPolicy(
            autoretry_for=tuple(autoretry_for),
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            retry_jitter=retry_jitter,
            default_retry_delay=default_retry_delay,
        )

        def register(function: Callable[..., Any]) -> Task:
            task_name = name or task_name_for(function, self.name)  # see task_names.py
            if task_name in self.tasks and self.tasks[task_name].fn is not function:
                raise ConfigurationError(f"a different task is already named {task_name!r}")
            if routing_key is not None and (problem := validate_routing_key(routing_key)):
                raise ConfigurationError(f"task {task_name!r}: bad routing_key: {problem}")
            if serializer is not None:
                serializer_named(serializer)
            checked = combine(task_name, own_limits, local_rate)
            if isinstance(checked.slot, Mutex):
                check_key(
                    task_name, checked.slot, call_parameters(inspect.signature(function), bind)
                )
            for limit in own_limits:
                check_shared(self.limits, limit)
                self.limits[limit.name] = limit
            resolve(
                self.task_publish_retry,
                self.task_publish_retry_policy,
                publish_retry,
                publish_retry_policy,
                None,
                None,
            )  # checked now, not at the first call
            task = Task(
                self,
                function,
                name=task_name,
                queue=queue,
                routing_key=routing_key,
                bind=bind,
                serializer=serializer,
                time_limit=_time_limit(f"{task_name}: time_limit", time_limit)
                or self.task_time_limit,
                soft_time_limit=_time_limit(f"{task_name}: soft_time_limit", soft_time_limit)
                or self.task_soft_time_limit,
                retry_policy=policy,
                ignore_result=ignore_result,
                publish_retry=publish_retry,
                publish_retry_policy=publish_retry_policy,
                limits=own_limits,
                rate_limit=local_rate,
            )
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    def get_task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTaskError(name) from None

    def add_periodic(
        self, sig: Signature | Task, **options: Unpack[PeriodicOptions]
    ) -> PeriodicEntry:
        """Fire ``sig`` on a schedule, from ``rabbitq beat``: ``every=`` (a timedelta, seconds or
        ``"5m"``) or ``cron=`` with ``timezone=``; ``name``, ``catch_up``, ``grace``."""
        return self.periodic.add(periodic_entry(sig.s() if isinstance(sig, Task) else sig, options))

    # -- routing and message building (pure) ----------------------------------------------------

    def route(self, task_name: str, options: PublishOptions, task: Task | None = None) -> Route:
        """Where ``task_name`` goes (``prepare.route``)."""
        return preparing.route(self, task_name, options, task)

    def prepare(
        self,
        task_name: str,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        options: PublishOptions,
        task: Task | None = None,
        canvas: Context | None = None,
    ) -> PreparedMessage:
        """Build the wire message and its route; raises before anything is sent
        (``prepare.prepare``)."""
        ignore = self.ignores_result(task, options.ignore_result)
        return preparing.prepare(
            self, task_name, args, kwargs, options, task, canvas, ignore_result=ignore
        )

    def ignores_result(self, task: Task | None, override: bool | None = None) -> bool:
        """Is this task's result thrown away? (no backend, or ignore_result said so)"""
        if self.backend is None:
            return True
        if override is not None:
            return override
        if task is not None and task.ignore_result is not None:
            return task.ignore_result
        return self.ignore_result

    def prepare_signature(self, sig: Signature, context: Context) -> PreparedMessage:
        """One task signature in its workflow ``context``, as a message."""
        # add_to_parent: a Celery signature may carry it; it changes nothing here.
        options = {
            k: v for k, v in sig.options.items() if k in OPTION_NAMES and k != "add_to_parent"
        }
        if context.reply_to and "reply_to" not in options:
            options["reply_to"] = context.reply_to
        args = list(sig.args) if sig.immutable else [*context.parent_result, *sig.args]
        task = self.tasks.get(sig.task)
        return self.prepare(sig.task, args, sig.kwargs, parse_options(options), task, context)

    # -- results ------------------------------------------------------------------------------

    @property
    def backend(self) -> ResultBackend | None:
        """The result backend, or None when results are not kept."""
        if self._backend is None and self.result_backend_url:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = backend_from_url(
                        self.result_backend_url, self.result_serializer, self.result_expires
                    )
        return self._backend

    def use_result_backend(self, url: str | None) -> None:
        """Keep results in ``url`` from now on (tests); None: results are not kept."""
        with self._backend_lock:
            self.result_backend_url = url
            self._backend = None

    def AsyncResult(self, task_id: str) -> _AsyncResult:
        """A handle on any task's result by id (``app.AsyncResult(id)``, as in Celery)."""
        return _AsyncResult(task_id, self)

    def _reply_to_sync(self, ignore: bool) -> str | None:
        backend = self.backend
        if ignore or not isinstance(backend, RpcBackend):
            return None
        return self.publisher.enable_replies(backend.accept_reply)

    async def _reply_to_async(self, ignore: bool) -> str | None:
        backend = self.backend
        if ignore or not isinstance(backend, RpcBackend):
            return None
        return await self.async_publisher().enable_replies(backend.accept_reply)

    # -- publishing ---------------------------------------------------------------------------

    def apply_signature(self, sig: Signature) -> ResultHandle:
        """Publish a signature or workflow; its messages' confirms are pipelined."""
        sig.bind(self) if sig.app is None else None
        compiled = compile_signature(
            sig,
            Context(reply_to=self._reply_to_sync(ignore=False)),
            self.prepare_signature,
        )
        self.publish_prepared(compiled.messages)
        return compiled.result

    async def aapply_signature(self, sig: Signature) -> ResultHandle:
        sig.bind(self) if sig.app is None else None
        reply_to = await self._reply_to_async(ignore=False)
        compiled = compile_signature(sig, Context(reply_to=reply_to), self.prepare_signature)
        await self.apublish_prepared(compiled.messages)
        return compiled.result

    # The two publish paths are twins: the same steps around one call to a publisher that
    # keeps the contract of ``amqp/contract.py``; only the declarations and the call differ.

    def publish_prepared(
        self, messages: Sequence[PreparedMessage], retry: PublishRetryPolicy | None = None
    ) -> None:
        """Publish with pipelined confirms; raises the first failure (after all settled).

        ``retry``: Celery's publish retries (``publish_retry.py``); None: the publisher
        reconnects and resends on its own within ``publish_timeout`` (the canvas, the worker's
        follow-ups and the beat publish that way).
        """
        refuse_oversized(messages, self.max_message_size)
        for queue in {m.route.queue for m in messages}:
            self.ensure_queue(queue)
        if any(m.delayed for m in messages):
            self._declare_once.delay_levels()
        self._before_publish(messages)
        publisher: contract.Publisher = self.publisher  # mypy checks it keeps the contract
        if retry is None:
            outcomes = publisher.publish_batch(_batch(messages, self.signer))
        else:
            outcomes = publish_retrying(
                lambda items, timeout: publisher.publish_batch(
                    items, timeout=timeout, reconnect=False
                ),
                _batch(messages, self.signer),
                retry,
                self.publish_timeout,
            )
        self._after_publish(messages, outcomes)
        if self.eager is not None:
            self.eager.after_publish()

    async def apublish_prepared(
        self,
        messages: Sequence[PreparedMessage],
        publisher: contract.AsyncPublisher | None = None,
        retry: PublishRetryPolicy | None = None,
    ) -> None:
        refuse_oversized(messages, self.max_message_size)
        keeps_the_contract = publisher or self.async_publisher()
        for queue in {m.route.queue for m in messages}:
            await self._declare_once.aqueue(queue, keeps_the_contract)
        if any(m.delayed for m in messages):
            await self._declare_once.adelay_levels(keeps_the_contract)
        self._before_publish(messages)
        if retry is None:
            outcomes = await keeps_the_contract.publish_batch(_batch(messages, self.signer))
        else:
            outcomes = await apublish_retrying(
                lambda items, timeout: keeps_the_contract.publish_batch(
                    items, timeout=timeout, reconnect=False
                ),
                _batch(messages, self.signer),
                retry,
                self.publish_timeout,
            )
        self._after_publish(messages, outcomes)
        if self.eager is not None:
            await self.eager.aafter_publish()

    def _before_publish(self, messages: Sequence[PreparedMessage]) -> None:
        if self.middleware.publishes:
            for message in messages:
                self.middleware.before_publish(self, message)

    def _after_publish(self, messages: Sequence[PreparedMessage], outcomes: Outcomes) -> None:
        """``after_publish`` for each message the broker confirmed, then the first failure."""
        if self.middleware.publishes:
            for message, error in zip(messages, outcomes, strict=True):
                if error is None:
                    self.middleware.after_publish(self, message)
        raise_first(outcomes)

    # ``send_task`` and ``asend_task`` are twins too: the same preparation (pure), the same
    # publish path above, the same handle; only the reply queue and the publish are awaited.

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        _task: Task | None = None,
        **options: Any,
    ) -> _AsyncResult:
        """Publish a task by name (it need not be registered here), as Celery's ``send_task``."""
        publish_options, ignore = self._call_options(options, _task)
        if publish_options.reply_to is None and (reply_to := self._reply_to_sync(ignore)):
            publish_options = dataclasses.replace(publish_options, reply_to=reply_to)
        prepared = self.prepare(name, args, kwargs, publish_options, _task)
        self.publish_prepared([prepared], self._publish_retry(publish_options, _task))
        return self._handle(prepared, name, ignore)

    async def asend_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        _task: Task | None = None,
        **options: Any,
    ) -> _AsyncResult:
        """``send_task`` for asyncio code."""
        publish_options, ignore = self._call_options(options, _task)
        if publish_options.reply_to is None and (reply_to := await self._reply_to_async(ignore)):
            publish_options = dataclasses.replace(publish_options, reply_to=reply_to)
        prepared = self.prepare(name, args, kwargs, publish_options, _task)
        retry = self._publish_retry(publish_options, _task)
        await self.apublish_prepared([prepared], retry=retry)
        return self._handle(prepared, name, ignore)

    def _call_options(
        self, options: Mapping[str, Any], task: Task | None
    ) -> tuple[PublishOptions, bool]:
        publish_options = parse_options(options)
        return publish_options, self.ignores_result(task, publish_options.ignore_result)

    def _publish_retry(self, options: PublishOptions, task: Task | None) -> PublishRetryPolicy:
        return resolve(
            self.task_publish_retry,
            self.task_publish_retry_policy,
            task.publish_retry if task is not None else None,
            task.publish_retry_policy if task is not None else None,
            options.retry,
            options.retry_policy,
        )

    def _handle(self, prepared: PreparedMessage, name: str, ignore: bool) -> _AsyncResult:
        return _AsyncResult(
            prepared.task_id, self, name, ignored=ignore and self.backend is not None
        )

    @property
    def publisher(self) -> contract.Publisher:
        """The process's synchronous publisher (made on first use, remade after a fork)."""
        publisher = self._publisher  # the lock only for the first use: read on every publish
        if publisher is not None:
            return publisher
        with self._publisher_lock:
            if self._publisher is None:
                self._publisher = publisher_for(self.broker_url, self.publish_timeout)
            return self._publisher

    def async_publisher(self) -> contract.AsyncPublisher:
        """The publisher of the running event loop (one per loop)."""
        loop = asyncio.get_running_loop()
        publisher = self._async_publishers.get(loop)
        if publisher is None:
            publisher = async_publisher_for(self.broker_url, self.publish_timeout)
            self._async_publishers[loop] = publisher
        return publisher

    def use_broker(self, url: str) -> None:
        """Publish to ``url`` from now on (tests: ``memory://`` and back). Publishers and
        declarations are made afresh; the old synchronous publisher is closed."""
        self.close()
        self._async_publishers.clear()
        self.broker_url = url
        self._declare_once = declarations_for(self)

    def use_async_publisher(self, publisher: contract.AsyncPublisher) -> None:
        """Make ``publisher`` the running loop's (a worker's own: tasks and events share it)."""
        self._async_publishers[asyncio.get_running_loop()] = publisher

    def event_publisher(self) -> contract.Publisher | contract.AsyncPublisher:
        """Where an event from this thread goes: the running loop's publisher, else the
        synchronous one (events never wait, so either serves from its own thread)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return self.publisher
        return self.async_publisher()

    def ensure_queue(self, queue: str | None) -> None:
        """Declare ``queue`` once per process if ``declare_queues_on_publish`` (see
        ``amqp/declare_once.py``)."""
        self._declare_once.queue(queue)

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
        if self._backend is not None:
            await self._backend.aclose()


def _batch(messages: Sequence[PreparedMessage], signer: Signer | None) -> list[BatchItem]:
    # Signed last, after the middleware's before_publish: what it adds is what is checked.
    if signer is not None:
        return [(m.exchange, m.routing_key, signer.sign(m.envelope)) for m in messages]
    return [(m.exchange, m.routing_key, m.envelope) for m in messages]


def _load_topology(routing: str | os.PathLike[str] | Topology | None) -> Topology:
    if isinstance(routing, Topology):
        return routing
    path = routing or os.environ.get("RABBITQ_ROUTING")
    return load_routing(path) if path else Topology()


def _time_limit(what: str, seconds: float | None) -> float | None:
    if seconds is not None and (isinstance(seconds, bool) or not seconds > 0):
        raise ConfigurationError(f"{what} must be positive seconds or None, got {seconds!r}")
    return seconds


# Celery task options rabbitq does not build (yet): each says what would happen instead of
# silently running the task otherwise than asked.
UNBUILT_TASK_OPTIONS = {
    "acks_late": "rabbitq always acks after the task (late); the option has nothing to change",
    "track_started": "STARTED is tracked for every task or none: App(track_started=True)",
}


def refuse_unknown_task_options(options: Mapping[str, Any]) -> None:
    for option in options:
        why = UNBUILT_TASK_OPTIONS.get(option, "rabbitq has no such task option")
        raise ConfigurationError(f"@app.task({option}=...): {why}")
