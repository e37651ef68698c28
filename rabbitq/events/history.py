"""Reading events back (``rabbitq events``): which to show, and how (pure).

Events arrive in the order the broker stored them, from many nodes; a filter keeps those of
one task id, of tasks whose name matches a glob, and those after a point in time. Only
task-sent and task-received events carry a task's name, so the filter remembers which ids
it has seen under a matching name and keeps their later events too (a task's whole life).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rabbitq.errors import ConfigurationError

_AGO = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
TYPE_WIDTH = 15  # "task-succeeded" and a space
# Most names a filter keeps in mind (ids seen under a matching name); the oldest go first.
REMEMBERED_IDS = 1_000_000


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1w`` ago, or an ISO 8601 time (UTC if it has no
    offset)."""
    usage = (
        f"{text!r}: give a time ago (90s, 30m, 1h, 2d, 1w) or an ISO 8601 time "
        "(2026-12-04T10:00:00+01:00)"
    )
    match = _AGO.fullmatch(text.strip())
    if match:
        try:
            return now - dt.timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
        except OverflowError:  # 999999999999w: before the first year there is
            raise ConfigurationError(f"{text!r} is further back than any date") from None
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(usage) from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    if moment > now:
        # Nothing can be stored after now: without --follow the read would never end.
        raise ConfigurationError(f"{text!r} is in the future")
    return moment


@dataclass
class EventFilter:
    since: dt.datetime | None = None
    task: str | None = None  # a task name or glob
    task_id: str | None = None
    heartbeats: bool = False  # worker-heartbeat events (never kept in the history anyway)
    names: dict[str, str] = field(default_factory=dict)  # task id -> name, as seen

    def keep(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("type")
        uuid = event.get("uuid")
        name = event.get("name")
        if isinstance(uuid, str) and isinstance(name, str):
            if len(self.names) >= REMEMBERED_IDS:
                del self.names[next(iter(self.names))]
            self.names[uuid] = name
        if kind == "worker-heartbeat" and not self.heartbeats:
            return False
        if self.since is not None:
            timestamp = event.get("timestamp")
            if isinstance(timestamp, int | float) and timestamp < self.since.timestamp():
                return False
        if self.task_id is not None and uuid != self.task_id:
            return False
        if self.task is not None:
            known = self.names.get(uuid) if isinstance(uuid, str) else None
            if known is None or not fnmatch.fnmatchcase(known, self.task):
                return False
        return True

    def name_of(self, event: Mapping[str, Any]) -> str | None:
        uuid = event.get("uuid")
        return self.names.get(uuid) if isinstance(uuid, str) else None


def format_event(event: Mapping[str, Any], name: str | None = None) -> str:
    """One line: when (UTC), what, which task or node, and the fields that say most."""
    timestamp = event.get("timestamp")
    when = (
        dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
        if isinstance(timestamp, int | float)
        else "?"
    )
    kind = str(event.get("type", "?"))
    node = event.get("hostname", "?")
    if kind.startswith("task-"):
        subject = f"{event.get('name') or name or '?'}[{event.get('uuid', '?')}] {node}"
    else:
        subject = str(node)
    details = " ".join(f"{key}={_shown(event[key])}" for key in _details(kind) if key in event)
    return f"{when} {kind:<{TYPE_WIDTH}}{subject}{' ' + details if details else ''}"


def _details(kind: str) -> tuple[str, ...]:
    return {
        "task-sent": ("queue", "routing_key", "args", "kwargs", "eta", "retries"),
        "task-received": ("queue", "args", "kwargs", "retries", "eta"),
        "task-started": ("pid",),
        "task-succeeded": ("runtime", "result"),
        "task-failed": ("exception", "reason", "dead_letter_queue"),
        "task-retried": ("exception",),
        "task-rejected": ("reason", "dead_letter_queue", "exception", "requeue"),
        "task-revoked": ("expired", "terminated", "reason"),
        "worker-online": ("pid", "sw_ident", "sw_ver"),
        "worker-heartbeat": ("active", "processed", "loadavg"),
        "worker-offline": ("pid", "processed"),
    }.get(kind, ())


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if value is None:
        return "-"
    return str(value)
