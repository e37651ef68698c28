"""Periodic-task schedules: when each entry fires. Pure: no I/O, no clock of its own.

Every time here is an aware ``datetime``; computations run in UTC and cron expressions are
read in the entry's time zone. Two kinds of schedule:

- ``Every(interval)`` fires on a fixed grid counted from ``start`` (default: the Unix epoch), so
  ``every=timedelta(hours=1)`` fires on the hour and every beat process, now or after a
  restart, agrees on the exact instants. That agreement is what makes a tick's id
  (entry name + scheduled time) deterministic.
- ``Crontab(expression, timezone)`` is parsed and stepped by ``croniter``. Five fields, or six
  with seconds first (as in Spring and Quartz), or an alias such as ``@daily``. Across a
  daylight-saving change: a wall-clock time that does not exist fires at the first minute
  after the gap; a wall-clock time that happens twice fires once (the first time), unless the
  hour field is a wildcard, in which case each real hour fires.

``due_ticks`` decides which scheduled times to fire given the last one dealt with and the time
now. The oldest tick not yet dealt with tells what happened. At most ``grace`` late (the
boundary included), a standby took over, or the leader is merely busy: every tick fires,
whatever the policy, so a failover never skips one. More than ``grace`` late, no beat ran for
a while (an outage) and the entry's catch-up policy decides:

- ``once``: one tick, the newest scheduled at or before now, stands for the whole missed
  period; the grid resumes after it (Celery's beat sends one task after a downtime);
- ``all``: every tick fires, oldest first;
- ``skip``: the ticks more than ``grace`` late are dropped; those within it still fire.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict, get_args

from croniter import croniter
from croniter.croniter import CroniterError

from rabbitq.errors import ScheduleConfigError

CatchUp = Literal["once", "all", "skip"]
CATCH_UP_POLICIES: tuple[str, ...] = get_args(CatchUp)

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_GRACE = dt.timedelta(seconds=60)
MIN_INTERVAL = dt.timedelta(milliseconds=1)
# How many ticks of one entry one wake of the beat fires; the rest fire on the next wake, so a
# long "all" catch-up cannot starve the other entries.
MAX_TICKS_PER_WAKE = 1000


class Signature(Protocol):
    """The task call an entry fires: a ``rabbitq.Signature`` (a protocol, so this pure module
    does not import the canvas and, through it, the app)."""

    @property
    def task(self) -> str: ...
    @property
    def args(self) -> Sequence[Any]: ...
    @property
    def kwargs(self) -> Mapping[str, Any]: ...
    @property
    def options(self) -> Mapping[str, Any]: ...


class Schedule(ABC):
    """When an entry fires."""

    @abstractmethod
    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first scheduled time strictly after ``moment`` (UTC)."""

    @abstractmethod
    def latest_at_or_before(self, moment: dt.datetime) -> dt.datetime:
        """The last scheduled time at or before ``moment`` (UTC)."""

    @abstractmethod
    def describe(self) -> str:
        """A stable text form; a change to it means the entry's schedule changed."""

    def upcoming(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        times: list[dt.datetime] = []
        moment = after
        for _ in range(count):
            moment = self.next_after(moment)
            times.append(moment)
        return times


class Every(Schedule):
    """Every ``interval``, on a grid that starts at ``start`` (default: the Unix epoch)."""

    def __init__(self, interval: dt.timedelta | float, start: dt.datetime | None = None) -> None:
        if not isinstance(interval, dt.timedelta):
            interval = dt.timedelta(seconds=interval)
        if interval < MIN_INTERVAL:
            raise ScheduleConfigError(f"an interval must be at least 1 ms, got {interval}")
        if start is not None and start.tzinfo is None:
            raise ScheduleConfigError("start= must be an aware datetime (give it a tzinfo)")
        self.interval = interval
        self.start = (start or EPOCH).astimezone(UTC)

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        steps = (moment - self.start) // self.interval + 1
        return self.start + steps * self.interval

    def latest_at_or_before(self, moment: dt.datetime) -> dt.datetime:
        return self.start + ((moment - self.start) // self.interval) * self.interval

    def describe(self) -> str:
        text = f"every {format_duration(self.interval)}"
        return text if self.start == EPOCH else f"{text} from {self.start.isoformat()}"

    def __repr__(self) -> str:
        return f"Every({self.describe()!r})"


class Crontab(Schedule):
    """A cron expression read in ``timezone`` (a name such as ``Europe/Paris``, or a tzinfo)."""

    def __init__(self, expression: str, timezone: str | dt.tzinfo = "UTC") -> None:
        self.expression = " ".join(expression.split())
        self.timezone = time_zone(timezone) if isinstance(timezone, str) else timezone
        fields = self.expression.split(" ")
        if not self.expression.startswith("@") and len(fields) not in (5, 6):
            raise ScheduleConfigError(
                f"cron expression {expression!r} has {len(fields)} fields; expected 5 "
                "(minute hour day month weekday) or 6 (with seconds first)"
            )
        self._seconds_first = len(fields) == 6
        hour_field = fields[2 if self._seconds_first else 1] if len(fields) > 1 else ""
        # "@hourly" and "0 * * * *" fire each real hour; "30 2 * * *" fires once a day.
        self._wildcard_hour = self.expression == "@hourly" or "*" in hour_field
        try:
            self._iterator(EPOCH).get_next(dt.datetime)
        except (CroniterError, ValueError, KeyError) as exc:
            raise ScheduleConfigError(f"invalid cron expression {expression!r}: {exc}") from None

    def _iterator(self, start: dt.datetime) -> croniter:
        return croniter(
            self.expression,
            start.astimezone(self.timezone),
            second_at_beginning=self._seconds_first,
        )

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        # croniter counts in whole seconds: step from the second ``moment`` falls in.
        iterator = self._iterator(moment.replace(microsecond=0))
        while True:
            candidate: dt.datetime = iterator.get_next(dt.datetime)
            if not self._repeated_wall_time(candidate):
                return candidate.astimezone(UTC)

    def latest_at_or_before(self, moment: dt.datetime) -> dt.datetime:
        iterator = self._iterator(moment.replace(microsecond=0) + dt.timedelta(seconds=1))
        while True:
            candidate: dt.datetime = iterator.get_prev(dt.datetime)
            if not self._repeated_wall_time(candidate):
                return candidate.astimezone(UTC)

    def _repeated_wall_time(self, moment: dt.datetime) -> bool:
        """Is this the second occurrence of a wall-clock time (the hour after a DST fall-back)
        for an expression that names its hours?"""
        if self._wildcard_hour:
            return False
        wall = moment.astimezone(self.timezone).replace(tzinfo=None)
        first = wall.replace(tzinfo=self.timezone, fold=0)
        second = wall.replace(tzinfo=self.timezone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return False
        return moment.astimezone(UTC) == second.astimezone(UTC)

    def describe(self) -> str:
        return f"cron {self.expression} {self.timezone}"

    def __repr__(self) -> str:
        return f"Crontab({self.expression!r}, {str(self.timezone)!r})"


def crontab(expression: str, timezone: str | dt.tzinfo = "UTC") -> Crontab:
    return Crontab(expression, timezone)


def time_zone(name: str) -> dt.tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleConfigError(f"unknown time zone {name!r}") from None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``"90s"``, ``"5m"``, ``"1h30m"``, ``"1d"``, ``"250ms"`` (or a bare number of seconds)."""
    compact = text.replace(" ", "")
    try:
        return dt.timedelta(seconds=float(compact))
    except ValueError:
        pass
    position, seconds = 0, 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(compact) or not compact:
        raise ScheduleConfigError(
            f"invalid duration {text!r}; write seconds (30) or units such as 90s, 5m, 1h30m, 1d"
        )
    return dt.timedelta(seconds=seconds)


def format_duration(interval: dt.timedelta) -> str:
    total_ms = round(interval.total_seconds() * 1000)
    if total_ms % 1000:
        return f"{total_ms}ms"
    rest = total_ms // 1000
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"


@dataclass
class PeriodicEntry:
    """A signature fired on a schedule, under a name unique within the app."""

    name: str
    signature: Signature
    schedule: Schedule
    catch_up: CatchUp = "once"
    grace: dt.timedelta = DEFAULT_GRACE
    line: int | None = None  # where a schedule file defined it

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ScheduleConfigError(f"entry name {self.name!r} must be non-empty, no spaces")
        if self.catch_up not in CATCH_UP_POLICIES:
            raise ScheduleConfigError(
                f"entry {self.name!r}: catch_up must be one of "
                f"{', '.join(CATCH_UP_POLICIES)}; got {self.catch_up!r}"
            )
        if self.grace < dt.timedelta(0):
            raise ScheduleConfigError(f"entry {self.name!r}: grace must not be negative")
        timed = {"countdown", "eta"} & set(self.signature.options)
        if timed:
            raise ScheduleConfigError(
                f"entry {self.name!r}: {', '.join(sorted(timed))} makes no sense on a periodic "
                "task; the schedule decides when it is sent"
            )


@dataclass
class PeriodicEntries:
    """An app's periodic entries, by name."""

    entries: dict[str, PeriodicEntry] = field(default_factory=dict)

    def add(self, entry: PeriodicEntry) -> PeriodicEntry:
        if entry.name in self.entries:
            raise ScheduleConfigError(
                f"two periodic entries are named {entry.name!r}; pass name= to tell them apart"
            )
        self.entries[entry.name] = entry
        return entry

    def __iter__(self) -> Iterator[PeriodicEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


class PeriodicOptions(TypedDict, total=False):
    """``App.add_periodic``'s keyword arguments."""

    every: dt.timedelta | float | str
    cron: str
    timezone: str | dt.tzinfo
    schedule: Schedule
    name: str
    catch_up: CatchUp
    grace: dt.timedelta | float


def periodic_entry(sig: Signature, options: PeriodicOptions) -> PeriodicEntry:
    """The entry ``app.add_periodic(sig, **options)`` describes."""
    # Chains and groups subclass Signature: compare the exact class by name, so this pure
    # module need not import the canvas (and through it the app) at run time.
    if type(sig).__name__ != "Signature":
        raise ScheduleConfigError("add_periodic takes a task or a task signature (task.s())")
    grace = options.get("grace", DEFAULT_GRACE)
    return PeriodicEntry(
        options.get("name") or sig.task,
        sig,
        schedule_of(
            options.get("every"),
            options.get("cron"),
            options.get("timezone"),
            options.get("schedule"),
        ),
        catch_up=options.get("catch_up", "once"),
        grace=grace if isinstance(grace, dt.timedelta) else dt.timedelta(seconds=grace),
    )


def schedule_of(
    every: dt.timedelta | float | str | None,
    cron: str | None,
    timezone: str | dt.tzinfo | None,
    schedule: Schedule | None,
) -> Schedule:
    """The one schedule that ``add_periodic``'s keyword arguments describe."""
    given = [name for name, value in (("every", every), ("cron", cron), ("schedule", schedule))
             if value is not None]  # fmt: skip
    if len(given) != 1:
        raise ScheduleConfigError(
            "give exactly one of every=, cron= or schedule=; got "
            + (", ".join(given) if given else "none")
        )
    if timezone is not None and cron is None:
        raise ScheduleConfigError("timezone= applies to cron= entries only")
    if schedule is not None:
        return schedule
    if cron is not None:
        return Crontab(cron, timezone or "UTC")
    assert every is not None
    return Every(parse_duration(every) if isinstance(every, str) else every)


def tick_id(entry_name: str, scheduled: dt.datetime) -> str:
    """The task id of the tick of ``entry_name`` scheduled at ``scheduled``: the same in every
    beat process, so a tick sent twice (leader killed mid-tick) carries one id."""
    return f"{entry_name}@{format_time(scheduled)}"


def format_time(moment: dt.datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class Due:
    """What one entry should fire now, and how far its schedule is then dealt with."""

    ticks: list[dt.datetime]
    handled_until: dt.datetime


def due_ticks(entry: PeriodicEntry, last: dt.datetime, now: dt.datetime) -> Due:
    """The scheduled times of ``entry`` to fire at ``now``, given that every tick at or before
    ``last`` has been dealt with (fired, or skipped by the catch-up policy)."""
    schedule = entry.schedule
    missed_until = now - entry.grace
    # Strictly earlier: a tick exactly ``grace`` late still counts as a failover's, not missed.
    outage = schedule.next_after(last) < missed_until
    start = last
    if outage and entry.catch_up == "once":
        newest = schedule.latest_at_or_before(now)
        return Due([newest], newest)
    if outage and entry.catch_up == "skip":
        start = latest_before(schedule, missed_until)
    ticks: list[dt.datetime] = []
    moment = schedule.next_after(start)
    while moment <= now and len(ticks) < MAX_TICKS_PER_WAKE:
        ticks.append(moment)
        moment = schedule.next_after(moment)
    return Due(ticks, ticks[-1] if ticks else start)


def latest_before(schedule: Schedule, moment: dt.datetime) -> dt.datetime:
    """The last scheduled time strictly before ``moment``."""
    latest = schedule.latest_at_or_before(moment)
    if latest < moment:
        return latest
    # Schedules step in whole milliseconds at the finest (cron: whole seconds), so a
    # microsecond earlier lands strictly between the previous tick and this one.
    return schedule.latest_at_or_before(moment - dt.timedelta(microseconds=1))
