"""One chord's tally in the coordinator: dedupe by index, completion, folding."""

from __future__ import annotations

import pytest

from rabbitq.chords import ChordPart, ChordTally, decode_part, part_envelope
from rabbitq.errors import MessageDecodeError
from rabbitq.message import Envelope
from rabbitq.serializers import serializer_named

BODY = {"task": "t.body", "args": [], "kwargs": {}, "options": {}}


def part(index: int, value: object = None, size: int = 3) -> ChordPart:
    return ChordPart("c1", size, BODY, [(index, value if value is not None else index)])


def test_parts_complete_the_chord_in_index_order_whatever_their_arrival() -> None:
    tally = ChordTally(part(2))
    for index in (2, 0, 1):
        assert tally.offer(part(index), f"d{index}")
    assert tally.complete and tally.ordered_results() == [0, 1, 2]
    assert tally.held == ["d2", "d0", "d1"]


def test_a_duplicate_part_adds_nothing_and_is_not_held() -> None:
    tally = ChordTally(part(0))
    assert tally.offer(part(0), "first")
    assert not tally.offer(part(0), "again")
    assert tally.held == ["first"] and not tally.complete


def test_an_error_part_is_held_and_recorded() -> None:
    failing = ChordPart("c1", 3, BODY, [], {"index": 1, "exc_type": "KeyError"})
    tally = ChordTally(failing)
    assert tally.offer(failing, "d")
    assert tally.error == {"index": 1, "exc_type": "KeyError"}


def test_folding_replaces_held_parts_with_one_expected_part() -> None:
    tally = ChordTally(part(0))
    tally.offer(part(0), "d0")
    tally.offer(part(1), "d1")
    folded = tally.fold()
    assert folded.results == [(0, 0), (1, 1)] and folded.fold is not None
    assert tally.folded() == ["d0", "d1"] and tally.held == []
    # The folded part adds no index, but it is the one we wait for: held.
    assert tally.offer(folded, "fold")
    assert tally.held == ["fold"]
    assert tally.offer(part(2), "d2") and tally.complete


def test_a_part_survives_its_wire_form() -> None:
    original = ChordPart("c9", 2, BODY, [(0, {"a": 1}), (1, [2])], None, None)
    envelope = part_envelope(original, serializer_named("json"))
    assert decode_part(envelope) == original


def test_an_out_of_range_index_is_undecodable() -> None:
    serializer = serializer_named("json")
    body = serializer.dumps({"chord": "c", "size": 2, "body": BODY, "results": [[5, 1]]})
    envelope = Envelope(body=body, headers={}, content_type=serializer.content_type)
    with pytest.raises(MessageDecodeError, match=r"outside 0\.\.1"):
        decode_part(envelope)
