"""Celery's signals, with Celery's names and arguments, as a thin layer on the middleware seam.

Tracing and error-reporting tools hook into Celery through these, and code migrating from
Celery keeps its receivers::

    from rabbitq.signals import task_prerun

    @task_prerun.connect
    def bind_log_context(sender=None, task_id=None, task=None, **kwargs):
        ...

Receivers are called with ``signal=`` and ``sender=`` plus the arguments listed with each
signal below, and must accept ``**kwargs`` (Celery may add arguments; so may we). As in
Celery, a receiver that raises is logged and the others still run: a signal never changes
what happens to a task. (Middleware hooks are the seam for that; see ``rabbitq.Middleware``.)

What is sent, and when (``middleware/celery_signals.py`` sends them)::

    before_task_publish   sender=task name; body, exchange, routing_key, headers, properties
                          (``headers`` is the message's own dict: changes are published)
    after_task_publish    sender=task name; body, exchange, routing_key, headers
    task_received         sender=None; request (judged runnable, waiting for a slot)
    task_prerun           sender=task; task_id, task, args, kwargs
    task_postrun          sender=task; task_id, task, args, kwargs, retval, state
    task_success          sender=task; result
    task_failure          sender=task; task_id, exception, args, kwargs, traceback, einfo
    task_retry            sender=task; request, reason, einfo
    task_unknown          sender=None; name, id, message, exc
    task_revoked          sender=task; request, terminated, signum, expired (revokes: later)
    worker_process_init   sender=None (in each worker process, before it connects)
    worker_ready          sender=the worker
    worker_shutdown       sender=the worker

``einfo`` is the formatted traceback (a string), not Celery's ``ExceptionInfo`` object.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("rabbitq.signals")

Receiver = Callable[..., Any]


class Signal:
    """A named event with receivers; ``connect`` works as a plain call or a decorator."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._receivers: list[tuple[Receiver, Any, Any]] = []  # receiver, sender, dispatch_uid
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"

    @property
    def receivers(self) -> list[Receiver]:
        return [receiver for receiver, _, _ in self._receivers]

    def __bool__(self) -> bool:
        """True when any receiver is connected: a signal nobody hears costs one check."""
        return bool(self._receivers)

    def connect(
        self,
        receiver: Receiver | None = None,
        /,
        *,
        sender: Any = None,
        dispatch_uid: Any = None,
        weak: bool = False,  # accepted for Celery's signature; receivers are held strongly
    ) -> Any:
        """Call ``receiver`` on each send (only for ``sender`` when given, matched by
        identity, equality or a task's name). A second connect with the same receiver (or
        ``dispatch_uid``) replaces the first instead of calling it twice."""

        def register(function: Receiver) -> Receiver:
            key = dispatch_uid if dispatch_uid is not None else function
            with self._lock:
                self._receivers = [
                    entry
                    for entry in self._receivers
                    if (entry[2] if entry[2] is not None else entry[0]) != key
                ]
                self._receivers.append((function, sender, dispatch_uid))
            return function

        return register(receiver) if receiver is not None else register

    def disconnect(
        self, receiver: Receiver | None = None, sender: Any = None, dispatch_uid: Any = None
    ) -> bool:
        """Remove a receiver; True if one was connected."""
        with self._lock:
            before = len(self._receivers)
            self._receivers = [
                entry
                for entry in self._receivers
                if not (
                    (dispatch_uid is not None and entry[2] == dispatch_uid)
                    or (receiver is not None and entry[0] is receiver)
                )
            ]
            return len(self._receivers) != before

    def send(self, sender: Any, **named: Any) -> list[tuple[Receiver, Any]]:
        """Call every matching receiver; an exception (``SystemExit`` too) is logged and
        returned, never raised."""
        responses: list[tuple[Receiver, Any]] = []
        for receiver, wanted, _ in self._receivers:
            if wanted is not None and not _matches(wanted, sender):
                continue
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **named)))
            except asyncio.CancelledError:
                raise  # a cancellation is not the receiver's to swallow
            except BaseException as exc:  # even SystemExit: a signal never ends the worker
                log.error(
                    "receiver %r of signal %s failed",
                    receiver,
                    self.name,
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
                responses.append((receiver, exc))
        return responses


def _matches(wanted: Any, sender: Any) -> bool:
    if wanted is sender or wanted == sender:
        return True
    name = getattr(sender, "name", None)
    return name is not None and (wanted == name or getattr(wanted, "name", None) == name)


before_task_publish = Signal("before_task_publish")
after_task_publish = Signal("after_task_publish")
task_received = Signal("task_received")
task_prerun = Signal("task_prerun")
task_postrun = Signal("task_postrun")
task_success = Signal("task_success")
task_failure = Signal("task_failure")
task_retry = Signal("task_retry")
task_unknown = Signal("task_unknown")
task_revoked = Signal("task_revoked")
worker_process_init = Signal("worker_process_init")
worker_ready = Signal("worker_ready")
worker_shutdown = Signal("worker_shutdown")

__all__ = [
    "Signal",
    "after_task_publish",
    "before_task_publish",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_process_init",
    "worker_ready",
    "worker_shutdown",
]
