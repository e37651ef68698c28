"""``task-sent`` events from producers (``App(task_send_sent_event=True)``, Celery's setting).

Sent after the broker confirmed the task, on the publisher that published it: the calling
thread's synchronous publisher, or the running loop's asyncio one (in a worker, the worker's
own). Never waited for; a full event buffer drops the event, never the task. The node name
is Celery's for producers, ``gen<pid>@<host>``.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

from rabbitq.events.dispatcher import EventDispatcher
from rabbitq.message import Envelope
from rabbitq.middleware.middleware import Middleware
from rabbitq.topology import TASK_EXCHANGE

if TYPE_CHECKING:
    from rabbitq.prepare import PreparedMessage


class TaskSentEvents(Middleware):
    def __init__(self) -> None:
        self._dispatcher: EventDispatcher | None = None
        self._app: Any = None

    def after_publish(self, app: Any, message: PreparedMessage) -> None:
        headers = message.envelope.headers
        self._dispatcher_for(app).send(
            "task-sent",
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
