"""Result backends: where a worker puts a task's outcome and where its caller finds it.

``App(result_backend=...)`` picks one by URL:

* ``rpc://`` — the reply goes to the caller process's own reply queue (exclusive,
  auto-delete), matched by correlation id; nothing to run besides RabbitMQ, and only the
  caller can read it (as Celery's rpc backend).
* ``redis://host:port/db`` — stored under ``celery-task-meta-<id>`` with an expiry and
  announced on the channel of the same name (Celery's Redis backend scheme), readable from
  any process; waiting subscribes instead of polling.
* ``postgresql://user:pass@host:port/db`` (also ``postgres://``, Celery's ``db+postgresql://``)
  — a row in rabbitq's own table, readable from any process; waiting LISTENs for the NOTIFY
  that each write sends.
"""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

from rabbitq.results.meta import ResultMeta
from rabbitq.serializers import Serializer

if TYPE_CHECKING:
    from rabbitq.amqp.contract import AsyncPublisher


class ResultBackend(abc.ABC):
    url: str
    uses_reply_queue = False

    def __init__(self, url: str, serializer: Serializer, expires: float | None) -> None:
        self.url = url
        self.serializer = serializer
        self.expires = expires

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"

    # -- worker side ------------------------------------------------------------------------

    @abc.abstractmethod
    async def store(
        self,
        meta: ResultMeta,
        reply_to: str | None,
        publisher: AsyncPublisher,
        serializer: Serializer | None = None,
    ) -> None:
        """Record ``meta`` (in ``serializer``, default the backend's); returns once it is
        stored (or known undeliverable)."""

    # -- caller side ------------------------------------------------------------------------

    @abc.abstractmethod
    def state(self, task_id: str) -> ResultMeta:
        """What is known now (``PENDING`` if nothing)."""

    @abc.abstractmethod
    def wait(self, task_ids: list[str], timeout: float | None) -> dict[str, ResultMeta]:
        """Block until every id is ready or ``timeout`` passes; returns the ready ones."""

    @abc.abstractmethod
    async def await_ready(self, task_id: str, timeout: float | None) -> ResultMeta | None:
        """The ready result, or ``None`` when ``timeout`` passed first."""

    @abc.abstractmethod
    def forget(self, task_id: str) -> None: ...

    def cleanup(self) -> int:
        """Delete expired results; returns how many. Only a database needs it: Redis keys
        expire by themselves and rpc replies are consumed."""
        return 0

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release the current event loop's connections."""
