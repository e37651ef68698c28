"""Matching the broker's acks, nacks and returns to publishes (no broker needed)."""

from __future__ import annotations

from rabbitq.amqp.confirms import ConfirmTracker, PublishRequest
from rabbitq.errors import PublishNackedError, UnroutableError
from rabbitq.message import Envelope


def request(message_id: str, routing_key: str = "rk") -> PublishRequest:
    return PublishRequest("rabbitq", routing_key, Envelope(b"", {}, message_id=message_id))


def test_ack_resolves_the_request_with_that_tag() -> None:
    tracker, first, second = ConfirmTracker(), request("a"), request("b")
    tracker.sent(first)
    tracker.sent(second)
    tracker.confirmed(2, multiple=False, ack=True)
    assert second.outcome.done() and second.outcome.error is None
    assert not first.outcome.done()


def test_multiple_ack_resolves_every_tag_up_to_it() -> None:
    tracker = ConfirmTracker()
    requests = [request(str(n)) for n in range(3)]
    for r in requests:
        tracker.sent(r)
    tracker.confirmed(2, multiple=True, ack=True)
    assert [r.outcome.done() for r in requests] == [True, True, False]


def test_a_first_nack_hands_the_request_back_unresolved_to_be_sent_again() -> None:
    tracker, r = ConfirmTracker(), request("a")
    tracker.sent(r)
    assert tracker.confirmed(1, multiple=False, ack=False) == [r]
    assert not r.outcome.done() and len(tracker) == 0


def test_a_second_nack_fails_the_request() -> None:
    tracker, r = ConfirmTracker(), request("a")
    tracker.sent(r)
    tracker.confirmed(1, multiple=False, ack=False)
    tracker.reset()  # the fresh channel
    tracker.sent(r)
    assert tracker.confirmed(1, multiple=False, ack=False) == []
    assert isinstance(r.outcome.error, PublishNackedError)


def test_a_nack_of_an_abandoned_request_is_not_sent_again() -> None:
    tracker, r = ConfirmTracker(), request("a")
    tracker.sent(r)
    r.abandoned = True
    assert tracker.confirmed(1, multiple=False, ack=False) == []


def test_returned_then_acked_is_unroutable_naming_the_key() -> None:
    tracker, r = ConfirmTracker(), request("a", routing_key="nowhere")
    tracker.sent(r)
    tracker.returned("a")
    tracker.confirmed(1, multiple=False, ack=True)
    assert isinstance(r.outcome.error, UnroutableError)
    assert "nowhere" in str(r.outcome.error)


def test_return_belongs_to_the_oldest_in_flight_publish_with_that_id() -> None:
    tracker, older, newer = ConfirmTracker(), request("same"), request("same")
    tracker.sent(older)
    tracker.sent(newer)
    tracker.returned("same")
    tracker.confirmed(2, multiple=True, ack=True)
    assert isinstance(older.outcome.error, UnroutableError)
    assert newer.outcome.error is None


def test_unconfirmed_are_handed_back_oldest_first_and_forgotten() -> None:
    tracker = ConfirmTracker()
    requests = [request(str(n)) for n in range(3)]
    for r in requests:
        tracker.sent(r)
    tracker.returned("0")
    assert tracker.take_unconfirmed() == requests
    assert len(tracker) == 0 and not requests[0].returned


def test_tags_restart_at_one_after_reset() -> None:
    tracker = ConfirmTracker()
    tracker.sent(request("old"))
    tracker.reset()
    fresh = request("new")
    tracker.sent(fresh)
    tracker.confirmed(1, multiple=False, ack=True)
    assert fresh.outcome.done()
