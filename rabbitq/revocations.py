"""Revocations: what the log in the broker holds, and the set a worker keeps of them.

A revocation names task ids that must never start. It is appended to the stream
``rabbitq.revocations`` (``amqp/revocation_log.py``), which every worker reads from its start
when it starts and then follows: so a revoke survives the restart of every worker, and reaches
tasks still waiting in a delay level, a retry, or a chain or chord step not yet sent.

Memory is bounded by time, not by count (forgetting a revocation early would run the task):
each is kept until ``keep_until``. The revoker sets it to now plus the ceiling (default: the
results' expiry, ``App(revocations_kept_for=)``), since it cannot know when the task would
arrive; a worker that meets the revoked message and sees its ``expires`` shortens it to then
plus ``EXPIRES_MARGIN`` (after which every copy is dead-lettered ``expired`` anyway).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rabbitq.errors import MessageDecodeError

CONTENT_TYPE = "application/json"
EXPIRES_MARGIN = 60.0  # seconds a revocation outlives its task's ``expires``
PRUNE_EVERY = 60.0  # seconds between sweeps of what has run out


@dataclass(frozen=True)
class Revocation:
    """One revoke: ``ids`` never start; with ``terminate``, one running now is stopped."""

    ids: tuple[str, ...]
    keep_until: float  # epoch seconds
    terminate: bool = False
    signal: str | None = None
    revoked_at: float = 0.0

    @classmethod
    def now(
        cls,
        ids: Iterable[str],
        kept_for: float,
        *,
        terminate: bool = False,
        signal: str | None = None,
        clock: float | None = None,
    ) -> Revocation:
        at = time.time() if clock is None else clock
        return cls(tuple(ids), at + kept_for, terminate, signal, at)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "ids": list(self.ids),
                "keep_until": self.keep_until,
                "terminate": self.terminate,
                "signal": self.signal,
                "revoked_at": self.revoked_at,
            }
        ).encode()


def stream_arguments(kept_for: float) -> dict[str, Any]:
    """The log's arguments when it is created: a stream kept ``kept_for`` seconds."""
    # Whole seconds, at least one: RabbitMQ's x-max-age takes "<n>s".
    return {"x-queue-type": "stream", "x-max-age": f"{max(1, int(kept_for + 0.999))}s"}


def decode_revocation(body: bytes) -> Revocation:
    """A log entry; ``MessageDecodeError`` for anything else (skipped, with a warning)."""
    try:
        data = json.loads(body)
        ids = data["ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError("ids must be a list of strings")
        signal = data.get("signal")
        return Revocation(
            tuple(ids),
            float(data["keep_until"]),
            bool(data.get("terminate", False)),
            str(signal) if signal is not None else None,
            float(data.get("revoked_at", 0.0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MessageDecodeError(f"not a revocation: {exc}") from exc


class RevokedSet:
    """Task ids revoked, each with the time until which it is kept."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._pruned_at = 0.0

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._until

    def __len__(self) -> int:
        return len(self._until)

    def __iter__(self) -> Iterator[str]:
        return iter(self._until)

    def add(self, revocation: Revocation, now: float | None = None) -> list[str]:
        """Keep ``revocation``'s ids (the later ``keep_until`` wins); the ids that were new."""
        now = time.time() if now is None else now
        new = []
        if revocation.keep_until > now:
            for task_id in revocation.ids:
                known = self._until.get(task_id)
                if known is None:
                    new.append(task_id)
                if known is None or known < revocation.keep_until:
                    self._until[task_id] = revocation.keep_until
        self.prune(now)
        return new

    def met(self, task_id: str, expires: float | None) -> None:
        """The revoked message was met: with an ``expires`` (epoch), no copy can run after
        it, so the revocation need not be kept longer than that plus a margin."""
        if expires is not None and task_id in self._until:
            self._until[task_id] = min(self._until[task_id], expires + EXPIRES_MARGIN)

    def prune(self, now: float | None = None, *, every: float = PRUNE_EVERY) -> int:
        """Forget what has run out (at most once per ``every`` seconds); how many."""
        now = time.time() if now is None else now
        if now - self._pruned_at < every:
            return 0
        self._pruned_at = now
        gone = [task_id for task_id, until in self._until.items() if until <= now]
        for task_id in gone:
            del self._until[task_id]
        return len(gone)
