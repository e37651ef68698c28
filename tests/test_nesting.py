"""How deep a body nests, read from its bytes before decoding (``rabbitq/nesting.py``)."""

from __future__ import annotations

import json
from typing import Any

import msgpack

from rabbitq.nesting import MAX_NESTING, json_depth, msgpack_depth


def nested(depth: int) -> Any:
    """``depth`` lists, one inside the next, each with a non-ASCII string beside it (UTF-8
    bytes 0x80-0xBF look like msgpack container headers to the first, rough bound)."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value, "ééé"]
    return value


def test_msgpack_depth_is_exact_past_the_limit_and_stops_there() -> None:
    assert msgpack_depth(msgpack.packb(nested(MAX_NESTING + 1))) == MAX_NESTING + 1
    assert msgpack_depth(msgpack.packb(nested(400))) == MAX_NESTING + 1
    assert msgpack_depth(b"\x91" * 100_000 + b"\xc0") == MAX_NESTING + 1  # msgpack packs <512


def test_msgpack_nesting_up_to_the_limit_is_not_refused() -> None:
    assert msgpack_depth(msgpack.packb(nested(MAX_NESTING))) <= MAX_NESTING


def test_msgpack_maps_and_long_containers_count_as_one_level_each() -> None:
    value: Any = {}
    for _ in range(MAX_NESTING + 5):
        value = {"k": value, "n": list(range(20)), "s": "é" * 40, "b": b"\x90" * 300}
    assert msgpack_depth(msgpack.packb(value)) == MAX_NESTING + 1


def test_a_wide_shallow_msgpack_body_is_shallow() -> None:
    wide = [[["é" * 50, b"\xdc" * 10, 1.5, -3, 2**40] for _ in range(500)], {"a": {"b": []}}]
    assert msgpack_depth(msgpack.packb(wide)) == 4  # list, map, map, empty list


def test_malformed_msgpack_ends_the_scan_without_an_error() -> None:
    assert msgpack_depth(b"\x91" * 50 + b"\xc1" + b"\x91" * 200) == 50


def test_json_depth_is_exact_past_the_limit_and_stops_there() -> None:
    assert json_depth(json.dumps(nested(MAX_NESTING + 1)).encode()) == MAX_NESTING + 1
    assert json_depth(b"[" * 100_000) == MAX_NESTING + 1


def test_brackets_inside_json_strings_do_not_count() -> None:
    body = json.dumps([["[{" * 500, 'a "quoted" \\ [[[', {"x": "]]]" * 300}]]).encode()
    assert json_depth(body) == 3


def test_json_nesting_up_to_the_limit_is_not_refused() -> None:
    assert json_depth(json.dumps(nested(MAX_NESTING)).encode()) <= MAX_NESTING
