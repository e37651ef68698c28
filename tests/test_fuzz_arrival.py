"""Fuzzed input (issue 21): whatever arrives, the decoder and the worker's arrival decision
answer with a value, never a crash.

Hypothesis draws the messages (``tests/fuzz_strategies.py``): arbitrary bytes and headers,
valid and mangled Celery protocol v2 messages, protocol v1 shapes, deep and oversized bodies,
signed, unsigned and tampered ones. Each property runs ``RABBITQ_FUZZ_EXAMPLES`` examples
(200 unless set), derandomized so that CI sees the same ones every run;
``benchmarks/fuzz_arrival.py`` runs the same strategies by the ten thousand.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import zoneinfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rabbitq import dead_letters
from rabbitq.errors import MessageError
from rabbitq.message import Envelope, TaskMessage, decode_task, encode_task
from rabbitq.nesting import MAX_NESTING
from rabbitq.serializers import MSGPACK, Serializer
from rabbitq.worker.decisions import DeadLetter, Later, Recount, Run, Stopped, decide_arrival
from tests import fuzz_strategies as fuzz

EXAMPLES = int(os.environ.get("RABBITQ_FUZZ_EXAMPLES", "200"))
fuzzed = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TASKS = fuzz.fuzz_app().tasks
ARRIVALS = (Run, DeadLetter, Recount, Later, Stopped)
REASONS = frozenset(
    value for name, value in vars(dead_letters).items() if name.startswith("REASON_")
)


def decided(envelope: Envelope, *, signs: bool = False, max_message_size: int = 2**24) -> object:
    return decide_arrival(
        envelope,
        redelivered=False,
        tasks=TASKS,
        redelivery_limit=5,
        clock=lambda: fuzz.NOW,
        max_message_size=max_message_size,
        signer=fuzz.signer() if signs else None,
    )


def reason_of(action: object) -> str | None:
    return action.reason if isinstance(action, DeadLetter) else None


@fuzzed
@given(fuzz.envelopes())
def test_the_decoder_raises_nothing_but_a_message_error(envelope: Envelope) -> None:
    with contextlib.suppress(MessageError):
        decode_task(envelope)


@fuzzed
@given(fuzz.arrivals())
def test_decide_arrival_never_raises_and_returns_exactly_one_known_arrival(
    arrival: fuzz.Arrival,
) -> None:
    action = decide_arrival(arrival.envelope, tasks=TASKS, **arrival.decide_kwargs())
    assert type(action) in ARRIVALS


@fuzzed
@given(fuzz.arrivals())
def test_every_dead_letter_reason_is_one_of_the_reason_constants(arrival: fuzz.Arrival) -> None:
    action = decide_arrival(arrival.envelope, tasks=TASKS, **arrival.decide_kwargs())
    if isinstance(action, DeadLetter):
        assert action.reason in REASONS
        assert isinstance(action.error, BaseException)


@fuzzed
@given(fuzz.valid_v2())
def test_a_valid_celery_v2_message_decodes_to_the_task_and_arguments_it_was_built_from(
    built: fuzz.Built,
) -> None:
    message, decoded = built.message, decode_task(built.envelope)
    assert (decoded.task, decoded.id) == (message.task, message.id)
    assert (decoded.args, decoded.kwargs) == (message.args, message.kwargs)
    # Compared as instants: a local time in a zone's gap (Guayaquil's 1931-01-01 00:05)
    # never equals the same instant in another zone under ``==`` (PEP 495).
    assert (_instant(decoded.eta), _instant(decoded.expires), decoded.retries) == (
        _instant(message.eta),
        _instant(message.expires),
        message.retries,
    )
    assert (decoded.callbacks, decoded.errbacks, decoded.chain, decoded.chord) == (
        message.callbacks,
        message.errbacks,
        message.chain,
        message.chord,
    )
    assert decoded.serializer == built.serializer.name


def _instant(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def test_an_expiry_inside_a_zones_gap_decodes_to_the_same_instant() -> None:
    expires = dt.datetime(1931, 1, 1, 0, 5, tzinfo=zoneinfo.ZoneInfo("America/Guayaquil"))
    decoded = decode_task(encode_task(TaskMessage(task="t", expires=expires), MSGPACK))
    assert _instant(decoded.expires) == expires.timestamp()


@fuzzed
@given(st.data(), fuzz.envelopes().filter(lambda envelope: len(envelope.body) > 1))
def test_a_body_over_max_message_size_is_dead_lettered_too_large_signed_or_not(
    data: st.DataObject, envelope: Envelope
) -> None:
    limit = data.draw(st.integers(min_value=1, max_value=len(envelope.body) - 1))
    for signs in (False, True):
        action = decided(envelope, signs=signs, max_message_size=limit)
        assert reason_of(action) == dead_letters.REASON_TOO_LARGE


@fuzzed
@given(
    fuzz.serializers,
    st.integers(min_value=MAX_NESTING - 1, max_value=4 * MAX_NESTING),
    st.booleans(),
)
def test_a_body_nested_deeper_than_max_nesting_is_dead_lettered_too_deep_signed_or_not(
    serializer: Serializer, depth: int, as_map: bool
) -> None:
    # The body's own list and the args list are two of the levels.
    envelope = encode_task(TaskMessage(task="echo"), serializer)
    envelope.body = fuzz.deep_body(serializer, depth, as_map=as_map)
    for signs in (False, True):
        reason = reason_of(decided(fuzz.signer().sign(envelope) if signs else envelope))
        if depth + 2 > MAX_NESTING:
            assert reason == dead_letters.REASON_TOO_DEEP
        else:
            assert reason != dead_letters.REASON_TOO_DEEP


@fuzzed
@given(fuzz.tampered() | fuzz.valid_v2().map(lambda built: built.envelope) | fuzz.celery_v1())
def test_a_signing_worker_dead_letters_a_tampered_or_unsigned_message_as_bad_signature(
    envelope: Envelope,
) -> None:
    assert reason_of(decided(envelope, signs=True)) == dead_letters.REASON_BAD_SIGNATURE


@fuzzed
@given(fuzz.signed())
def test_a_signing_worker_never_refuses_a_message_its_key_signed_as_bad_signature(
    envelope: Envelope,
) -> None:
    assert reason_of(decided(envelope, signs=True)) != dead_letters.REASON_BAD_SIGNATURE


@fuzzed
@given(fuzz.celery_v1())
def test_a_celery_protocol_v1_message_is_dead_lettered_undecodable(envelope: Envelope) -> None:
    assert reason_of(decided(envelope)) == dead_letters.REASON_UNDECODABLE
