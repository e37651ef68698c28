"""Tasks: ``@app.task`` wraps a function; ``delay``/``apply_async`` publish a request to run it.

Publishing from synchronous code goes through the app's pika publisher thread; from asyncio
code ``await task.adelay(...)`` / ``await task.aapply_async(...)`` use aio-pika (the ``a``
prefix follows Django's async API). Both build the message the same way (``App.prepare``).

``Task[P, R]`` carries the function's parameters ``P`` and return type ``R`` for type checkers
only: ``delay``/``adelay`` and direct calls check their arguments against ``P``, and the
result handle is ``AsyncResult[R]`` (for an ``async def`` task, of what the coroutine
returns). Signatures (``s``, ``si``) and ``apply_async(args=...)`` stay loosely typed.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar, overload

from rabbitq import canvas
from rabbitq.canvas import Signature
from rabbitq.chunks import Chunks, xmap, xstarmap
from rabbitq.chunks import chunks as chunked
from rabbitq.errors import Retry
from rabbitq.limits.spec import Limit, LocalRate
from rabbitq.request import ERROR_HEADER as ERROR_HEADER
from rabbitq.request import TaskRequest as TaskRequest
from rabbitq.request import current_request as current_request
from rabbitq.results.handles import AsyncResult
from rabbitq.retries import RetryPolicy

if TYPE_CHECKING:
    # Defaults (PEP 696) let ``Task`` alone mean ``Task[..., Any]``; typing has them from 3.13
    # only, and type checkers read typing_extensions from their own stubs, so the runtime
    # needs neither (it never subscripts ``Task``).
    from typing_extensions import ParamSpec
    from typing_extensions import TypeVar as DefaultedTypeVar

    P = ParamSpec("P", default=...)
    R = DefaultedTypeVar("R", default=Any)
else:
    from typing import ParamSpec

    P = ParamSpec("P")
    R = TypeVar("R")
T = TypeVar("T")


class App(canvas.App, Protocol):
    """What a task needs of its app: publishing, and what its signatures need (a protocol:
    tasks sit below the app, which registers them)."""

    def send_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        _task: Task | None = None,
        **options: Any,
    ) -> AsyncResult: ...

    async def asend_task(
        self,
        name: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        _task: Task | None = None,
        **options: Any,
    ) -> AsyncResult: ...


class TaskOptions(TypedDict, total=False):
    """``@app.task(...)``'s options besides ``bind`` (see ``App.task``), for its overloads."""

    name: str | None
    queue: str | None
    routing_key: str | None
    serializer: str | None
    time_limit: float | None
    soft_time_limit: float | None
    autoretry_for: tuple[type[BaseException], ...]
    max_retries: int | None
    retry_backoff: bool | float
    retry_backoff_max: float
    retry_jitter: bool
    default_retry_delay: float
    ignore_result: bool | None
    publish_retry: bool | None
    publish_retry_policy: Mapping[str, Any] | None
    rate_limit: str | None
    limits: Limit | Sequence[Limit]


class Task(Generic[P, R]):
    """A function registered with an ``App``; call it directly to run it in-process.

    ``P`` and ``R`` are the function's parameters (without ``self`` for ``bind=True``) and
    return type, as type checkers see them.
    """

    def __init__(
        self,
        app: App,
        fn: Callable[..., Any],
        *,
        name: str,
        queue: str | None = None,
        routing_key: str | None = None,
        bind: bool = False,
        serializer: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        retry_policy: RetryPolicy | None = None,
        ignore_result: bool | None = None,
        publish_retry: bool | None = None,
        publish_retry_policy: Mapping[str, Any] | None = None,
        limits: tuple[Limit, ...] = (),
        rate_limit: LocalRate | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.routing_key = routing_key
        self.bind = bind
        self.serializer = serializer
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        self.retry_policy = retry_policy or RetryPolicy()
        self.ignore_result = ignore_result
        # Publish retries on a lost connection for this task's calls (None: the App's).
        self.publish_retry = publish_retry
        self.publish_retry_policy = publish_retry_policy
        # Global limits (docs/limits.md), and Celery's per-process rate_limit.
        self.limits = limits
        self.rate_limit = rate_limit
        self.is_async = inspect.iscoroutinefunction(fn)
        self.parameters = inspect.signature(fn)
        self._positional_only_fits = _positional_range(self.parameters, skip=1 if bind else 0)
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = self.fn(self, *args, **kwargs) if self.bind else self.fn(*args, **kwargs)
        return result

    @property
    def request(self) -> TaskRequest | None:
        """The message being run, inside a worker; ``None`` when called directly."""
        return current_request.get()

    @property
    def max_retries(self) -> int | None:
        return self.retry_policy.max_retries

    def retry(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        eta: dt.datetime | None = None,
        max_retries: int | None = None,
    ) -> Retry:
        """Ask the worker to run this task again later (``raise self.retry(...)``, as in Celery).

        Without ``countdown`` or ``eta`` the task's ``default_retry_delay`` (or backoff)
        applies. Past ``max_retries`` the message goes to ``<queue>.dead`` with ``exc``.
        Called outside a worker, it raises ``exc`` (or a plain ``Retry``).
        """
        if self.request is None:
            raise exc if exc is not None else Retry(None, countdown, eta, max_retries)
        raise Retry(exc, countdown, eta, max_retries)

    def check_arguments(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Raise ``TypeError`` if ``args``/``kwargs`` do not fit the function's signature."""
        fits = self._positional_only_fits
        if fits is not None and not kwargs and fits[0] <= len(args) <= fits[1]:
            return  # every delivery checks: the common shape needs no ``bind``
        if self.bind:
            self.parameters.bind(None, *args, **kwargs)
        else:
            self.parameters.bind(*args, **kwargs)

    # -- signatures ---------------------------------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this task with some arguments, to call later or put in a workflow."""
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: a parent's result is not prepended to its arguments."""
        return Signature(self, args, kwargs, immutable=True)

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        immutable: bool = False,
        **options: Any,
    ) -> Signature:
        """Celery's ``add.signature((2, 2), countdown=10)``; ``immutable=True`` is ``si``."""
        return Signature(self, args, kwargs, options, immutable=immutable)

    def map(self, items: Iterable[Any]) -> Signature:
        """One message that calls this task once per item (``celery.map``)."""
        return xmap(self, items)

    def starmap(self, items: Iterable[Sequence[Any]]) -> Signature:
        """One message that calls ``task(*item)`` per item (``celery.starmap``)."""
        return xstarmap(self, items)

    def chunks(self, items: Iterable[Sequence[Any]], n: int) -> Chunks:
        """``items`` split into a group of messages of ``n`` calls each."""
        return chunked(self, items, n)

    # -- publishing ---------------------------------------------------------------------------
    # Each publishing method has two overloads for type checkers: an ``async def`` task's
    # function returns a coroutine, while its result (what the worker stores) is the value the
    # coroutine returns.

    @overload
    def delay(
        self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> AsyncResult[T]: ...

    @overload
    def delay(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> AsyncResult[T]: ...

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """Publish with default options; returns once the broker has confirmed the message."""
        return self.apply_async(args, kwargs)

    @overload
    def apply_async(
        self: Task[P, Coroutine[Any, Any, T]],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[T]: ...

    @overload
    def apply_async(
        self: Task[P, T],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[T]: ...

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """Publish with options (queue, routing_key, priority, expires, headers, task_id...)."""
        return self.app.send_task(self.name, args, kwargs, _task=self, **options)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """``delay`` once the current Django transaction commits, never if it rolls back
        (Celery 5.4's; at once in autocommit). See ``rabbitq/contrib/django/``."""
        from rabbitq.on_commit import on_commit

        on_commit(lambda: self.apply_async(args, kwargs))

    def apply_async_on_commit(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        """``apply_async`` once the current Django transaction commits (see above)."""
        from rabbitq.on_commit import on_commit

        on_commit(lambda: self.apply_async(args, kwargs, **options))

    @overload
    async def adelay(
        self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs
    ) -> AsyncResult[T]: ...

    @overload
    async def adelay(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> AsyncResult[T]: ...

    async def adelay(self, *args: Any, **kwargs: Any) -> AsyncResult[Any]:
        """``delay`` for asyncio code: publishes on aio-pika without blocking the loop."""
        return await self.aapply_async(args, kwargs)

    @overload
    async def aapply_async(
        self: Task[P, Coroutine[Any, Any, T]],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[T]: ...

    @overload
    async def aapply_async(
        self: Task[P, T],
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[T]: ...

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        """``apply_async`` for asyncio code."""
        return await self.app.asend_task(self.name, args, kwargs, _task=self, **options)


def _positional_range(signature: inspect.Signature, *, skip: int) -> tuple[int, float] | None:
    """``(fewest, most)`` positional arguments that alone fit ``signature`` (after its first
    ``skip`` parameters); None when no positional call alone can fit (a required
    keyword-only parameter)."""
    fewest, most = 0, 0.0
    for parameter in list(signature.parameters.values())[skip:]:
        kind = parameter.kind
        if kind is parameter.KEYWORD_ONLY and parameter.default is parameter.empty:
            return None
        if kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            most += 1
            if parameter.default is parameter.empty:
                fewest += 1
        elif kind is parameter.VAR_POSITIONAL:
            most = float("inf")
    return fewest, most
