"""Every message rabbitq publishes says when (``rabbitq_sent_at``, epoch milliseconds): the
worker's queue-wait metric counts from it."""

from __future__ import annotations

import time

import rabbitq
from rabbitq.dead_letters import replay_envelope
from rabbitq.message import SENT_AT_HEADER, Envelope, sent_at_of
from rabbitq.publish_options import PublishOptions


def make_app() -> rabbitq.App:
    return rabbitq.App("sent-at", broker="amqp://guest:guest@127.0.0.1:1/")


def test_a_prepared_message_carries_when_it_was_sent_in_whole_milliseconds() -> None:
    before = int(time.time() * 1000)
    prepared = make_app().prepare("t", (), {}, PublishOptions())
    after = int(time.time() * 1000)
    sent_at = prepared.envelope.headers[SENT_AT_HEADER]
    assert isinstance(sent_at, int) and before <= sent_at <= after


def test_a_follow_up_gets_a_sent_at_of_its_own_not_its_parents() -> None:
    prepared = make_app().prepare("t", (), {}, PublishOptions(headers={SENT_AT_HEADER: 1}))
    assert prepared.envelope.headers[SENT_AT_HEADER] > 1


def test_sent_at_of_reads_the_header_as_epoch_seconds() -> None:
    assert sent_at_of({SENT_AT_HEADER: 1_700_000_000_500}) == 1_700_000_000.5


def test_a_message_from_a_celery_producer_has_no_sent_at() -> None:
    assert sent_at_of({"task": "t", "id": "1"}) is None


def test_a_replayed_dead_letter_is_sent_at_the_replay() -> None:
    dead = Envelope(body=b"", headers={"rabbitq_reason": "task-failed", SENT_AT_HEADER: 1})
    assert replay_envelope(dead, now=2.0).headers[SENT_AT_HEADER] == 2000


def test_a_replayed_celery_message_gets_no_sent_at() -> None:
    dead = Envelope(body=b"", headers={"rabbitq_reason": "task-failed"})
    assert SENT_AT_HEADER not in replay_envelope(dead, now=2.0).headers
