"""``rabbitq inspect``/``control``: which nodes named with -d stayed silent (no broker)."""

from __future__ import annotations

from rabbitq.cli.control import silent_nodes


def test_without_a_destination_no_node_is_missed() -> None:
    assert silent_nodes(None, []) == []


def test_a_named_node_without_a_reply_is_silent() -> None:
    replies = [{"a@h": {"ok": "pong"}}]
    assert silent_nodes(["a@h", "b@h"], replies) == ["b@h"]


def test_silent_nodes_keep_the_order_named_once_each() -> None:
    assert silent_nodes(["c@h", "b@h", "c@h"], []) == ["c@h", "b@h"]


def test_every_named_node_that_replied_leaves_none_silent() -> None:
    replies = [{"a@h": {"ok": "pong"}}, {"b@h": {"ok": "pong"}}]
    assert silent_nodes(["a@h", "b@h"], replies) == []
