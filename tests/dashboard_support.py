"""A dashboard app with no broker behind it: a snapshot built by hand, dead queues in memory."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

with warnings.catch_warnings():
    # Starlette 1.x would rather its test client ran on httpx2; httpx works the same here.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from starlette.routing import Route

from rabbitq.dashboard.app import create_app
from rabbitq.dashboard.config import DashboardConfig
from rabbitq.dashboard.dead_queues import Listing, Replayed
from rabbitq.dashboard.sessions import SessionSigner
from rabbitq.dead_letter_details import DeadLetterDetails, ReplaySelection
from rabbitq.dead_letters import dead_letter_envelope, dead_queue_name
from rabbitq.errors import BrokerConnectionError, QueueNotFoundError
from rabbitq.message import TaskMessage, encode_task
from rabbitq.serializers import MSGPACK
from rabbitq.status.snapshot import (
    DeadQueueFigures,
    NewestDeadLetter,
    QueueFigures,
    Snapshot,
    WorkerFigures,
)

TOKEN = "s3cret-token"


def snapshot() -> Snapshot:
    return Snapshot(
        taken_at="2026-12-04T20:00:00+00:00",
        broker="amqp://127.0.0.1:5672/",
        broker_version="4.0.5",
        queues=(QueueFigures("emails", "task", "quorum", 3, 2, 1, 1, 0.5, 0.2),),
        workers=(
            WorkerFigures("w1@host", 42, 4, 1, 10, (0.1, 0.2, 0.3), "rabbitq 0.1.0", 0.0, True),
        ),
        dead_queues=(
            DeadQueueFigures(
                "emails.dead",
                "emails",
                1,
                NewestDeadLetter("id-1", "it.needs_file", "task-failed", "ValueError: x", ""),
            ),
        ),
    )


class FixedStatus:
    def __init__(self, problem: Exception | None = None) -> None:
        self.problem = problem
        self.closed = False
        self.collected = 0

    def collect(self) -> Snapshot:
        self.collected += 1
        if self.problem is not None:
            raise self.problem
        return snapshot()

    def close(self) -> None:
        self.closed = True


def dead_letter(task_id: str) -> DeadLetterDetails:
    envelope = encode_task(TaskMessage("it.needs_file", [0, "/fixed"], id=task_id), MSGPACK)
    try:
        raise FileNotFoundError("/fixed")
    except FileNotFoundError as exc:
        dead = dead_letter_envelope(
            envelope, reason="task-failed", queue="emails", routing_key="emails",
            exchange="rabbitq", exception=exc, attempts=1,
        )  # fmt: skip
    return DeadLetterDetails.of(dead)


@dataclass
class MemoryDeadQueues:
    """``DeadQueues`` over a dict: queue name -> dead letters."""

    queues: dict[str, list[DeadLetterDetails]] = field(default_factory=dict)
    unreachable: bool = False
    failure: Exception | None = None  # raised by every read or action, when set
    replays: list[ReplaySelection] = field(default_factory=list)
    purges: list[str] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)  # every queue read or acted on

    def _letters(self, queue: str) -> list[DeadLetterDetails]:
        self.opened.append(queue)
        if self.failure is not None:
            raise self.failure
        if self.unreachable:
            raise BrokerConnectionError("cannot reach the broker: connection refused")
        name = dead_queue_name(queue)
        if name not in self.queues:
            raise QueueNotFoundError(f"queue {name!r} does not exist")
        return self.queues[name]

    def list(self, queue: str) -> Listing:
        letters = self._letters(queue)
        return Listing(
            dead_queue_name(queue), len(letters), tuple(d.summary for d in letters), None
        )

    def find(self, queue: str, task_id: str) -> DeadLetterDetails | None:
        return next((d for d in self._letters(queue) if d.summary.id == task_id), None)

    def depth(self, queue: str) -> int:
        return len(self._letters(queue))

    def replay(self, queue: str, selection: ReplaySelection) -> Replayed:
        letters = self._letters(queue)
        self.replays.append(selection)
        taken = [d for d in letters if selection.takes(d.summary)]
        letters[:] = [d for d in letters if d not in taken]
        return Replayed(len(taken), ())

    def purge(self, queue: str) -> int:
        letters = self._letters(queue)
        self.purges.append(queue)
        removed = len(letters)
        letters.clear()
        return removed


@contextmanager
def dashboard(
    *,
    token: str | None = None,
    status: FixedStatus | None = None,
    dead_queues: MemoryDeadQueues | None = None,
    flower: str | None = None,
    signer: SessionSigner | None = None,
    routes: tuple[Route, ...] = (),
    raise_server_exceptions: bool = True,
) -> Iterator[TestClient]:
    """The app under a test client; ``routes`` are added to it (a route that fails, say)."""
    config = DashboardConfig("amqp://guest:guest@127.0.0.1:1/", flower_url=flower, token=token)
    app = create_app(
        config,
        status or FixedStatus(),
        dead_queues=dead_queues or MemoryDeadQueues(),  # type: ignore[arg-type]
        signer=signer,
        allowed_hosts=None if token else ("testserver",),
    )
    app.router.routes[:0] = routes
    with TestClient(
        app, follow_redirects=False, raise_server_exceptions=raise_server_exceptions
    ) as client:
        yield client


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)
