"""The broker's names for a limit's structures (``docs/limits.md``), in one place: the
worker, ``rabbitq status`` and the docs agree on them.

    rabbitq.limit.<name>.tokens.b<burst>     a rate's bucket: x-max-length = burst
    rabbitq.limit.<name>.refiller            exclusive: held by the one process refilling it
    rabbitq.limit.<name>.waiting             a rate's waiting tasks
    rabbitq.limit.<name>.slot.<i>            exclusive: a concurrency slot, held while running
    rabbitq.limit.<name>.waiting             a concurrency limit's waiting tasks
    rabbitq.limit.<name>.key.<key>.slot.<i>  a mutex key's slot
    rabbitq.limit.<name>.key.<key>.waiting   a mutex key's waiting tasks (x-expires when idle)
    rabbitq.limits.returned                  waiting tasks whose wait ran long come back here

A key is used as it is when short and plain, else by its digest (queue names are bytes on
the broker and at most 255 of them).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PREFIX = "rabbitq.limit."
RETURNED_QUEUE = "rabbitq.limits.returned"
# The header a parked copy carries: the task queue it came from, where its retries, dead
# letters and hand-backs go.
ORIGIN_HEADER = "rabbitq_limit_origin"
PLAIN_KEY = re.compile(r"[A-Za-z0-9_:@=-]{1,64}")


def scope_name(limit: str, key: str | None = None) -> str:
    """``rabbitq.limit.<name>`` or ``rabbitq.limit.<name>.key.<key>``."""
    base = PREFIX + limit
    if key is None:
        return base
    shown = key if PLAIN_KEY.fullmatch(key) else "h" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{base}.key.{shown}"


def waiting_queue(scope: str) -> str:
    return scope + ".waiting"


def slot_queue(scope: str, slot: int) -> str:
    return f"{scope}.slot.{slot}"


def bucket_queue(limit: str, burst: int) -> str:
    return f"{PREFIX}{limit}.tokens.b{burst}"


def refiller_queue(limit: str) -> str:
    return f"{PREFIX}{limit}.refiller"


def holds_copies(queue: str) -> bool:
    """A waiting or returned queue: its messages are copies of tasks of another queue."""
    return queue == RETURNED_QUEUE or (queue.startswith(PREFIX) and queue.endswith(".waiting"))


@dataclass(frozen=True)
class LimitQueue:
    """What a queue named by this module is: its limit, its key (a mutex's), and its part."""

    limit: str
    key: str | None  # as shown in the name (a long key by its digest)
    part: str  # tokens | refiller | waiting | slot
    number: int | None = None  # a slot's index, a bucket's burst


_PARTS = re.compile(
    r"(?P<scope>.+?)\.(?:(?P<part>refiller|waiting)|slot\.(?P<slot>[0-9]+)|tokens\.b(?P<burst>[0-9]+))"
)


def parse_queue(queue: str) -> LimitQueue | None:
    """The limit structure ``queue`` names, or None for any other queue (and the returned)."""
    if not queue.startswith(PREFIX):
        return None
    match = _PARTS.fullmatch(queue.removeprefix(PREFIX))
    if match is None:
        return None
    scope = match.group("scope")
    limit, keyed, key = scope.rpartition(".key.")
    if not keyed:
        limit, key = scope, ""
    if not limit:
        return None
    if match.group("slot") is not None:
        return LimitQueue(limit, key or None, "slot", int(match.group("slot")))
    if match.group("burst") is not None:
        if key:
            return None  # a rate has no keys
        return LimitQueue(limit, None, "tokens", int(match.group("burst")))
    part = match.group("part")
    if part == "refiller" and key:
        return None
    return LimitQueue(limit, key or None, part)
