"""Celery's mailbox messages (``control/pidbox.py``), in the shapes kombu sends and reads."""

from __future__ import annotations

import json

import pytest

from rabbitq.control import pidbox
from rabbitq.errors import MessageDecodeError
from rabbitq.message import Envelope


def celery_request(**fields: object) -> Envelope:
    body = {"method": "ping", "arguments": {}, "destination": None, "pattern": None,
            "matcher": None, "ticket": "t-1",
            "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "oid-1"}}  # fmt: skip
    body.update(fields)
    return Envelope(json.dumps(body).encode(), {"clock": 3}, content_type="application/json")


def test_a_celery_request_is_read_with_its_reply_address() -> None:
    request = pidbox.decode_request(celery_request())
    assert request.method == "ping" and request.wants_reply
    assert (request.reply_exchange, request.reply_routing_key) == ("reply.celery.pidbox", "oid-1")


def test_a_cast_without_ticket_wants_no_reply() -> None:
    request = pidbox.decode_request(celery_request(ticket=None, reply_to=None))
    assert not request.wants_reply


def test_a_destination_names_nodes_exactly() -> None:
    request = pidbox.decode_request(celery_request(destination=["a@h"]))
    assert request.is_for("a@h") and not request.is_for("b@h")


@pytest.mark.parametrize(
    ("pattern", "matcher", "node", "expected"),
    [("a*@h", "glob", "ab@h", True), ("a*@h", "glob", "b@h", False),
     ("^b", "pcre", "b@h", True), ("(", "pcre", "b@h", False)],
)  # fmt: skip
def test_a_pattern_selects_nodes_by_its_matcher(
    pattern: str, matcher: str, node: str, expected: bool
) -> None:
    request = pidbox.decode_request(celery_request(pattern=pattern, matcher=matcher))
    assert request.is_for(node) is expected


@pytest.mark.parametrize(
    "body", [b"nope", b"[]", b'{"method": 1}', b'{"method": "ping", "destination": "a@h"}']
)
def test_a_malformed_request_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        pidbox.decode_request(Envelope(body, {}, content_type="application/json"))


def test_a_reply_carries_one_key_the_node_name_and_the_ticket() -> None:
    request = pidbox.decode_request(celery_request())
    reply = pidbox.encode_reply(request, "a@h", {"ok": "pong"}, clock=7)
    assert json.loads(reply.body) == {"a@h": {"ok": "pong"}}
    assert reply.headers == {"ticket": "t-1", "clock": 7} and reply.delivery_mode == 1


def test_node_and_reply_queues_are_named_as_kombu_names_them() -> None:
    assert pidbox.node_queue("a@h") == "a@h.celery.pidbox"
    assert pidbox.reply_queue("oid") == "oid.reply.celery.pidbox"
