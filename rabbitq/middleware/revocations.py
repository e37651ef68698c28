"""Revoked tasks never start: the worker's first middleware, fed by the revocation log.

``before_process`` skips a revoked task (``SkipTask("revoked")``: the pipeline records it
REVOKED, fails its chord if it is a member, and acks it; the events say ``task-revoked``).
It runs before every other middleware, so a revoked task sends no ``task-started`` and no
``task_prerun``. A revocation with ``terminate`` also stops a run of the task going on now in
this process (``RunControl.terminate``: ``Terminated`` is raised inside it).

Revocations arrive from the log in the broker (``amqp/revocation_log.py``) and from the
remote-control ``revoke`` command; both call ``apply``.
"""

from __future__ import annotations

import logging
from typing import Any

from rabbitq.errors import SkipTask
from rabbitq.middleware.middleware import Middleware, Outcome, TaskContext
from rabbitq.revocations import Revocation, RevokedSet

log = logging.getLogger("rabbitq.worker")

REVOKED_REASON = "revoked"


class Revocations(Middleware):
    def __init__(self) -> None:
        self.revoked = RevokedSet()
        self._running: dict[str, TaskContext] = {}  # by task id: what a terminate can reach

    def apply(self, revocation: Revocation) -> list[str]:
        """Keep ``revocation``; with ``terminate``, stop its tasks running here. The ids
        whose runs were asked to stop."""
        self.revoked.add(revocation)
        terminated = []
        if revocation.terminate:
            for task_id in revocation.ids:
                context = self._running.get(task_id)
                if context is not None and context.control is not None:
                    log.warning(
                        "task %s[%s] revoked with terminate: raising Terminated in it",
                        context.task.name,
                        task_id,
                    )
                    context.control.terminate()
                    terminated.append(task_id)
        return terminated

    def running(self, task_id: str) -> bool:
        return task_id in self._running

    def before_process(self, context: TaskContext) -> None:
        task_id = context.message.id
        if task_id in self.revoked:
            expires = context.message.expires
            self.revoked.met(task_id, expires.timestamp() if expires is not None else None)
            raise SkipTask(REVOKED_REASON)
        self._running[task_id] = context

    def after_process(self, context: TaskContext, outcome: Outcome) -> None:
        self._forget(context)

    def after_skip(self, context: TaskContext, reason: str) -> None:
        self._forget(context)

    def _forget(self, context: TaskContext) -> None:
        if self._running.get(context.message.id) is context:
            del self._running[context.message.id]

    def __repr__(self) -> str:
        return f"<Revocations {len(self.revoked)} kept, {len(self._running)} running>"

    def ids(self) -> list[Any]:
        return sorted(self.revoked)
