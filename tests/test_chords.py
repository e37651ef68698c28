"""One chord's tally in the coordinator: dedupe by index, completion, folding, what a failed
attempt to settle means; and the ledger of finished chords."""

from __future__ import annotations

import pytest

from rabbitq.chords import (
    RETRY_MAX,
    ChordLedger,
    ChordPart,
    ChordTally,
    FinishedChords,
    decode_part,
    decode_record,
    ledger_envelope,
    part_envelope,
    retry_delay,
    returned,
)
from rabbitq.errors import MessageDecodeError, PublishTimeoutError, UnroutableError
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


def test_a_ledger_survives_its_wire_form_and_is_told_from_a_part() -> None:
    serializer = serializer_named("msgpack")
    ledger = ChordLedger(["c1", "c2"])
    assert decode_record(ledger_envelope(ledger, serializer)) == ledger
    original = ChordPart("c9", 1, BODY, [(0, 1)])
    assert decode_record(part_envelope(original, serializer)) == original


def test_a_ledger_that_does_not_list_ids_is_undecodable() -> None:
    serializer = serializer_named("json")
    envelope = Envelope(
        body=serializer.dumps({"done": [1]}), headers={}, content_type="application/json"
    )
    with pytest.raises(MessageDecodeError, match="ledger"):
        decode_record(envelope)


def test_only_a_delivery_count_of_one_or_more_says_a_delivery_came_back() -> None:
    assert returned({"x-delivery-count": 1})
    assert not returned({"x-delivery-count": 0})
    assert not returned({})  # classic queues set no count (and have no delivery limit)
    assert not returned(None)


def test_the_wait_before_another_attempt_doubles_up_to_a_cap() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert retry_delay(50) == RETRY_MAX


def test_a_transient_failure_schedules_another_attempt_and_keeps_the_chord() -> None:
    tally = ChordTally(part(0, size=1))
    tally.settling_failed(PublishTimeoutError("no confirm"), permanent=False, now=100.0)
    assert tally.unpublishable is None and tally.attempts == 1
    assert tally.waiting_to_retry and not tally.due(100.4) and tally.due(100.5)


def test_a_permanent_failure_sends_the_chord_to_the_dead_letters() -> None:
    tally = ChordTally(part(0, size=1))
    error = UnroutableError("nowhere", "rabbitq")
    tally.settling_failed(error, permanent=True, now=0.0)
    assert tally.unpublishable is error


def test_once_the_outcome_is_out_no_failure_dead_letters_the_chord() -> None:
    """Only the completion record is missing: a dead letter, replayed, would run the body twice."""
    tally = ChordTally(part(0, size=1))
    tally.outcome_sent = True
    tally.settling_failed(UnroutableError("rabbitq.chords", ""), permanent=True, now=0.0)
    assert tally.unpublishable is None and tally.waiting_to_retry


def test_the_dead_part_carries_every_result_and_the_error_as_new_results() -> None:
    tally = ChordTally(part(0))
    tally.offer(part(2), "d2")
    tally.offer(ChordPart("c1", 3, BODY, [], {"index": 1}), "e1")
    dead = tally.dead_part()
    assert dead.results == [(2, 2)] and dead.error == {"index": 1} and dead.fold is None


def test_a_part_that_came_back_wears_the_tally_until_it_is_folded() -> None:
    tally = ChordTally(part(0))
    tally.offer(part(0), "d0", returned=True)
    assert tally.worn
    tally.fold()
    tally.folded()
    assert not tally.worn


def test_a_ledger_record_remembers_its_chords_and_is_held() -> None:
    finished = FinishedChords()
    finished.hold(ChordLedger(["a", "b"]), "r1")
    assert "a" in finished and "b" in finished and finished.held == ["r1"]


def test_finished_chords_are_remembered_up_to_a_limit_oldest_forgotten_first() -> None:
    finished = FinishedChords(limit=2)
    for chord_id in ("a", "b", "c"):
        finished.add(chord_id)
    assert "a" not in finished and finished.compacted() == ChordLedger(["b", "c"])


def test_the_ledger_is_compacted_when_a_record_came_back_or_was_held_long() -> None:
    finished = FinishedChords()
    finished.hold(ChordLedger(["a"]), "r1")
    assert not finished.needs_compacting(now=finished.held_since or 0.0, fold_after=600)
    assert finished.needs_compacting(now=(finished.held_since or 0.0) + 600, fold_after=600)
    finished.replaced()
    finished.hold(ChordLedger(["b"]), "r2", returned=True)
    assert finished.needs_compacting(now=finished.held_since or 0.0, fold_after=600)


def test_the_ledger_is_compacted_when_many_records_are_held() -> None:
    finished = FinishedChords()
    for n in range(100):
        finished.hold(ChordLedger([f"c{n}"]), f"r{n}")
    assert finished.needs_compacting(now=finished.held_since or 0.0, fold_after=600)
    assert finished.replaced() == [f"r{n}" for n in range(100)] and finished.held == []
