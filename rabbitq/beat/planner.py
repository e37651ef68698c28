"""The leader's bookkeeping: which ticks are due, and what to record once they are sent. Pure.

A leader builds a ``Planner`` from the state it read from the broker. An entry the state does
not know (new, or its schedule changed) starts from the moment the planner first sees it: its
first tick is the next one after that, and nothing before it counts as missed.

A known entry carries on from its last recorded tick. Whether the ticks since then are a
failover's (all sent) or an outage's (the entry's ``catch_up`` policy; ``once`` sends a single
tick for the whole period) is ``due_ticks``'s decision, by how late the oldest of them is.

The leader's loop is: ``due(now)`` -> publish those ticks (confirmed) -> ``commit()`` ->
write ``snapshot()`` to the broker (confirmed). A leader killed between the publish and the
state write leaves the state one tick behind, so its successor sends that tick again, with
the same id: the one duplicate a failover can cause.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from rabbitq.beat.schedules import PeriodicEntry, due_ticks, tick_id
from rabbitq.beat.state import BeatState, EntryRecord


@dataclass(frozen=True)
class Tick:
    entry: PeriodicEntry
    scheduled: dt.datetime

    @property
    def id(self) -> str:
        return tick_id(self.entry.name, self.scheduled)


class Planner:
    def __init__(
        self,
        entries: Iterable[PeriodicEntry],
        state: BeatState | None,
        now: dt.datetime,
        leader: str,
    ) -> None:
        self.entries = {entry.name: entry for entry in entries}
        self.leader = leader
        self.leader_since = now
        self.seq = state.seq if state is not None else 0
        known = state.entries if state is not None else {}
        self.last: dict[str, dt.datetime] = {}
        for name, entry in self.entries.items():
            record = known.get(name)
            description = entry.schedule.describe()
            if record is not None and record.schedule == description:
                self.last[name] = record.last
            else:
                self.last[name] = now
        # The state must be written at once: it records the starting points of new entries
        # and drops entries no longer scheduled.
        self.dirty = True
        self._pending: dict[str, dt.datetime] = {}

    def due(self, now: dt.datetime) -> list[Tick]:
        """The ticks to send now, oldest first. Call ``commit()`` once they are sent."""
        ticks: list[Tick] = []
        self._pending = {}
        for name, entry in self.entries.items():
            due = due_ticks(entry, self.last[name], now)
            ticks.extend(Tick(entry, scheduled) for scheduled in due.ticks)
            if due.handled_until != self.last[name]:
                self._pending[name] = due.handled_until
        ticks.sort(key=lambda tick: (tick.scheduled, tick.entry.name))
        return ticks

    def commit(self) -> None:
        """The ticks of the last ``due()`` were sent (or dead-lettered): record them."""
        if self._pending:
            self.last.update(self._pending)
            self._pending = {}
            self.dirty = True

    def next_wake(self) -> dt.datetime:
        """When the next tick of any entry falls due."""
        return min(
            (entry.schedule.next_after(self.last[name]) for name, entry in self.entries.items()),
            default=dt.datetime.max.replace(tzinfo=dt.UTC),
        )

    def snapshot(self, now: dt.datetime) -> BeatState:
        """The state to write; each call takes the next sequence number."""
        self.seq += 1
        self.dirty = False
        return BeatState(
            seq=self.seq,
            leader=self.leader,
            leader_since=self.leader_since,
            written_at=now,
            entries={
                name: EntryRecord(
                    last=self.last[name],
                    schedule=entry.schedule.describe(),
                    next=entry.schedule.next_after(self.last[name]),
                )
                for name, entry in self.entries.items()
            },
        )
