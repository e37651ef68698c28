"""The leader's planner and the state it leaves in the broker, driven by a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest

from rabbitq.beat.planner import Planner, Tick
from rabbitq.beat.schedules import Crontab, Every, PeriodicEntry
from rabbitq.beat.state import BeatState, EntryRecord, decode_state, encode_state, newest
from rabbitq.canvas import Signature
from rabbitq.errors import MessageDecodeError

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def every_second() -> PeriodicEntry:
    return PeriodicEntry("tick", Signature("t"), Every(1))


def run_leader(planner: Planner, start: dt.datetime, end: dt.datetime) -> list[Tick]:
    """What a leader sends between ``start`` and ``end`` if it wakes every 100 ms."""
    sent: list[Tick] = []
    now = start
    while now <= end:
        ticks = planner.due(now)
        sent.extend(ticks)
        planner.commit()
        now += dt.timedelta(milliseconds=100)
    return sent


def test_a_new_entry_starts_at_the_first_tick_after_the_leader_saw_it() -> None:
    planner = Planner([every_second()], None, at("2026-01-01 00:00:00.5"), "a")
    assert planner.due(at("2026-01-01 00:00:00.9")) == []
    assert [t.id for t in planner.due(at("2026-01-01 00:00:01"))] == ["tick@2026-01-01T00:00:01Z"]


def test_cron_entries_fire_at_their_wall_clock_times() -> None:
    paris_nine = PeriodicEntry("open", Signature("t"), Crontab("0 9 * * mon-fri", "Europe/Paris"))
    planner = Planner([paris_nine], None, at("2026-11-27 00:00:00"), "a")  # a Friday
    sent = run_leader_hourly(planner, at("2026-11-27 00:00:00"), at("2026-12-01 00:00:00"))
    assert [t.scheduled for t in sent] == [at("2026-11-27 08:00:00"), at("2026-11-30 08:00:00")]


def run_leader_hourly(planner: Planner, start: dt.datetime, end: dt.datetime) -> list[Tick]:
    sent: list[Tick] = []
    now = start
    while now <= end:
        sent.extend(planner.due(now))
        planner.commit()
        now = min(planner.next_wake(), now + dt.timedelta(hours=1))
    return sent


def test_a_successor_continues_from_the_written_state_without_gap_or_repeat() -> None:
    first = Planner([every_second()], None, at("2026-01-01 00:00:00"), "a")
    sent_by_first = run_leader(first, at("2026-01-01 00:00:00"), at("2026-01-01 00:00:05"))
    state = decode_state(encode_state(first.snapshot(at("2026-01-01 00:00:05"))))
    # Leader "a" dies; "b" takes over 3.2 s later.
    second = Planner([every_second()], state, at("2026-01-01 00:00:08.2"), "b")
    sent_by_second = run_leader(second, at("2026-01-01 00:00:08.2"), at("2026-01-01 00:00:10"))
    seconds = [t.scheduled.second for t in sent_by_first + sent_by_second]
    assert seconds == list(range(1, 11))


def test_the_tick_in_flight_at_a_kill_is_sent_again_with_the_same_id() -> None:
    first = Planner([every_second()], None, at("2026-01-01 00:00:00"), "a")
    run_leader(first, at("2026-01-01 00:00:00"), at("2026-01-01 00:00:03"))
    state = first.snapshot(at("2026-01-01 00:00:03"))
    in_flight = first.due(at("2026-01-01 00:00:04"))  # published, then killed before commit
    second = Planner([every_second()], state, at("2026-01-01 00:00:05"), "b")
    resent = second.due(at("2026-01-01 00:00:05"))
    assert [t.id for t in in_flight] == [resent[0].id]
    assert [t.scheduled.second for t in resent] == [4, 5]


def test_a_changed_schedule_starts_afresh() -> None:
    old = PeriodicEntry("report", Signature("t"), Crontab("0 3 * * *"))
    planner = Planner([old], None, at("2026-01-01 00:00:00"), "a")
    state = planner.snapshot(at("2026-01-01 00:00:00"))
    new = PeriodicEntry("report", Signature("t"), Every(60))
    later = Planner([new], state, at("2026-01-05 00:00:30"), "b")
    # Not four days of missed minutes: the new schedule counts from now.
    assert later.due(at("2026-01-05 00:00:30")) == []
    assert [t.scheduled for t in later.due(at("2026-01-05 00:01:00"))] == [
        at("2026-01-05 00:01:00")
    ]


def test_entries_no_longer_scheduled_leave_the_state() -> None:
    state = BeatState(seq=3, entries={"gone": EntryRecord(at("2026-01-01 00:00:00"), "every 1s")})
    planner = Planner([every_second()], state, at("2026-01-01 00:00:00"), "a")
    assert set(planner.snapshot(at("2026-01-01 00:00:00")).entries) == {"tick"}


def test_the_state_must_be_written_as_soon_as_a_leader_starts() -> None:
    planner = Planner([every_second()], None, at("2026-01-01 00:00:00"), "a")
    assert planner.dirty
    planner.snapshot(at("2026-01-01 00:00:00"))
    assert not planner.dirty
    planner.due(at("2026-01-01 00:00:01"))
    planner.commit()
    assert planner.dirty


def test_snapshots_count_up_from_the_previous_leaders_sequence() -> None:
    planner = Planner([every_second()], BeatState(seq=41), at("2026-01-01 00:00:00"), "a")
    assert planner.snapshot(at("2026-01-01 00:00:00")).seq == 42
    assert planner.snapshot(at("2026-01-01 00:00:00")).seq == 43


def test_next_wake_is_the_earliest_next_tick() -> None:
    entries = [every_second(), PeriodicEntry("m", Signature("t"), Every(60))]
    planner = Planner(entries, None, at("2026-01-01 00:00:00.2"), "a")
    assert planner.next_wake() == at("2026-01-01 00:00:01")


def test_ticks_of_several_entries_come_oldest_first() -> None:
    entries = [
        PeriodicEntry("b", Signature("t"), Every(2)),
        PeriodicEntry("a", Signature("t"), Every(3)),
    ]
    planner = Planner(entries, None, at("2026-01-01 00:00:00"), "x")
    ticks = planner.due(at("2026-01-01 00:00:06"))
    assert [(t.scheduled.second, t.entry.name) for t in ticks] == [
        (2, "b"), (3, "a"), (4, "b"), (6, "a"), (6, "b"),
    ]  # fmt: skip


def test_state_round_trips_through_its_wire_form() -> None:
    state = BeatState(
        seq=7,
        leader="host:1",
        leader_since=at("2026-01-01 00:00:00"),
        written_at=at("2026-01-01 00:00:09"),
        entries={
            "tick": EntryRecord(at("2026-01-01 00:00:09"), "every 1s", at("2026-01-01 00:00:10"))
        },
    )
    assert decode_state(encode_state(state)) == state


def test_unreadable_state_is_a_decode_error() -> None:
    with pytest.raises(MessageDecodeError, match="beat state"):
        decode_state(b'{"version": 1, "seq": "x"}')


def test_readers_keep_the_newest_of_several_state_copies() -> None:
    copies = [BeatState(seq=5), BeatState(seq=9), BeatState(seq=7)]
    assert newest(copies) is copies[1]
