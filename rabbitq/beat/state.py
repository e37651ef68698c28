"""What the leading beat keeps in the broker: each entry's last dealt-with tick. Pure codec.

The state travels as one JSON message in a durable queue (``rabbitq.beat.state``) that the
leader rewrites after every fire. A reader may briefly see an older copy beside the newest one
(a status reader holding a message while the leader writes), so every copy carries a sequence
number and readers keep the highest.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rabbitq.beat.schedules import format_time, parse_time
from rabbitq.errors import MessageDecodeError

STATE_VERSION = 1
CONTENT_TYPE = "application/json"


def leader_queue_name(group: str = "") -> str:
    """The exclusive queue whose holder leads (its connection's life is the lease)."""
    return f"rabbitq.beat.{group}.leader" if group else "rabbitq.beat.leader"


def state_queue_name(group: str = "") -> str:
    return f"rabbitq.beat.{group}.state" if group else "rabbitq.beat.state"


def dead_queue_name(group: str = "") -> str:
    """Ticks no queue would take (unroutable) go here, with the reason, instead of vanishing."""
    return f"rabbitq.beat.{group}.dead" if group else "rabbitq.beat.dead"


@dataclass
class EntryRecord:
    last: dt.datetime  # every tick at or before this time was fired (or skipped by policy)
    schedule: str  # the schedule's description when ``last`` was recorded
    next: dt.datetime | None = None  # for status displays only


@dataclass
class BeatState:
    seq: int = 0
    leader: str = ""
    leader_since: dt.datetime | None = None
    written_at: dt.datetime | None = None
    entries: dict[str, EntryRecord] = field(default_factory=dict)


def encode_state(state: BeatState) -> bytes:
    document: dict[str, Any] = {
        "version": STATE_VERSION,
        "seq": state.seq,
        "leader": state.leader,
        "leader_since": _time_or_none(state.leader_since),
        "written_at": _time_or_none(state.written_at),
        "entries": {
            name: {
                "last": format_time(record.last),
                "schedule": record.schedule,
                "next": _time_or_none(record.next),
            }
            for name, record in sorted(state.entries.items())
        },
    }
    return json.dumps(document, separators=(",", ":")).encode()


def decode_state(body: bytes) -> BeatState:
    try:
        document = json.loads(body)
        if document.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported state version {document.get('version')!r}")
        entries = {
            str(name): EntryRecord(
                last=parse_time(record["last"]),
                schedule=str(record["schedule"]),
                next=_parse_or_none(record.get("next")),
            )
            for name, record in document["entries"].items()
        }
        return BeatState(
            seq=int(document["seq"]),
            leader=str(document.get("leader", "")),
            leader_since=_parse_or_none(document.get("leader_since")),
            written_at=_parse_or_none(document.get("written_at")),
            entries=entries,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MessageDecodeError(f"beat state is not readable: {exc}") from None


def newest(states: Iterable[BeatState]) -> BeatState | None:
    return max(states, key=lambda state: state.seq, default=None)


def _time_or_none(moment: dt.datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


def _parse_or_none(text: Any) -> dt.datetime | None:
    return parse_time(str(text)) if text is not None else None
