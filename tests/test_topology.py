"""The topology model: queue arguments (delivery limits) and dead-queue policies, pure."""

from __future__ import annotations

from rabbitq.topology import (
    DEFAULT_DELIVERY_LIMIT,
    UNREACHABLE_DELIVERY_LIMIT,
    DeadLetterBounds,
    QueueSpec,
    Topology,
    policy_contests,
)


def test_quorum_task_queue_has_the_default_delivery_limit_as_a_backstop() -> None:
    arguments = QueueSpec("emails", type="quorum").arguments()
    assert arguments["x-delivery-limit"] == DEFAULT_DELIVERY_LIMIT


def test_quorum_task_queue_takes_the_delivery_limit_the_routing_file_gives() -> None:
    assert QueueSpec("emails", type="quorum", delivery_limit=7).arguments()["x-delivery-limit"] == 7


def test_classic_queues_get_no_delivery_limit_argument() -> None:
    # RabbitMQ 3.10 refuses x-delivery-limit on a classic queue (406).
    assert "x-delivery-limit" not in QueueSpec("emails").arguments()
    assert QueueSpec("emails").dead_letter_spec().arguments() == {}


def test_quorum_dead_queue_gets_a_delivery_limit_no_browsing_can_reach() -> None:
    dead = QueueSpec("emails", type="quorum").dead_letter_spec()
    assert dead.arguments() == {
        "x-queue-type": "quorum",
        "x-delivery-limit": UNREACHABLE_DELIVERY_LIMIT,
    }


def test_the_unreachable_limit_is_a_positive_32_bit_integer() -> None:
    # -1 means "no limit" on RabbitMQ 4.x but drops at the first return on 3.10.
    assert 0 < UNREACHABLE_DELIVERY_LIMIT == 2**31 - 1


def test_quorum_queues_declared_before_delivery_limits_are_adopted_as_they_are() -> None:
    spec = QueueSpec("emails", type="quorum", max_length=10)
    (earlier,) = spec.earlier_arguments()
    assert earlier == {k: v for k, v in spec.arguments().items() if k != "x-delivery-limit"}
    assert spec.dead_letter_spec().earlier_arguments() == ({"x-queue-type": "quorum"},)


def test_a_delivery_limit_from_the_routing_file_is_never_replaced_by_an_earlier_form() -> None:
    assert QueueSpec("emails", type="quorum", delivery_limit=7).earlier_arguments() == ()


def test_unbounded_dead_queue_has_no_policy() -> None:
    assert QueueSpec("emails").dead_letter_policy() is None


def test_dead_queue_bounds_become_a_policy_matching_only_that_dead_queue() -> None:
    spec = QueueSpec(
        "emails-eu.1", dead_letter_bounds=DeadLetterBounds(max_length=10, message_ttl_ms=60000)
    )
    policy = spec.dead_letter_policy(priority=7)
    assert policy is not None
    assert policy.name == "rabbitq.dead.emails-eu.1.dead"
    assert policy.body() == {
        "pattern": r"^emails\-eu\.1\.dead$",
        "definition": {"max-length": 10, "overflow": "drop-head", "message-ttl": 60000},
        "priority": 7,
        "apply-to": "queues",
    }


def test_ttl_only_bounds_set_no_length_or_overflow() -> None:
    policy = QueueSpec(
        "q", dead_letter_bounds=DeadLetterBounds(message_ttl_ms=5)
    ).dead_letter_policy()
    assert policy is not None and policy.definition == {"message-ttl": 5}


def test_topology_lists_its_policies_and_the_dead_queues_it_leaves_unbounded() -> None:
    topology = Topology(
        queues=(
            QueueSpec("a", dead_letter_bounds=DeadLetterBounds(max_length=1)),
            QueueSpec("b"),
        ),
        policy_priority=3,
    )
    assert [p.name for p in topology.dead_letter_policies()] == ["rabbitq.dead.a.dead"]
    assert topology.dead_letter_policies()[0].priority == 3
    assert topology.unbounded_dead_queues() == ("b.dead",)


def _operator(priority: int, pattern: str = ".*", apply_to: str = "all") -> dict[str, object]:
    return {
        "name": "ops",
        "pattern": pattern,
        "priority": priority,
        "apply-to": apply_to,
        "definition": {"ha-mode": "all"},
    }


def test_a_higher_priority_operator_policy_is_reported_as_outranking_the_bounds() -> None:
    policy = QueueSpec("emails", dead_letter_bounds=DeadLetterBounds(max_length=1))
    bound = policy.dead_letter_policy(priority=10)
    assert bound is not None
    (warning,) = policy_contests(bound, "classic", [_operator(11)])
    assert "outranks" in warning and "policy_priority above 11" in warning


def test_an_equal_priority_operator_policy_is_reported_as_a_tie() -> None:
    bound = QueueSpec("e", dead_letter_bounds=DeadLetterBounds(max_length=1)).dead_letter_policy(
        priority=10
    )
    assert bound is not None
    (warning,) = policy_contests(bound, "classic", [_operator(10)])
    assert "same priority" in warning


def test_a_lower_priority_operator_policy_is_reported_with_the_keys_it_stops_applying() -> None:
    bound = QueueSpec("e", dead_letter_bounds=DeadLetterBounds(max_length=1)).dead_letter_policy(
        priority=10
    )
    assert bound is not None
    (warning,) = policy_contests(bound, "classic", [_operator(0)])
    assert "stops applying" in warning and "ha-mode" in warning


def test_policies_that_do_not_match_the_dead_queue_are_not_reported() -> None:
    bound = QueueSpec("e", dead_letter_bounds=DeadLetterBounds(max_length=1)).dead_letter_policy(
        priority=10
    )
    assert bound is not None
    others = [
        _operator(50, pattern="^other$"),
        _operator(50, apply_to="exchanges"),
        _operator(50, apply_to="quorum_queues"),  # e.dead is classic
        _operator(50, pattern="(unbalanced"),
        {**bound.body(), "name": bound.name},  # rabbitq's own
    ]
    assert policy_contests(bound, "classic", others) == []
