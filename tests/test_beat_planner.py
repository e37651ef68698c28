"""The leader's planner and the state it leaves in the broker, driven by a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest

from rabbitq.beat.planner import Planner, Tick
from rabbitq.beat.schedules import CatchUp, Crontab, Every, PeriodicEntry, Schedule
from rabbitq.beat.state import BeatState, EntryRecord, decode_state, encode_state, newest
from rabbitq.canvas import Signature
from rabbitq.errors import MessageDecodeError

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def every_second(catch_up: CatchUp = "once", grace: float = 60) -> PeriodicEntry:
    return periodic(Every(1), catch_up, grace)


def periodic(schedule: Schedule, catch_up: CatchUp = "once", grace: float = 60) -> PeriodicEntry:
    return PeriodicEntry(
        "tick", Signature("t"), schedule, catch_up=catch_up, grace=dt.timedelta(seconds=grace)
    )


def restarted(entry: PeriodicEntry, last: dt.datetime, now: dt.datetime) -> Planner:
    """A leader starting at ``now`` from a state whose last tick of ``entry`` was ``last``."""
    record = EntryRecord(last, entry.schedule.describe())
    return Planner([entry], BeatState(seq=1, entries={entry.name: record}), now, "b")


def scheduled(ticks: list[Tick]) -> list[dt.datetime]:
    return [tick.scheduled for tick in ticks]


def seconds_from(first: str, last: str) -> list[dt.datetime]:
    start, end = at(first), at(last)
    return [start + dt.timedelta(seconds=n) for n in range(int((end - start).total_seconds()) + 1)]


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


# -- after an outage, after a failover ---------------------------------------------------------


def test_a_beat_restarted_after_an_outage_longer_than_grace_sends_one_catch_up_tick() -> None:
    # Every beat down from 00:00:05 to 00:01:15.3: 70 s, more than the 60 s grace.
    planner = restarted(every_second(), at("2026-01-01 00:00:05"), at("2026-01-01 00:01:15.3"))
    assert [t.id for t in planner.due(at("2026-01-01 00:01:15.3"))] == ["tick@2026-01-01T00:01:15Z"]


def test_after_the_catch_up_tick_the_grid_resumes() -> None:
    planner = restarted(every_second(), at("2026-01-01 00:00:05"), at("2026-01-01 00:01:15.3"))
    sent = run_leader(planner, at("2026-01-01 00:01:15.3"), at("2026-01-01 00:01:19"))
    assert scheduled(sent) == seconds_from("2026-01-01 00:01:15", "2026-01-01 00:01:19")


def test_a_successor_does_not_send_the_catch_up_tick_again() -> None:
    first = restarted(every_second(), at("2026-01-01 00:00:05"), at("2026-01-01 00:01:15.3"))
    first.due(at("2026-01-01 00:01:15.3"))
    first.commit()
    state = decode_state(encode_state(first.snapshot(at("2026-01-01 00:01:15.3"))))
    second = Planner([every_second()], state, at("2026-01-01 00:01:15.8"), "c")
    assert second.due(at("2026-01-01 00:01:15.8")) == []
    assert scheduled(second.due(at("2026-01-01 00:01:16"))) == [at("2026-01-01 00:01:16")]


@pytest.mark.parametrize("catch_up", ["once", "all", "skip"])
def test_a_standby_taking_over_within_grace_sends_every_missed_tick(catch_up: CatchUp) -> None:
    # The oldest missed tick, 00:00:06, is 58.5 s late: a standby took over, nothing is skipped.
    entry = every_second(catch_up)
    planner = restarted(entry, at("2026-01-01 00:00:05"), at("2026-01-01 00:01:04.5"))
    sent = run_leader(planner, at("2026-01-01 00:01:04.5"), at("2026-01-01 00:01:07"))
    assert scheduled(sent) == seconds_from("2026-01-01 00:00:06", "2026-01-01 00:01:07")


@pytest.mark.parametrize("catch_up", ["once", "all", "skip"])
def test_an_oldest_missed_tick_exactly_grace_late_still_counts_as_a_failover(
    catch_up: CatchUp,
) -> None:
    planner = restarted(
        every_second(catch_up), at("2026-01-01 00:00:05"), at("2026-01-01 00:01:06")
    )
    sent = planner.due(at("2026-01-01 00:01:06"))
    assert scheduled(sent) == seconds_from("2026-01-01 00:00:06", "2026-01-01 00:01:06")


def test_an_oldest_missed_tick_just_over_grace_late_counts_as_an_outage() -> None:
    planner = restarted(every_second(), at("2026-01-01 00:00:05"), at("2026-01-01 00:01:06.001"))
    assert scheduled(planner.due(at("2026-01-01 00:01:06.001"))) == [at("2026-01-01 00:01:06")]


def test_a_longer_interval_catches_up_with_its_newest_tick_then_keeps_its_grid() -> None:
    five_minutes = periodic(Every(300))
    planner = restarted(five_minutes, at("2026-01-01 00:00:00"), at("2026-01-01 01:02:00"))
    sent = run_leader_hourly(planner, at("2026-01-01 01:02:00"), at("2026-01-01 01:12:00"))
    assert scheduled(sent) == [at("2026-01-01 01:00"), at("2026-01-01 01:05"),
                               at("2026-01-01 01:10")]  # fmt: skip


def test_a_cron_entry_restarted_after_an_outage_sends_one_catch_up_tick_then_its_times() -> None:
    # Beats down for three and a half days: one 03:00 report (today's), then one a day.
    daily = periodic(Crontab("0 3 * * *"))
    planner = restarted(daily, at("2026-01-01 03:00:00"), at("2026-01-04 12:00:00"))
    sent = run_leader_hourly(planner, at("2026-01-04 12:00:00"), at("2026-01-06 04:00:00"))
    assert scheduled(sent) == [at("2026-01-04 03:00"), at("2026-01-05 03:00"),
                               at("2026-01-06 03:00")]  # fmt: skip


def test_a_seconds_cron_entry_restarted_after_an_outage_sends_one_catch_up_tick() -> None:
    every_ten = periodic(Crontab("*/10 * * * * *"), grace=30)
    planner = restarted(every_ten, at("2026-01-01 00:00:00"), at("2026-01-01 00:02:05"))
    sent = run_leader(planner, at("2026-01-01 00:02:05"), at("2026-01-01 00:02:21"))
    assert scheduled(sent) == [at("2026-01-01 00:02:00"), at("2026-01-01 00:02:10"),
                               at("2026-01-01 00:02:20")]  # fmt: skip


def test_a_cron_entry_taken_over_within_grace_sends_every_missed_tick() -> None:
    every_minute = periodic(Crontab("* * * * *"), grace=120)
    planner = restarted(every_minute, at("2026-01-01 00:00:00"), at("2026-01-01 00:02:30"))
    sent = planner.due(at("2026-01-01 00:02:30"))
    assert scheduled(sent) == [at("2026-01-01 00:01"), at("2026-01-01 00:02")]


def test_catch_up_all_after_an_outage_sends_every_missed_tick_oldest_first() -> None:
    entry = every_second("all")
    planner = restarted(entry, at("2026-01-01 00:00:05"), at("2026-01-01 00:01:15.3"))
    sent = run_leader(planner, at("2026-01-01 00:01:15.3"), at("2026-01-01 00:01:17"))
    assert scheduled(sent) == seconds_from("2026-01-01 00:00:06", "2026-01-01 00:01:17")


def test_catch_up_skip_after_an_outage_drops_the_ticks_more_than_grace_late() -> None:
    entry = every_second("skip")
    planner = restarted(entry, at("2026-01-01 00:00:05"), at("2026-01-01 00:01:15.3"))
    sent = run_leader(planner, at("2026-01-01 00:01:15.3"), at("2026-01-01 00:01:17"))
    # 00:00:06..00:00:15.3 are more than 60 s late: dropped. The ticks within the grace fire.
    assert scheduled(sent) == seconds_from("2026-01-01 00:00:16", "2026-01-01 00:01:17")


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
