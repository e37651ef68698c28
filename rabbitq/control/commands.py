"""What a worker node answers to each remote-control command (``celery inspect``/``control``,
``rabbitq inspect``/``control``), in the shapes Celery 5's workers answer with.

The handlers read and steer the node through ``Node`` (the worker implements it, in
``worker/mailbox.py``); each returns the reply value or raises ``CommandRefused``, which the
node sends as ``{"error": why}``. A command rabbitq cannot carry out is refused with the
reason, never ignored.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import os
import platform
import resource
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from rabbitq.errors import PublishError
from rabbitq.redaction import without_password
from rabbitq.revocations import Revocation

log = logging.getLogger("rabbitq.worker")

BUILTIN_PREFIXES = ("celery.", "rabbitq.")


class Run(Protocol):
    """A run or a waiting task, as the middleware's ``TaskContext`` has it."""

    @property
    def message(self) -> Any: ...
    @property
    def delivery(self) -> Any: ...
    @property
    def runtime(self) -> float: ...


class CommandRefused(Exception):
    """The command does not apply to this node; the reply says why."""


class Node(Protocol):
    """What the commands need of a worker process."""

    nodename: str
    app: Any
    concurrency: int
    prefetch: int
    started_at: float  # time.time()

    @property
    def queues(self) -> tuple[str, ...]: ...
    @property
    def clock(self) -> int: ...

    def running(self) -> Sequence[Run]: ...
    def waiting(self) -> Sequence[Run]: ...
    def totals(self) -> dict[str, int]: ...
    def revoked_ids(self) -> list[str]: ...
    def revoke(self, revocation: Revocation, *, log_it: bool) -> Awaitable[list[str]]: ...
    def add_consumer(self, queue: str) -> Awaitable[None]: ...
    def cancel_consumer(self, queue: str) -> Awaitable[bool]: ...
    def shutdown(self) -> None: ...
    def task_events(self, enabled: bool | None) -> bool | None: ...
    def heartbeat(self) -> None: ...


Handler = Callable[..., Any]


def ok(value: Any) -> dict[str, Any]:
    return {"ok": value}


# -- inspect ------------------------------------------------------------------------------------


def ping(node: Node) -> dict[str, Any]:
    return ok("pong")


def active(node: Node, safe: bool = False, **_: Any) -> list[dict[str, Any]]:
    return [task_info(node, context, safe, started=True) for context in node.running()]


def reserved(node: Node, safe: bool = False, **_: Any) -> list[dict[str, Any]]:
    return [task_info(node, context, safe, started=False) for context in node.waiting()]


def scheduled(node: Node, **_: Any) -> list[dict[str, Any]]:
    # Tasks with an eta wait in the broker's delay levels, not in a worker: none is held here.
    return []


def revoked(node: Node, **_: Any) -> list[str]:
    return node.revoked_ids()


def registered(
    node: Node, taskinfoitems: list[str] | None = None, builtins: bool = False, **_: Any
) -> list[str]:
    names = []
    for name, task in sorted(node.app.tasks.items()):
        if not builtins and name.startswith(BUILTIN_PREFIXES):
            continue
        extras = []
        for item in taskinfoitems or ():
            value = getattr(task, item, None)
            if value is not None:
                extras.append(f"{item}={value}")
        names.append(f"{name} [{' '.join(extras)}]" if extras else name)
    return names


def query_task(node: Node, ids: list[str] | str | None = None, **_: Any) -> dict[str, Any]:
    wanted = {ids} if isinstance(ids, str) else set(ids or ())
    found: dict[str, Any] = {}
    for state, contexts in (("active", node.running()), ("reserved", node.waiting())):
        for context in contexts:
            if context.message.id in wanted:
                found[context.message.id] = [
                    state,
                    task_info(node, context, False, state == "active"),
                ]
    return found


def stats(node: Node, **_: Any) -> dict[str, Any]:
    app = node.app
    soft, hard = app.task_soft_time_limit, app.task_time_limit
    return {
        "total": node.totals(),
        "pid": os.getpid(),
        "clock": str(node.clock),
        "uptime": int(time.time() - node.started_at),
        "pool": {
            "implementation": "rabbitq:asyncio+threads",
            "max-concurrency": node.concurrency,
            "processes": [os.getpid()],
            "max-tasks-per-child": "N/A",
            "put-guarded-by-semaphore": False,
            "timeouts": [soft or 0, hard or 0],
            "writes": "N/A",
        },
        "broker": broker_info(app.broker_url),
        "prefetch_count": node.prefetch,
        "rusage": _rusage(),
    }


def active_queues(node: Node) -> list[dict[str, Any]]:
    return [queue_info(node.app, name) for name in node.queues]


def conf(node: Node, with_defaults: bool = False, **_: Any) -> dict[str, Any]:
    app = node.app
    return {
        "broker_url": without_password(app.broker_url),
        "result_backend": without_password(app.result_backend_url)
        if app.result_backend_url
        else None,
        "result_expires": app.result_expires,
        "task_serializer": app.serializer.name,
        "result_serializer": app.result_serializer_name,
        "task_default_queue": app.default_queue,
        "task_track_started": app.track_started,
        "task_ignore_result": app.ignore_result,
        "task_time_limit": app.task_time_limit,
        "task_soft_time_limit": app.task_soft_time_limit,
        "worker_send_task_events": app.worker_send_task_events,
        "task_send_sent_event": app.task_send_sent_event,
        "worker_prefetch_multiplier": max(1, node.prefetch // max(1, node.concurrency)),
        "worker_concurrency": node.concurrency,
        "broker_consumer_timeout": app.consumer_timeout,
    }


def clock(node: Node, **_: Any) -> dict[str, Any]:
    return {"clock": node.clock}


def hello(node: Node, from_node: str | None = None, revoked: Any = None, **_: Any) -> Any:
    # Celery's mingle: a worker starting asks the others what they revoked. Ours read the
    # revocation log instead; a Celery worker asking gets ours.
    if from_node == node.nodename:
        return None
    return {"revoked": node.revoked_ids(), "clock": node.clock}


def report(node: Node, **_: Any) -> dict[str, Any]:
    try:
        version = importlib.metadata.version("rabbitq")
    except importlib.metadata.PackageNotFoundError:
        version = "?"
    return ok(
        f"rabbitq {version} on Python {platform.python_version()} "
        f"({platform.platform()}); node {node.nodename}, queues {', '.join(node.queues)}"
    )


# -- control ------------------------------------------------------------------------------------


async def revoke(
    node: Node,
    task_id: list[str] | str | None = None,
    terminate: bool = False,
    signal: str | None = None,
    rabbitq_logged: bool = False,
    **_: Any,
) -> dict[str, Any]:
    ids = [task_id] if isinstance(task_id, str) else [str(i) for i in task_id or ()]
    if not ids:
        raise CommandRefused("revoke needs task_id: one id or a list of ids")
    revocation = Revocation.now(
        ids, node.app.revocations_kept_for, terminate=bool(terminate), signal=signal
    )
    # A Celery client broadcasts only: the node writes the revoke into the log for the
    # others, and for after a restart. rabbitq's client has written it already.
    try:
        terminated = await node.revoke(revocation, log_it=not rabbitq_logged)
    except PublishError as exc:
        raise CommandRefused(
            f"tasks {set(ids)!r} flagged as revoked on this node only: not stored in the "
            f"revocation log ({exc}); revoke them again once the broker takes publishes"
        ) from exc
    if terminate:
        return ok(
            f"terminate: {', '.join(terminated)}" if terminated else "terminate: tasks unknown"
        )
    return ok(f"tasks {set(ids)!r} flagged as revoked")


async def terminate(
    node: Node, signal: str | None = None, task_id: list[str] | str | None = None, **kw: Any
) -> dict[str, Any]:
    return await revoke(node, task_id, terminate=True, signal=signal, **kw)


def shutdown(node: Node, msg: str | None = None, **_: Any) -> dict[str, Any]:
    log.warning("remote control: shutdown requested%s", f" ({msg})" if msg else "")
    node.shutdown()
    return ok("shutting down")


async def add_consumer(node: Node, queue: str | None = None, **_: Any) -> dict[str, Any]:
    if not queue:
        raise CommandRefused("add_consumer needs a queue")
    if queue in node.queues:
        return ok(f"already consuming from {queue!r}")
    await node.add_consumer(queue)
    return ok(f"add consumer {queue}")


async def cancel_consumer(node: Node, queue: str | None = None, **_: Any) -> dict[str, Any]:
    if not queue:
        raise CommandRefused("cancel_consumer needs a queue")
    if not await node.cancel_consumer(queue):
        raise CommandRefused(f"not consuming from {queue!r}")
    return ok(f"no longer consuming from {queue}")


def time_limit(
    node: Node,
    task_name: str | None = None,
    soft: float | None = None,
    hard: float | None = None,
    **_: Any,
) -> dict[str, Any]:
    task = node.app.tasks.get(task_name)
    if task is None:
        raise CommandRefused("unknown task")
    task.soft_time_limit = float(soft) if soft is not None else None
    task.time_limit = float(hard) if hard is not None else None
    log.info("remote control: time limits of %s now soft=%s hard=%s", task_name, soft, hard)
    return ok("time limits set successfully")


def enable_events(node: Node) -> dict[str, Any]:
    before = node.task_events(None)
    if before is None:
        raise CommandRefused(
            "task events cannot be turned on in a running rabbitq worker: start it with -E "
            "(worker events are always on)"
        )
    if before:
        return ok("task events already enabled")
    node.task_events(True)
    return ok("task events enabled")


def disable_events(node: Node) -> dict[str, Any]:
    if not node.task_events(None):
        return ok("task events already disabled")
    node.task_events(False)
    return ok("task events disabled")


def heartbeat(node: Node) -> None:
    node.heartbeat()


def _refuse(why: str) -> Handler:
    def refused(node: Node, **_: Any) -> Any:
        raise CommandRefused(why)

    return refused


COMMANDS: dict[str, Handler] = {
    "ping": ping,
    "active": active,
    "reserved": reserved,
    "scheduled": scheduled,
    "revoked": revoked,
    "registered": registered,
    "query_task": query_task,
    "stats": stats,
    "active_queues": active_queues,
    "conf": conf,
    "clock": clock,
    "hello": hello,
    "report": report,
    "revoke": revoke,
    "terminate": terminate,
    "shutdown": shutdown,
    "add_consumer": add_consumer,
    "cancel_consumer": cancel_consumer,
    "time_limit": time_limit,
    "enable_events": enable_events,
    "disable_events": disable_events,
    "heartbeat": heartbeat,
    "rate_limit": _refuse(
        "rate limits are not supported by rabbitq workers yet: the task runs unthrottled"
    ),
    "pool_restart": _refuse(
        "pool restarts are not supported: restart the worker (SIGTERM finishes its tasks)"
    ),
    "pool_grow": _refuse("the pool cannot be resized: set --concurrency and restart"),
    "pool_shrink": _refuse("the pool cannot be resized: set --concurrency and restart"),
    "autoscale": _refuse("autoscaling is not supported: set --concurrency and --processes"),
    "revoke_by_stamped_headers": _refuse("stamped headers are not supported: revoke by id"),
    "memsample": _refuse("memory sampling is not supported"),
    "memdump": _refuse("memory dumps are not supported"),
    "objgraph": _refuse("objgraph is not supported"),
    "election": _refuse("elections are not supported (beat uses its own leader queue)"),
}


async def dispatch(node: Node, method: str, arguments: dict[str, Any]) -> Any:
    """The reply value for ``method``; ``{"error": why}`` when it cannot be carried out."""
    handler = COMMANDS.get(method)
    if handler is None:
        return {"error": f"unknown control command {method!r}"}
    try:
        value = handler(node, **arguments)
        if inspect.isawaitable(value):
            value = await value
        return value
    except CommandRefused as refused:
        return {"error": str(refused)}
    except TypeError as exc:  # arguments the command does not take
        return {"error": f"{method}: {exc}"}
    except Exception as exc:
        log.exception("remote control command %s failed", method)
        return {"error": f"{method} failed: {type(exc).__name__}: {exc}"}


# -- shapes -------------------------------------------------------------------------------------


def task_info(node: Node, context: Run, safe: bool, started: bool) -> dict[str, Any]:
    message, delivery = context.message, context.delivery
    headers = delivery.envelope.headers
    if safe:
        args: Any = headers.get("argsrepr") or repr(tuple(message.args))
        kwargs: Any = headers.get("kwargsrepr") or repr(message.kwargs)
    else:
        args, kwargs = list(message.args), dict(message.kwargs)
    return {
        "id": message.id,
        "name": message.task,
        "args": args,
        "kwargs": kwargs,
        "type": message.task,
        "hostname": node.nodename,
        "time_start": time.time() - context.runtime if started else None,
        "acknowledged": False,  # acked only once its outcome is confirmed
        "delivery_info": {
            "exchange": delivery.exchange,
            "routing_key": delivery.routing_key,
            "priority": message.priority,
            "redelivered": delivery.redelivered,
        },
        "worker_pid": os.getpid(),
    }


def broker_info(url: str) -> dict[str, Any]:
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    vhost = urllib.parse.unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    return {
        "hostname": parts.hostname or "localhost",
        "userid": urllib.parse.unquote(parts.username or "guest"),
        "virtual_host": vhost,
        "port": parts.port or (5671 if parts.scheme == "amqps" else 5672),
        "insist": False,
        "ssl": parts.scheme == "amqps",
        "transport": "amqp",
        "connect_timeout": 4,
        "transport_options": {},
        "login_method": "PLAIN",
        "uri_prefix": None,
        "heartbeat": 60.0,
        "failover_strategy": "round-robin",
        "alternates": [],
    }


def queue_info(app: Any, name: str) -> dict[str, Any]:
    spec = app.topology.queue(name)
    arguments = spec.arguments()
    return {
        "name": name,
        "exchange": {
            "name": "rabbitq",
            "type": "topic",
            "arguments": None,
            "durable": True,
            "passive": False,
            "auto_delete": False,
            "delivery_mode": None,
            "no_declare": False,
        },
        "routing_key": ", ".join(spec.effective_bindings()),
        "queue_arguments": arguments,
        "binding_arguments": None,
        "consumer_arguments": None,
        "durable": True,
        "exclusive": False,
        "auto_delete": False,
        "no_ack": False,
        "alias": None,
        "bindings": [],
        "no_declare": None,
        "expires": None,
        "message_ttl": None,
        "max_length": arguments.get("x-max-length"),
        "max_length_bytes": arguments.get("x-max-length-bytes"),
        "max_priority": arguments.get("x-max-priority"),
    }


def _rusage() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    fields = [
        "utime",
        "stime",
        "maxrss",
        "ixrss",
        "idrss",
        "isrss",
        "minflt",
        "majflt",
        "nswap",
        "inblock",
        "oublock",
        "msgsnd",
        "msgrcv",
        "nsignals",
        "nvcsw",
        "nivcsw",
    ]
    return {name: getattr(usage, f"ru_{name}") for name in fields}
