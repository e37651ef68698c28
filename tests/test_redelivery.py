from __future__ import annotations

from rabbitq.redelivery import REDELIVERY_COUNT_HEADER, judge_redelivery


def test_first_delivery_runs() -> None:
    assert judge_redelivery(False, {}, limit=3).action == "run"


def test_classic_redelivery_is_counted_in_a_header_on_a_fresh_copy() -> None:
    verdict = judge_redelivery(True, {REDELIVERY_COUNT_HEADER: 1}, limit=3)
    assert (verdict.action, verdict.redeliveries) == ("recount", 2)


def test_classic_redelivery_past_the_limit_is_dead_lettered() -> None:
    verdict = judge_redelivery(True, {REDELIVERY_COUNT_HEADER: 3}, limit=3)
    assert verdict.action == "dead-letter"


def test_counted_copy_that_was_not_redelivered_runs() -> None:
    assert judge_redelivery(False, {REDELIVERY_COUNT_HEADER: 2}, limit=3).action == "run"


def test_quorum_delivery_count_is_trusted() -> None:
    assert judge_redelivery(True, {"x-delivery-count": 3}, limit=3).action == "run"
    assert judge_redelivery(True, {"x-delivery-count": 4}, limit=3).action == "dead-letter"
