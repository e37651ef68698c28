"""Delay arithmetic: binary levels, routing keys, never early (no broker needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from rabbitq.delays import (
    LEVELS,
    MAX_DELAY_MS,
    decode_delay,
    delay_ms_until,
    delayed_route,
    delivery_pattern,
    level_name,
    level_pattern,
)
from rabbitq.errors import ConfigurationError


def test_routing_key_spells_the_delay_in_binary_then_the_destination() -> None:
    route = delayed_route(5, "route", "emails.welcome")
    words = route.routing_key.split(".")
    assert words[:LEVELS] == ["0"] * (LEVELS - 3) + ["1", "0", "1"]
    assert words[LEVELS:] == ["route", "emails", "welcome"]


def test_message_enters_at_the_level_of_its_highest_bit() -> None:
    assert delayed_route(5, "route", "x").exchange == level_name(2)
    assert delayed_route(1, "queue", "x").exchange == level_name(0)
    assert delayed_route(2**20, "queue", "x").exchange == level_name(20)


def test_delays_up_to_a_year_and_more_are_accepted() -> None:
    year_ms = 366 * 86_400_000
    assert decode_delay(delayed_route(year_ms, "route", "r").routing_key) == (year_ms, "route", "r")


def test_ordinary_routing_key_is_not_a_delay_key() -> None:
    assert decode_delay("emails.welcome") is None
    assert decode_delay(".".join(["2"] * LEVELS + ["route", "x"])) is None


def test_delay_beyond_the_last_level_is_refused_clearly() -> None:
    with pytest.raises(ConfigurationError, match="longer than the longest"):
        delayed_route(MAX_DELAY_MS + 1, "route", "r")


def test_over_long_destination_is_refused_at_publish_time() -> None:
    with pytest.raises(ConfigurationError, match="too long to delay"):
        delayed_route(1000, "route", "x" * 200)


def test_key_is_built_from_the_destination_so_it_never_grows() -> None:
    first = delayed_route(1000, "queue", "emails").routing_key
    decoded = decode_delay(first)
    assert decoded is not None
    again = delayed_route(1000, "queue", decoded[2]).routing_key
    assert first == again and len(first) < 255


def test_level_patterns_look_at_their_own_bit_only() -> None:
    assert level_pattern(0, "1") == ".".join(["*"] * (LEVELS - 1) + ["1", "#"])
    assert level_pattern(LEVELS - 1, "0") == "0.#"


def test_delivery_pattern_skips_all_bits() -> None:
    assert delivery_pattern("route", "emails.#").split(".")[:LEVELS] == ["*"] * LEVELS


def test_delay_is_rounded_up_so_nothing_runs_early() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert delay_ms_until(now + dt.timedelta(microseconds=1), now) == 1
    assert delay_ms_until(now + dt.timedelta(milliseconds=1500), now) == 1500
    assert delay_ms_until(now - dt.timedelta(seconds=1), now) == 0
