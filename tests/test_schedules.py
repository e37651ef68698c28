"""Schedules: when entries fire, in which time zone, and what a late beat catches up."""

from __future__ import annotations

import datetime as dt

import pytest

from rabbitq.beat.schedules import (
    CatchUp,
    Crontab,
    Every,
    PeriodicEntry,
    due_ticks,
    format_duration,
    parse_duration,
    schedule_of,
    tick_id,
)
from rabbitq.canvas import Signature
from rabbitq.errors import ScheduleConfigError

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    """A UTC instant from 'YYYY-MM-DD HH:MM:SS[.ffffff]'."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def entry(
    schedule: Every | Crontab, catch_up: CatchUp = "once", grace: float = 60
) -> PeriodicEntry:
    return PeriodicEntry(
        "e", Signature("t"), schedule, catch_up=catch_up, grace=dt.timedelta(seconds=grace)
    )


# -- Every -------------------------------------------------------------------------------------


def test_every_fires_on_a_grid_counted_from_the_epoch() -> None:
    hourly = Every(dt.timedelta(hours=1))
    assert hourly.next_after(at("2026-11-25 10:17:03")) == at("2026-11-25 11:00:00")


def test_every_next_is_strictly_after_a_scheduled_instant() -> None:
    assert Every(1).next_after(at("2026-01-01 00:00:05")) == at("2026-01-01 00:00:06")


def test_every_latest_at_or_before_includes_the_instant_itself() -> None:
    assert Every(10).latest_at_or_before(at("2026-01-01 00:00:10")) == at("2026-01-01 00:00:10")
    assert Every(10).latest_at_or_before(at("2026-01-01 00:00:19.9")) == at("2026-01-01 00:00:10")


def test_every_with_a_start_counts_from_it() -> None:
    schedule = Every(dt.timedelta(days=1), start=at("2026-01-01 06:30:00"))
    assert schedule.next_after(at("2026-03-01 07:00:00")) == at("2026-03-02 06:30:00")


def test_every_rejects_intervals_below_a_millisecond() -> None:
    with pytest.raises(ScheduleConfigError, match="at least 1 ms"):
        Every(0)


def test_every_rejects_a_naive_start() -> None:
    with pytest.raises(ScheduleConfigError, match="aware"):
        Every(1, start=dt.datetime(2026, 1, 1))


# -- Crontab -----------------------------------------------------------------------------------


def test_cron_is_read_in_its_time_zone() -> None:
    seven_in_paris = Crontab("0 7 * * *", "Europe/Paris")
    assert seven_in_paris.next_after(at("2026-11-25 00:00:00")) == at("2026-11-25 06:00:00")
    assert seven_in_paris.next_after(at("2026-07-01 00:00:00")) == at("2026-07-01 05:00:00")


def test_cron_weekday_names_work() -> None:
    mondays = Crontab("30 9 * * mon", "UTC")
    assert mondays.next_after(at("2026-11-25 12:00:00")) == at("2026-11-30 09:30:00")


def test_cron_with_six_fields_reads_seconds_first() -> None:
    every_two_seconds = Crontab("*/2 * * * * *")
    assert every_two_seconds.upcoming(at("2026-01-01 00:00:00"), 2) == [
        at("2026-01-01 00:00:02"),
        at("2026-01-01 00:00:04"),
    ]


def test_cron_aliases_are_accepted() -> None:
    assert Crontab("@daily").next_after(at("2026-01-01 12:00:00")) == at("2026-01-02 00:00:00")


def test_cron_next_after_ignores_sub_second_parts() -> None:
    assert Crontab("* * * * *").next_after(at("2026-01-01 00:00:59.5")) == at("2026-01-01 00:01:00")


def test_cron_wall_time_skipped_by_spring_forward_fires_after_the_gap() -> None:
    # 2026-03-29 in Paris: 02:00 jumps to 03:00, so 02:30 does not exist that night.
    nightly = Crontab("30 2 * * *", "Europe/Paris")
    assert nightly.next_after(at("2026-03-28 12:00:00")) == at("2026-03-29 01:00:00")  # 03:00 CEST


def test_cron_wall_time_repeated_by_fall_back_fires_once() -> None:
    # 2026-10-25 in Paris: 02:00-03:00 happens twice; a 02:30 job runs on the first pass only.
    nightly = Crontab("30 2 * * *", "Europe/Paris")
    assert nightly.upcoming(at("2026-10-24 12:00:00"), 2) == [
        at("2026-10-25 00:30:00"),  # 02:30 CEST
        at("2026-10-26 01:30:00"),  # 02:30 CET, next day
    ]


def test_cron_with_a_wildcard_hour_fires_each_real_hour_across_fall_back() -> None:
    hourly = Crontab("0 * * * *", "Europe/Paris")
    assert hourly.upcoming(at("2026-10-24 23:30:00"), 3) == [
        at("2026-10-25 00:00:00"),  # 02:00 CEST
        at("2026-10-25 01:00:00"),  # 02:00 CET
        at("2026-10-25 02:00:00"),  # 03:00 CET
    ]


def test_cron_latest_at_or_before_skips_a_repeated_wall_time() -> None:
    nightly = Crontab("30 2 * * *", "Europe/Paris")
    assert nightly.latest_at_or_before(at("2026-10-25 02:00:00")) == at("2026-10-25 00:30:00")


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "3 fields"),
        ("0 7 * * funday", "invalid cron expression"),
    ],
)
def test_invalid_cron_expressions_are_rejected(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleConfigError, match=problem):
        Crontab(expression)


def test_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(ScheduleConfigError, match="unknown time zone 'Mars/Olympus'"):
        Crontab("* * * * *", "Mars/Olympus")


# -- durations, ids, add_periodic's arguments ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("1.5", 1.5), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("1d", 86400),
     ("250ms", 0.25)],
)  # fmt: skip
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5 minutes", "m5", "1h-3m"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ScheduleConfigError, match="invalid duration"):
        parse_duration(text)


def test_durations_format_compactly() -> None:
    assert format_duration(dt.timedelta(seconds=5400)) == "1h30m"
    assert format_duration(dt.timedelta(milliseconds=250)) == "250ms"


def test_tick_id_is_entry_name_and_scheduled_utc_time() -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    scheduled = dt.datetime(2026, 11, 25, 8, 0, tzinfo=paris)
    assert tick_id("report", scheduled) == "report@2026-11-25T07:00:00Z"


def test_schedule_of_wants_exactly_one_kind() -> None:
    with pytest.raises(ScheduleConfigError, match="exactly one"):
        schedule_of(every=5, cron="* * * * *", timezone=None, schedule=None)
    with pytest.raises(ScheduleConfigError, match="exactly one"):
        schedule_of(every=None, cron=None, timezone=None, schedule=None)


def test_schedule_of_refuses_a_time_zone_without_cron() -> None:
    with pytest.raises(ScheduleConfigError, match="cron= entries only"):
        schedule_of(every=5, cron=None, timezone="Europe/Paris", schedule=None)


def test_periodic_entry_refuses_countdown() -> None:
    with pytest.raises(ScheduleConfigError, match="countdown"):
        PeriodicEntry("e", Signature("t", options={"countdown": 5}), Every(1))


# -- due ticks and catch-up ----------------------------------------------------------------------


def test_on_time_ticks_fire_one_by_one() -> None:
    due = due_ticks(entry(Every(1)), at("2026-01-01 00:00:00"), at("2026-01-01 00:00:01.002"))
    assert due.ticks == [at("2026-01-01 00:00:01")]
    assert due.handled_until == at("2026-01-01 00:00:01")


def test_nothing_is_due_before_the_next_tick() -> None:
    due = due_ticks(entry(Every(10)), at("2026-01-01 00:00:00"), at("2026-01-01 00:00:09.9"))
    assert due.ticks == [] and due.handled_until == at("2026-01-01 00:00:00")


def test_ticks_within_the_grace_all_fire_whatever_the_policy() -> None:
    # A failover of 4 s: every second in between fires, even with catch_up="skip".
    due = due_ticks(
        entry(Every(1), catch_up="skip"), at("2026-01-01 00:00:00"), at("2026-01-01 00:00:04.5")
    )
    assert [t.second for t in due.ticks] == [1, 2, 3, 4]


def test_catch_up_once_fires_only_the_newest_missed_tick() -> None:
    # Beat down for three days; the daily 03:00 report runs once, for the latest day.
    daily = entry(Crontab("0 3 * * *"), catch_up="once")
    due = due_ticks(daily, at("2026-01-01 03:00:00"), at("2026-01-04 12:00:00"))
    assert due.ticks == [at("2026-01-04 03:00:00")]
    assert due.handled_until == at("2026-01-04 03:00:00")


def test_catch_up_all_fires_every_missed_tick_oldest_first() -> None:
    daily = entry(Crontab("0 3 * * *"), catch_up="all")
    due = due_ticks(daily, at("2026-01-01 03:00:00"), at("2026-01-04 12:00:00"))
    assert due.ticks == [at("2026-01-02 03:00:00"), at("2026-01-03 03:00:00"),
                         at("2026-01-04 03:00:00")]  # fmt: skip


def test_catch_up_skip_fires_no_missed_tick_but_records_them_dealt_with() -> None:
    daily = entry(Crontab("0 3 * * *"), catch_up="skip")
    due = due_ticks(daily, at("2026-01-01 03:00:00"), at("2026-01-04 12:00:00"))
    assert due.ticks == []
    assert due.handled_until == at("2026-01-04 03:00:00")


def test_catch_up_once_fires_one_tick_for_the_whole_missed_period() -> None:
    every_ten = entry(Every(10), catch_up="once", grace=30)
    due = due_ticks(every_ten, at("2026-01-01 00:00:00"), at("2026-01-01 00:02:00"))
    # 00:10 is more than 30 s late: an outage. The ticks within the grace (01:40, 01:50) are
    # part of it too; the one tick sent is the newest, and the grid resumes after it.
    assert due.ticks == [at("2026-01-01 00:02:00")]
    assert due.handled_until == at("2026-01-01 00:02:00")


def test_an_oldest_tick_exactly_grace_late_is_a_failover_and_every_tick_fires() -> None:
    every_second = entry(Every(1), catch_up="once", grace=5)
    due = due_ticks(every_second, at("2026-01-01 00:00:00"), at("2026-01-01 00:00:06"))
    assert [t.second for t in due.ticks] == [1, 2, 3, 4, 5, 6]


def test_an_oldest_tick_a_moment_more_than_grace_late_is_an_outage() -> None:
    every_second = entry(Every(1), catch_up="once", grace=5)
    due = due_ticks(every_second, at("2026-01-01 00:00:00"), at("2026-01-01 00:00:06.000001"))
    assert due.ticks == [at("2026-01-01 00:00:06")]


def test_catch_up_skip_drops_only_the_ticks_more_than_grace_late() -> None:
    every_second = entry(Every(1), catch_up="skip", grace=5)
    due = due_ticks(every_second, at("2026-01-01 00:00:00"), at("2026-01-01 00:00:09"))
    # 00:04 is exactly 5 s late, so within the grace: it and everything after it fire.
    assert [t.second for t in due.ticks] == [4, 5, 6, 7, 8, 9]


def test_a_long_catch_up_is_sent_in_slices() -> None:
    second = entry(Every(1), catch_up="all")
    due = due_ticks(second, at("2026-01-01 00:00:00"), at("2026-01-02 00:00:00"))
    assert len(due.ticks) == 1000
    assert due.handled_until == at("2026-01-01 00:16:40")
