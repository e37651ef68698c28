"""``app.control``: Celery's remote-control client, for rabbitq (and Celery) workers.

    app.control.revoke(task_id)                  # never started, on any worker, ever
    app.control.revoke(task_id, terminate=True)  # and stopped if running now
    app.control.inspect().active()               # {nodename: [task info, ...]} or None
    app.control.ping(timeout=1.0)                # [{nodename: {"ok": "pong"}}, ...]
    app.control.shutdown(destination=["rabbitq-1@web1"])

A revoke is written to the revocation log in the broker first (confirmed), then broadcast so
running workers act at once (terminate); a revoke with no worker running is still kept. It is
for the task wherever it runs: ``destination`` only limits which nodes are asked to reply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rabbitq.revocations import Revocation

Reply = dict[str, Any]


class Control:
    def __init__(self, app: Any) -> None:
        self.app = app

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Iterable[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: Callable[[Reply], object] | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> list[Reply]:
        """Send ``command`` to the nodes; with ``reply``, their answers."""
        from rabbitq.amqp.pidbox_client import PidboxClient

        with PidboxClient(self.app.broker_url) as client:
            return client.call(
                command,
                arguments,
                destination=list(destination) if destination is not None else None,
                pattern=pattern,
                matcher=matcher,
                reply=reply,
                timeout=timeout,
                limit=limit,
                on_reply=callback,
            )

    def inspect(
        self,
        destination: Iterable[str] | None = None,
        timeout: float = 1.0,
        callback: Callable[[Reply], object] | None = None,
        pattern: str | None = None,
        matcher: str | None = None,
    ) -> Inspect:
        return Inspect(self, destination, timeout, callback, pattern, matcher)

    def ping(self, destination: Iterable[str] | None = None, timeout: float = 1.0) -> list[Reply]:
        return self.broadcast("ping", destination=destination, reply=True, timeout=timeout)

    def revoke(
        self,
        task_id: str | Iterable[str],
        destination: Iterable[str] | None = None,
        terminate: bool = False,
        signal: str | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[Reply]:
        """Revoke ``task_id`` (one id or several): stored in the log, then broadcast."""
        from rabbitq.amqp.pidbox_client import PidboxClient

        ids = [task_id] if isinstance(task_id, str) else [str(i) for i in task_id]
        kept_for = self.app.revocations_kept_for
        revocation = Revocation.now(ids, kept_for, terminate=terminate, signal=signal)
        with PidboxClient(self.app.broker_url) as client:
            client.append_revocation(revocation, kept_for)
            arguments = {"task_id": ids, "terminate": terminate, "signal": signal}
            # The log has it: the nodes apply it without writing it again.
            arguments["rabbitq_logged"] = True
            return client.call(
                "revoke",
                arguments,
                destination=list(destination) if destination is not None else None,
                reply=reply,
                timeout=timeout,
            )

    def terminate(self, task_id: str | Iterable[str], **options: Any) -> list[Reply]:
        return self.revoke(task_id, terminate=True, **options)

    def shutdown(
        self, destination: Iterable[str] | None = None, reply: bool = False, timeout: float = 1.0
    ) -> list[Reply]:
        """Stop the workers gracefully (the whole worker a node belongs to)."""
        return self.broadcast("shutdown", destination=destination, reply=reply, timeout=timeout)

    def add_consumer(
        self,
        queue: str,
        destination: Iterable[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[Reply]:
        return self.broadcast("add_consumer", {"queue": queue}, destination, reply, timeout)

    def cancel_consumer(
        self,
        queue: str,
        destination: Iterable[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[Reply]:
        return self.broadcast("cancel_consumer", {"queue": queue}, destination, reply, timeout)

    def time_limit(
        self,
        task_name: str,
        soft: float | None = None,
        hard: float | None = None,
        destination: Iterable[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[Reply]:
        arguments = {"task_name": task_name, "soft": soft, "hard": hard}
        return self.broadcast("time_limit", arguments, destination, reply, timeout)

    def enable_events(
        self,
        destination: Iterable[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[Reply]:
        return self.broadcast("enable_events", None, destination, reply, timeout)

    def disable_events(
        self,
        destination: Iterable[str] | None = None,
        reply: bool = False,
        timeout: float = 1.0,
    ) -> list[Reply]:
        return self.broadcast("disable_events", None, destination, reply, timeout)


class Inspect:
    """Each method returns ``{nodename: value}`` for the nodes that answered, or ``None``
    when none did (as Celery's ``Inspect``)."""

    def __init__(
        self,
        control: Control,
        destination: Iterable[str] | None,
        timeout: float,
        callback: Callable[[Reply], object] | None,
        pattern: str | None,
        matcher: str | None,
    ) -> None:
        self.control = control
        self.destination = list(destination) if destination is not None else None
        self.timeout = timeout
        self.callback = callback
        self.pattern = pattern
        self.matcher = matcher

    def _request(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        replies = self.control.broadcast(
            command,
            arguments,
            self.destination,
            reply=True,
            timeout=self.timeout,
            callback=self.callback,
            pattern=self.pattern,
            matcher=self.matcher,
        )
        return flatten(replies)

    def ping(self) -> dict[str, Any] | None:
        return self._request("ping")

    def active(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("active", safe=bool(safe))

    def reserved(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("reserved", safe=bool(safe))

    def scheduled(self, safe: bool | None = None) -> dict[str, Any] | None:
        return self._request("scheduled")

    def revoked(self) -> dict[str, Any] | None:
        return self._request("revoked")

    def registered(self, *taskinfoitems: str) -> dict[str, Any] | None:
        return self._request("registered", taskinfoitems=list(taskinfoitems))

    registered_tasks = registered

    def stats(self) -> dict[str, Any] | None:
        return self._request("stats")

    def active_queues(self) -> dict[str, Any] | None:
        return self._request("active_queues")

    def conf(self, with_defaults: bool = False) -> dict[str, Any] | None:
        return self._request("conf", with_defaults=with_defaults)

    def query_task(self, *ids: str) -> dict[str, Any] | None:
        return self._request("query_task", ids=list(ids))

    def clock(self) -> dict[str, Any] | None:
        return self._request("clock")

    def report(self) -> dict[str, Any] | None:
        return self._request("report")


def flatten(replies: list[Reply]) -> dict[str, Any] | None:
    """``[{node: value}, ...]`` as one ``{node: value}``; None when nobody answered."""
    merged: dict[str, Any] = {}
    for reply in replies:
        merged.update(reply)
    return merged or None
