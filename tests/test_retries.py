"""Retry policy and retried messages (no broker needed)."""

from __future__ import annotations

import datetime as dt

from rabbitq.message import Envelope, TaskMessage, decode_task, encode_task
from rabbitq.retries import RetryPolicy, retry_envelope
from rabbitq.serializers import MSGPACK


def test_default_is_celerys_fixed_delay() -> None:
    assert RetryPolicy().countdown(0) == 180.0


def test_exponential_backoff_is_capped() -> None:
    policy = RetryPolicy(retry_backoff=2, retry_backoff_max=10, retry_jitter=False)
    assert [policy.countdown(n) for n in range(4)] == [2, 4, 8, 10]


def test_jitter_draws_below_the_backoff() -> None:
    policy = RetryPolicy(retry_backoff=True, retry_jitter=True)
    assert policy.countdown(3, random_fraction=lambda: 0.5) == 4.0


def test_max_retries_none_means_forever() -> None:
    assert not RetryPolicy(max_retries=None).exhausted(10_000)


def test_exhausted_after_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    assert not policy.exhausted(1) and policy.exhausted(2)
    assert not policy.exhausted(2, max_retries=5)


def test_autoretry_only_for_listed_errors() -> None:
    policy = RetryPolicy(autoretry_for=(ConnectionError,))
    assert policy.retries_automatically(ConnectionResetError())
    assert not policy.retries_automatically(ValueError())


def test_retry_keeps_id_and_body_counts_up_and_drops_death_headers() -> None:
    original = encode_task(TaskMessage(task="t", args=[1], id="same"), MSGPACK)
    original.headers["x-death"] = [{"queue": "rabbitq.delay.3"}]
    original.headers["x-first-death-queue"] = "rabbitq.delay.3"
    eta = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    retried = retry_envelope(original, 2, eta)
    assert retried.body == original.body and retried.message_id == "same"
    assert "x-death" not in retried.headers and "x-first-death-queue" not in retried.headers
    decoded = decode_task(retried)
    assert decoded.retries == 2 and decoded.eta == eta and decoded.id == "same"


def test_decoded_message_does_not_carry_broker_death_headers_onward() -> None:
    envelope = encode_task(TaskMessage(task="t"), MSGPACK)
    envelope.headers["x-death"] = [{}]
    assert "x-death" not in decode_task(envelope).headers


def test_retry_envelope_is_a_copy() -> None:
    original = Envelope(b"", {"retries": 0})
    retry_envelope(original, 1, None)
    assert original.headers == {"retries": 0}
