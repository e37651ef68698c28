"""When `rabbitq dead list/show` may look at a dead queue (take and hand back its messages)."""

from __future__ import annotations

from rabbitq.amqp.dead_queue import browse_problem


def test_a_quorum_dead_queue_with_rabbitqs_limit_is_browsed_on_any_broker() -> None:
    assert browse_problem("q.dead", "quorum-unreachable-limit", "4.0.5") is None
    assert browse_problem("q.dead", "quorum-unreachable-limit", "3.10.8") is None


def test_a_classic_dead_queue_is_browsed_on_any_broker() -> None:
    assert browse_problem("q.dead", "classic", "4.0.5") is None


def test_a_quorum_dead_queue_without_a_limit_is_browsed_on_rabbitmq_3() -> None:
    # 3.x applies no delivery limit unless one is set.
    assert browse_problem("q.dead", "quorum-no-limit", "3.10.8") is None


def test_a_quorum_dead_queue_without_a_limit_is_not_browsed_on_rabbitmq_4() -> None:
    problem = browse_problem("q.dead", "quorum-no-limit", "4.0.5")
    assert problem is not None and "limit of 20" in problem and "replay --all" in problem


def test_a_quorum_dead_queue_without_a_limit_is_not_browsed_on_an_unknown_broker() -> None:
    assert browse_problem("q.dead", "quorum-no-limit", "") is not None


def test_a_dead_queue_with_arguments_rabbitq_did_not_give_is_never_browsed() -> None:
    problem = browse_problem("q.dead", "other", "3.10.8")
    assert problem is not None and "perhaps a low x-delivery-limit" in problem
