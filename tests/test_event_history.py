"""Which events ``rabbitq events`` shows, and how (``events/history.py``)."""

from __future__ import annotations

import datetime as dt

import pytest

from rabbitq.errors import ConfigurationError
from rabbitq.events.history import EventFilter, format_event, parse_since

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def test_since_takes_a_time_ago() -> None:
    assert parse_since("90s", NOW) == NOW - dt.timedelta(seconds=90)
    assert parse_since("1.5h", NOW) == NOW - dt.timedelta(minutes=90)
    assert parse_since("2d", NOW) == NOW - dt.timedelta(days=2)
    assert parse_since("1w", NOW) == NOW - dt.timedelta(days=7)


def test_since_takes_an_iso_time_and_reads_a_naive_one_as_utc() -> None:
    assert parse_since("2026-12-04T10:00:00+01:00", NOW) == dt.datetime(
        2026, 12, 4, 9, 0, tzinfo=dt.UTC
    )
    assert parse_since("2026-12-04T10:00:00", NOW).tzinfo == dt.UTC


def test_since_refuses_anything_else_saying_what_it_takes() -> None:
    with pytest.raises(ConfigurationError, match=r"90s, 30m, 1h, 2d, 1w"):
        parse_since("yesterday", NOW)


@pytest.mark.parametrize("text", ["", "   "])
def test_since_refuses_an_empty_time_instead_of_reading_everything(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"90s, 30m"):
        parse_since(text, NOW)


def test_since_refuses_a_time_in_the_future_whose_read_would_never_end() -> None:
    with pytest.raises(ConfigurationError, match="in the future"):
        parse_since("2027-01-01T00:00:00", NOW)


def test_since_refuses_a_time_ago_before_any_date() -> None:
    with pytest.raises(ConfigurationError, match="further back than any date"):
        parse_since("999999999999w", NOW)


def test_an_id_keeps_that_task_only() -> None:
    wanted = EventFilter(task_id="a")
    assert wanted.keep({"type": "task-started", "uuid": "a"})
    assert not wanted.keep({"type": "task-started", "uuid": "b"})
    assert not wanted.keep({"type": "worker-online", "hostname": "n@h"})


def test_a_task_name_keeps_the_later_events_of_ids_seen_under_it() -> None:
    wanted = EventFilter(task="shop.*")
    assert wanted.keep({"type": "task-received", "uuid": "a", "name": "shop.email"})
    assert not wanted.keep({"type": "task-received", "uuid": "b", "name": "other"})
    assert wanted.keep({"type": "task-succeeded", "uuid": "a"})
    assert not wanted.keep({"type": "task-succeeded", "uuid": "b"})
    assert not wanted.keep({"type": "task-succeeded", "uuid": "never-named"})


def test_since_drops_what_came_before() -> None:
    wanted = EventFilter(since=NOW)
    assert not wanted.keep({"type": "task-started", "timestamp": NOW.timestamp() - 1})
    assert wanted.keep({"type": "task-started", "timestamp": NOW.timestamp() + 1})


def test_heartbeats_are_left_out_unless_asked_for() -> None:
    beat = {"type": "worker-heartbeat", "hostname": "n@h"}
    assert not EventFilter().keep(beat)
    assert EventFilter(heartbeats=True).keep(beat)


def test_a_line_says_when_what_which_task_where_and_the_telling_fields() -> None:
    wanted = EventFilter()
    received = {
        "type": "task-received", "uuid": "a", "name": "shop.email", "hostname": "rabbitq@h",
        "timestamp": NOW.timestamp(), "args": "(1,)", "kwargs": "{}", "retries": 0,
        "queue": "emails", "eta": None,
    }  # fmt: skip
    assert wanted.keep(received)
    assert format_event(received) == (
        "2026-12-04 12:00:00.000Z task-received  shop.email[a] rabbitq@h queue=emails "
        "args=(1,) kwargs={} retries=0 eta=-"
    )
    succeeded = {"type": "task-succeeded", "uuid": "a", "hostname": "rabbitq@h",
                 "timestamp": NOW.timestamp() + 0.25, "runtime": 0.01, "result": "3"}  # fmt: skip
    assert wanted.keep(succeeded)
    assert format_event(succeeded, wanted.name_of(succeeded)) == (
        "2026-12-04 12:00:00.250Z task-succeeded shop.email[a] rabbitq@h runtime=0.0100 result=3"
    )


def test_a_worker_event_line_names_the_node() -> None:
    online = {"type": "worker-online", "hostname": "rabbitq-1@h", "timestamp": NOW.timestamp(),
              "pid": 7, "sw_ident": "py-rabbitq", "sw_ver": "0.1.0"}  # fmt: skip
    assert format_event(online) == (
        "2026-12-04 12:00:00.000Z worker-online  rabbitq-1@h pid=7 sw_ident=py-rabbitq sw_ver=0.1.0"
    )
