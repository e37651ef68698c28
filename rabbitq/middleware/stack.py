"""Calling the hooks of an ordered list of middleware, cheaply.

For each hook the stack keeps only the middleware that override it, so an unused hook is an
empty tuple and a no-op task pays nothing for it. Hooks run in the order the middleware were
given; ``after_*`` hooks too (no reversal: they observe, they do not unwind).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from rabbitq.errors import ConfigurationError
from rabbitq.middleware.middleware import HOOKS, PUBLISH_HOOKS, Middleware

if TYPE_CHECKING:
    from rabbitq.app import App, PreparedMessage

log = logging.getLogger("rabbitq.middleware")

_Hook = tuple[Callable[..., Any], bool]  # the bound method, and whether to await it


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
        self._hooks: dict[str, tuple[_Hook, ...]] = {
            hook: tuple(
                (getattr(each, hook), inspect.iscoroutinefunction(getattr(each, hook)))
                for each in self.middleware
                if _overrides(each, hook)
            )
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

    def before_publish(self, app: App, message: PreparedMessage) -> None:
        for hook, _ in self._hooks["before_publish"]:
            hook(app, message)

    def after_publish(self, app: App, message: PreparedMessage) -> None:
        for hook, _ in self._hooks["after_publish"]:
            try:
                hook(app, message)
            except Exception:
                log.exception("after_publish hook %r failed (ignored)", hook)

    # -- the worker (plain or async hooks) -----------------------------------------------------

    async def emit(self, hook_name: str, *args: Any) -> None:
        """Call an observing hook: an exception is logged and the rest still run."""
        for hook, is_async in self._hooks[hook_name]:
            try:
                result = hook(*args)
                if is_async:
                    await result
            except Exception:
                log.exception("%s hook %r failed (ignored)", hook_name, hook)

    async def emit_raising(self, hook_name: str, *args: Any) -> None:
        """Call a deciding hook (``before_process``, ``process_start``): errors propagate."""
        for hook, is_async in self._hooks[hook_name]:
            result = hook(*args)
            if is_async:
                await result
