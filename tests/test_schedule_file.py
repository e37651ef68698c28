"""Schedule files are validated strictly; every error names the file and the line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from rabbitq.beat.schedule_file import load_schedule, parse_schedule
from rabbitq.beat.schedules import Crontab, Every
from rabbitq.errors import ScheduleConfigError

FULL = """\
timezone: Europe/Paris
catch_up: skip
grace: 2m
entries:
  nightly-report:
    task: shop.reports.build
    cron: "0 3 * * *"
    args: [eu, 2]
    kwargs: {full: true}
    catch_up: all
    options: {queue: reports, priority: 5, expires: 3600}
  heartbeat:
    task: shop.health.ping
    every: 30s
  london:
    task: shop.reports.build
    cron: "@daily"
    timezone: Europe/London
"""


def error_of(text: str) -> ScheduleConfigError:
    with pytest.raises(ScheduleConfigError) as caught:
        parse_schedule(text, "schedule.yaml")
    return caught.value


def test_full_file_becomes_entries() -> None:
    report, heartbeat, london = parse_schedule(FULL, "schedule.yaml")
    assert report.name == "nightly-report" and report.line == 5
    assert report.signature.task == "shop.reports.build"
    assert report.signature.args == ("eu", 2) and report.signature.kwargs == {"full": True}
    assert report.signature.options == {"queue": "reports", "priority": 5, "expires": 3600}
    assert report.catch_up == "all"
    assert isinstance(report.schedule, Crontab) and str(report.schedule.timezone) == "Europe/Paris"
    assert isinstance(heartbeat.schedule, Every)
    assert heartbeat.schedule.interval == dt.timedelta(seconds=30)
    assert heartbeat.catch_up == "skip" and heartbeat.grace == dt.timedelta(minutes=2)
    assert isinstance(london.schedule, Crontab)
    assert str(london.schedule.timezone) == "Europe/London"


def test_every_accepts_a_plain_number_of_seconds() -> None:
    (entry,) = parse_schedule("entries:\n  e:\n    task: t\n    every: 2.5\n")
    assert isinstance(entry.schedule, Every)
    assert entry.schedule.interval == dt.timedelta(seconds=2.5)


def test_empty_file_has_no_entries() -> None:
    assert parse_schedule("") == []


def test_bad_cron_names_the_entry_and_the_line() -> None:
    error = error_of("entries:\n  ok:\n    task: t\n    every: 1\n  bad:\n    task: t\n"
                     "    cron: '61 * * * *'\n")  # fmt: skip
    assert error.line == 7
    assert str(error).startswith("schedule.yaml:7: entry 'bad': invalid cron expression")


def test_unknown_time_zone_names_the_line() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    cron: '@daily'\n    timezone: Paris/Texas\n")
    assert error.line == 5 and "unknown time zone 'Paris/Texas'" in str(error)


def test_entry_without_a_task_is_rejected() -> None:
    error = error_of("entries:\n  e:\n    every: 1\n")
    assert error.line == 2 and "has no 'task'" in str(error)


def test_entry_with_both_every_and_cron_is_rejected() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: 1\n    cron: '* * * * *'\n")
    assert error.line == 2 and "exactly one of 'every' or 'cron'" in str(error)


def test_time_zone_on_an_interval_entry_is_rejected() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: 1\n    timezone: UTC\n")
    assert error.line == 5 and "cron only" in str(error)


def test_unknown_key_is_rejected_with_the_choices() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: 1\n    cronn: x\n")
    assert error.line == 5 and "unknown key 'cronn'" in str(error)


def test_countdown_is_not_an_entry_option() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: 1\n    options: {countdown: 5}\n")
    assert error.line == 5 and "unknown key 'countdown'" in str(error)


def test_bad_catch_up_policy_lists_the_choices() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: 1\n    catch_up: sometimes\n")
    assert error.line == 5 and "once, all, skip" in str(error)


def test_bad_duration_names_the_line() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: soon\n")
    assert error.line == 4 and "invalid duration 'soon'" in str(error)


def test_args_must_be_a_list() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: 1\n    args: {a: 1}\n")
    assert error.line == 5 and "args must be a list" in str(error)


def test_duplicate_entry_names_the_first_line() -> None:
    error = error_of("entries:\n  e:\n    task: t\n    every: 1\n  e:\n    task: t\n    every: 2\n")
    assert error.line == 5 and "first on line 2" in str(error)


def test_yaml_syntax_error_names_the_line() -> None:
    error = error_of("entries:\n  e: {task: t,\n\n")
    assert error.line is not None and "invalid YAML" in str(error)


def test_file_without_entries_is_rejected() -> None:
    error = error_of("timezone: UTC\n")
    assert error.line == 1 and "no 'entries'" in str(error)


def test_missing_file_is_a_schedule_error(tmp_path: Path) -> None:
    with pytest.raises(ScheduleConfigError, match="cannot read"):
        load_schedule(tmp_path / "absent.yaml")
