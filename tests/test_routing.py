"""Routing files are validated strictly and every error names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from rabbitq.errors import RoutingConfigError
from rabbitq.routing import (
    load_routing,
    parse_routing,
    route_for_task,
    validate_routing_key,
    validate_topic_pattern,
)


def error_of(text: str) -> RoutingConfigError:
    with pytest.raises(RoutingConfigError) as caught:
        parse_routing(text, "routing.yaml")
    return caught.value


def test_full_file_becomes_a_topology() -> None:
    topology = parse_routing(
        "default_queue_type: quorum\n"
        "queues:\n"
        "  emails:\n"
        "    type: quorum\n"
        "    bindings: ['emails.#', 'notify.*.email']\n"
        "    max_length: 100\n"
        "    max_length_bytes: 1000\n"
        "    overflow: reject-publish\n"
        "    message_ttl: 60000\n"
        "  reports: {}\n"
        "tasks:\n"
        "  shop.send: emails.transactional\n"
    )
    emails = topology.queue("emails")
    assert emails.type == "quorum" and emails.bindings == ("emails.#", "notify.*.email")
    assert emails.arguments()["x-max-length"] == 100
    assert emails.arguments()["x-message-ttl"] == 60000
    assert topology.queue("reports").effective_bindings() == ("reports", "reports.#")
    assert topology.queue("unlisted").type == "quorum"
    assert route_for_task(topology, "shop.send") == "emails.transactional"


def test_empty_file_is_an_empty_topology() -> None:
    assert parse_routing("# nothing yet\n").queues == ()


def test_unknown_top_level_key_names_the_line() -> None:
    error = error_of("queues: {}\nroutes: {}\n")
    assert error.line == 2 and "unknown key 'routes'" in str(error)


def test_unknown_queue_key_names_the_line_and_the_allowed_keys() -> None:
    error = error_of("queues:\n  emails:\n    max_lenght: 10\n")
    assert str(error).startswith("routing.yaml:3: unknown key 'max_lenght'")
    assert "max_length" in str(error)


def test_wrong_type_says_what_was_expected() -> None:
    error = error_of("queues:\n  emails:\n    max_length: lots\n")
    assert error.line == 3 and "must be a positive integer, got 'lots'" in str(error)


def test_boolean_is_not_an_integer() -> None:
    assert "positive integer" in str(error_of("queues:\n  q:\n    max_length: true\n"))


def test_unknown_queue_type_lists_the_choices() -> None:
    error = error_of("queues:\n  q:\n    type: lazy\n")
    assert error.line == 3 and "classic, quorum" in str(error)


def test_duplicate_queue_names_are_rejected_with_the_line() -> None:
    error = error_of("queues:\n  q: {}\n  q: {}\n")
    assert error.line == 3 and "first on line 2" in str(error)


def test_bad_binding_pattern_names_the_line() -> None:
    error = error_of("queues:\n  q:\n    bindings:\n      - ok.#\n      - bad#\n")
    assert error.line == 5 and "whole words" in str(error)


def test_quorum_queue_rejects_max_priority() -> None:
    error = error_of("queues:\n  q:\n    type: quorum\n    max_priority: 5\n")
    assert error.line == 4 and "quorum" in str(error)


def test_dead_suffix_is_reserved() -> None:
    assert "reserves" in str(error_of("queues:\n  emails.dead: {}\n"))


def test_task_route_must_not_contain_wildcards() -> None:
    error = error_of("tasks:\n  shop.send: 'emails.#'\n")
    assert error.line == 2 and "wildcard" in str(error)


def test_yaml_syntax_error_names_the_line() -> None:
    error = error_of("queues:\n  q: {\n\n")
    assert error.line is not None and "invalid YAML" in str(error)


def test_missing_file_is_a_routing_error(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError, match="cannot read"):
        load_routing(tmp_path / "absent.yaml")


def test_task_glob_routes_first_match_wins() -> None:
    topology = parse_routing("tasks:\n  'shop.reports.*': reports\n  'shop.*': default\n")
    assert route_for_task(topology, "shop.reports.monthly") == "reports"
    assert route_for_task(topology, "shop.send") == "default"
    assert route_for_task(topology, "other.task") is None


@pytest.mark.parametrize("pattern", ["emails", "emails.#", "*.emails.*", "#"])
def test_valid_topic_patterns(pattern: str) -> None:
    assert validate_topic_pattern(pattern) is None


@pytest.mark.parametrize("pattern", ["", "emails#", "em*ils", "a..b", ".a", "a b", "x" * 256])
def test_invalid_topic_patterns(pattern: str) -> None:
    assert validate_topic_pattern(pattern) is not None


@pytest.mark.parametrize("key", ["emails.#", "a.*", "", "a..b", "x" * 256])
def test_invalid_publish_routing_keys(key: str) -> None:
    assert validate_routing_key(key) is not None


def test_dead_letter_bounds_and_delivery_limit_are_read_from_the_queue() -> None:
    topology = parse_routing(
        "policy_priority: 5\n"
        "queues:\n"
        "  emails:\n"
        "    type: quorum\n"
        "    delivery_limit: 50\n"
        "    dead_letters:\n"
        "      max_length: 1000\n"
        "      message_ttl: 86400000\n"
    )
    emails = topology.queue("emails")
    assert emails.arguments()["x-delivery-limit"] == 50
    assert emails.dead_letter_bounds is not None
    assert emails.dead_letter_bounds.max_length == 1000
    assert emails.dead_letter_bounds.message_ttl_ms == 86400000
    assert topology.policy_priority == 5


def test_dead_letters_are_unbounded_unless_the_file_bounds_them() -> None:
    assert parse_routing("queues:\n  emails: {}\n").queue("emails").dead_letter_bounds is None


def test_empty_dead_letter_bounds_name_the_line() -> None:
    error = error_of("queues:\n  emails:\n    dead_letters: {}\n")
    assert error.line == 3 and "must set max_length and/or message_ttl" in str(error)


def test_unknown_dead_letter_bound_names_the_line() -> None:
    error = error_of("queues:\n  emails:\n    dead_letters:\n      max_age: 5\n")
    assert error.line == 4 and "unknown key 'max_age'" in str(error)


def test_non_positive_dead_letter_ttl_names_the_line() -> None:
    error = error_of("queues:\n  emails:\n    dead_letters:\n      message_ttl: 0\n")
    assert error.line == 4 and "message_ttl must be >= 1" in str(error)


def test_delivery_limit_on_a_classic_queue_names_the_line() -> None:
    error = error_of("queues:\n  emails:\n    delivery_limit: 10\n")
    assert error.line == 3 and "delivery_limit needs type: quorum" in str(error)


def test_delivery_limit_above_a_32_bit_integer_names_the_line() -> None:
    error = error_of("queues:\n  q:\n    type: quorum\n    delivery_limit: 2147483648\n")
    assert error.line == 4 and "delivery_limit must be 1..2147483647" in str(error)


def test_negative_policy_priority_names_the_line() -> None:
    error = error_of("policy_priority: -1\n")
    assert error.line == 1 and "policy_priority must be >= 0" in str(error)


def test_an_event_history_takes_rabbitmqs_retention_and_sizes_with_units() -> None:
    topology = parse_routing("events:\n  history:\n    max_age: 24h\n    max_bytes: 1GiB\n")
    history = topology.event_history
    assert history is not None
    assert history.arguments() == {
        "x-queue-type": "stream",
        "x-max-age": "24h",
        "x-max-length-bytes": 2**30,
    }
    assert parse_routing("events:\n  history:\n    max_bytes: 500MB\n").event_history == (
        type(history)(max_bytes=500_000_000)
    )


def test_no_events_section_means_no_history() -> None:
    assert parse_routing("queues:\n  a: {}\n").event_history is None


def test_an_event_history_without_a_bound_is_refused_with_the_line() -> None:
    error = error_of("queues: {}\nevents:\n  history: {}\n")
    assert error.line == 3 and "max_age and/or max_bytes" in str(error)


def test_a_bad_retention_names_the_line_and_the_syntax() -> None:
    error = error_of("events:\n  history:\n    max_age: 1 day\n")
    assert error.line == 3 and "Y, M, D, h, m, s" in str(error)
    error = error_of("events:\n  history:\n    max_bytes: 1 PB\n")
    assert error.line == 3 and "GiB" in str(error)


def test_an_unknown_events_key_names_the_line() -> None:
    error = error_of("events:\n  histroy: {}\n")
    assert error.line == 2 and "history" in str(error)
