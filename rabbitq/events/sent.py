"""``task-sent`` events from producers (``App(task_send_sent_event=True)``, Celery's setting).

Sent after the broker confirmed the task, on the publisher that published it: the calling
thread's synchronous publisher, or the running loop's asyncio one (in a worker, the worker's
own). Never waited for; a full event buffer drops the event, never the task. The node name
is Celery's for producers, ``gen<pid>@<host>``.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING, Any

from rabbitq.events.dispatcher import EventDispatcher
from rabbitq.message import Envelope
from rabbitq.middleware.middleware import Middleware
from rabbitq.topology import TASK_EXCHANGE

if TYPE_CHECKING:
    from rabbitq.prepare import PreparedMessage


# Publish times of messages not confirmed (or refused) yet; a refused one's entry is dropped
# once this many wait (its after_publish never comes).
PENDING_LIMIT = 10_000


class TaskSentEvents(Middleware):
    def __init__(self) -> None:
        self._dispatcher: EventDispatcher | None = None
        self._app: Any = None
        self._sent_at: dict[int, float] = {}

    def before_publish(self, app: Any, message: PreparedMessage) -> None:
        # The event is sent once the broker confirmed the task, but stamped with when it was
        # sent: a worker may receive the task, and say so, before the confirm is back.
        if len(self._sent_at) >= PENDING_LIMIT:
            self._sent_at.pop(next(iter(self._sent_at)))
        self._sent_at[id(message)] = time.time()

    def after_publish(self, app: Any, message: PreparedMessage) -> None:
        headers = message.envelope.headers
        sent_at = self._sent_at.pop(id(message), None)
        self._dispatcher_for(app).send(
            "task-sent",
            **({"timestamp": sent_at} if sent_at is not None else {}),
            uuid=message.task_id,
            name=headers.get("task"),
            args=headers.get("argsrepr"),
            kwargs=headers.get("kwargsrepr"),
            retries=headers.get("retries", 0),
            eta=headers.get("eta"),
            expires=headers.get("expires"),
            root_id=headers.get("root_id"),
            parent_id=headers.get("parent_id"),
            queue=message.route.queue,
            # Where it was sent, not its way there: a countdown's first hop is a delay level.
            exchange=TASK_EXCHANGE,
            routing_key=message.route.routing_key,
        )

    def _dispatcher_for(self, app: Any) -> EventDispatcher:
        dispatcher = self._dispatcher
        if dispatcher is None or dispatcher.pid != os.getpid():  # new, or a forked child's
            self._app = app
            dispatcher = self._dispatcher = EventDispatcher(
                f"gen{os.getpid()}@{socket.gethostname()}", self._send
            )
        return dispatcher

    def _send(self, routing_key: str, envelope: Envelope) -> bool:
        sent: bool = self._app.event_publisher().send_event(routing_key, envelope)
        return sent
