"""Calling the hooks of an ordered list of middleware, cheaply.

For each hook the stack keeps only the middleware that override it, so an unused hook is an
empty tuple and a no-op task pays nothing for it. Hooks run in the order the middleware were
given; ``after_*`` hooks too (no reversal: they observe, they do not unwind).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from rabbitq.errors import ConfigurationError
from rabbitq.middleware.middleware import HOOKS, PUBLISH_HOOKS, Middleware

if TYPE_CHECKING:
    from rabbitq.prepare import PreparedMessage

log = logging.getLogger("rabbitq.middleware")


def _overrides(middleware: Middleware, hook: str) -> bool:
    return getattr(type(middleware), hook) is not getattr(Middleware, hook)


class MiddlewareStack:
    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        self.middleware: tuple[Middleware, ...] = tuple(middleware)
        for each in self.middleware:
            if not isinstance(each, Middleware):
                raise ConfigurationError(
                    f"middleware must be rabbitq.Middleware instances, got {each!r}"
                )
            for hook in PUBLISH_HOOKS:
                if _overrides(each, hook) and inspect.iscoroutinefunction(getattr(each, hook)):
                    raise ConfigurationError(
                        f"{type(each).__name__}.{hook} must be a plain function: synchronous "
                        "callers publish too"
                    )
        self._hooks: dict[str, tuple[Callable[..., Any], ...]] = {
            hook: tuple(getattr(each, hook) for each in self.middleware if _overrides(each, hook))
            for hook in HOOKS
        }
        self.publishes = bool(self._hooks["before_publish"] or self._hooks["after_publish"])

    def __iter__(self) -> Any:
        return iter(self.middleware)

    def __len__(self) -> int:
        return len(self.middleware)

    def added(self, *middleware: Middleware) -> MiddlewareStack:
        return MiddlewareStack((*self.middleware, *middleware))

    def has(self, hook: str) -> bool:
        return bool(self._hooks[hook])

    # -- publishing (synchronous) -----------------------------------------------------------

    # Publish hooks are plain functions (checked above), so nothing is left to await.

    def before_publish(self, app: Any, message: PreparedMessage) -> None:
        self._run("before_publish", (app, message), raising=True)

    def after_publish(self, app: Any, message: PreparedMessage) -> None:
        self._run("after_publish", (app, message), raising=False)

    # -- the worker (plain or async hooks) -----------------------------------------------------

    def notify(self, hook_name: str, *args: Any) -> Awaitable[None] | None:
        """Call an observing hook of each middleware, in order; an exception (any, even
        ``SystemExit``) is logged and the rest still run. Plain hooks run now; from the first
        that returns an awaitable on, the rest is returned to be awaited (None: nothing
        left), so a task whose hooks are all plain pays no coroutine for them."""
        return self._run(hook_name, args, raising=False)

    def call(self, hook_name: str, *args: Any) -> Awaitable[None] | None:
        """As ``notify``, for a deciding hook (``before_process``, ``process_start``): the
        first exception propagates and the later hooks do not run."""
        return self._run(hook_name, args, raising=True)

    async def emit(self, hook_name: str, *args: Any) -> None:
        pending = self.notify(hook_name, *args)
        if pending is not None:
            await pending

    async def emit_raising(self, hook_name: str, *args: Any) -> None:
        pending = self.call(hook_name, *args)
        if pending is not None:
            await pending

    def _run(
        self,
        hook_name: str,
        args: tuple[Any, ...],
        *,
        raising: bool,
        hooks: tuple[Callable[..., Any], ...] | None = None,
    ) -> Awaitable[None] | None:
        """Call ``hooks`` (default: every middleware's ``hook_name``) in order; from the
        first that returns an awaitable on, the rest is returned to be awaited."""
        if hooks is None:
            hooks = self._hooks[hook_name]
        for index, hook in enumerate(hooks):
            try:
                result = hook(*args)
            except BaseException as exc:
                if raising or _is_our_cancellation(exc):
                    raise
                _observer_failed(hook_name, hook, exc)
                continue
            # Checked on the result, not the function: a decorated coroutine function counts.
            if result is not None and inspect.isawaitable(result):
                rest = hooks[index + 1 :]
                return self._await_then_run(hook_name, hook, result, rest, args, raising)
        return None

    async def _await_then_run(
        self,
        hook_name: str,
        hook: Callable[..., Any],
        awaitable: Awaitable[Any],
        rest: tuple[Callable[..., Any], ...],
        args: tuple[Any, ...],
        raising: bool,
    ) -> None:
        try:
            await awaitable
        except BaseException as exc:
            if raising or _is_our_cancellation(exc):
                raise
            _observer_failed(hook_name, hook, exc)
        pending = self._run(hook_name, args, raising=raising, hooks=rest)
        if pending is not None:
            await pending


def _is_our_cancellation(error: BaseException) -> bool:
    """The worker is cancelling this delivery's task (shutdown, lost channel): let it go."""
    if not isinstance(error, asyncio.CancelledError):
        return False
    try:
        current = asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous caller
        return True
    return current is None or current.cancelling() > 0


def _observer_failed(hook_name: str, hook: Callable[..., Any], error: BaseException) -> None:
    log.error(
        "%s hook %r failed (ignored)",
        hook_name,
        hook,
        exc_info=(type(error), error, error.__traceback__),
    )
