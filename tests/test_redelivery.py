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


def test_a_quorum_queues_delivery_count_is_trusted_on_a_redelivery() -> None:
    assert judge_redelivery(True, {"x-delivery-count": 3}, limit=3, quorum=True).action == "run"
    verdict = judge_redelivery(True, {"x-delivery-count": 4}, limit=3, quorum=True)
    assert verdict.action == "dead-letter"


def test_a_delivery_count_on_a_classic_queue_came_from_a_publisher_and_is_ignored() -> None:
    verdict = judge_redelivery(True, {"x-delivery-count": 0}, limit=3)
    assert (verdict.action, verdict.redeliveries) == ("recount", 1)


def test_our_count_and_the_quorum_count_add_up() -> None:
    headers = {REDELIVERY_COUNT_HEADER: 2, "x-delivery-count": 2}
    assert judge_redelivery(True, headers, limit=3, quorum=True).action == "dead-letter"
