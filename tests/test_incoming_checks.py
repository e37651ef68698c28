"""What a worker refuses before decoding (issue 21): a body over ``max_message_size``, one
nested deeper than ``nesting.MAX_NESTING``, and, when its App signs, a message without a
valid signature. Each is dead-lettered with its reason, unrun, and acked once; and what the
worker sends on for a signed message (retries, later, parked copies) is signed afresh."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgpack

import rabbitq
from rabbitq import dead_letters
from rabbitq.message import Envelope, decode_task
from rabbitq.nesting import MAX_NESTING
from rabbitq.signing import SIGNATURE_HEADER
from tests.pipeline_support import Harness, Published, harness, make_app, task_envelope

KEY = "s" * 32
ran: list[Any] = []


def worker(**options: Any) -> Harness:
    ran.clear()
    app = make_app(**options)

    @app.task(name="echo")
    def echo(value: Any = None) -> None:
        ran.append(value)

    @app.task(name="again", bind=True, max_retries=1)
    def again(self: rabbitq.Task) -> None:
        ran.append("again")
        raise self.retry(countdown=30)

    return harness(app)


def reason_of(published: Published) -> Any:
    return published.envelope.headers["rabbitq_reason"]


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def json_task(args: Any) -> Envelope:
    envelope = task_envelope("echo")
    return Envelope(
        body=json.dumps([args, {}, {}]).encode(),
        headers=envelope.headers,
        content_type="application/json",
        content_encoding="utf-8",
    )


async def test_a_body_over_max_message_size_is_dead_lettered_too_large_unrun() -> None:
    h = worker(max_message_size=1000)
    delivery = await h.deliver(task_envelope("echo", "x" * 2000))
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_TOO_LARGE == "too-large"
    assert "max_message_size of 1000" in dead.envelope.headers["rabbitq_exception_message"]
    assert ran == [] and h.acks.acked == [delivery.tag]


async def test_a_body_under_max_message_size_runs() -> None:
    h = worker(max_message_size=1000)
    await h.deliver(task_envelope("echo", "x" * 900))
    assert ran == ["x" * 900] and h.dead() == []


async def test_a_msgpack_body_nested_too_deep_is_dead_lettered_too_deep_unrun() -> None:
    h = worker()
    body = msgpack.packb([[deep(MAX_NESTING + 10)], {}, {}])
    delivery = await h.deliver(
        Envelope(body, task_envelope("echo").headers, "application/x-msgpack")
    )
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_TOO_DEEP == "too-deep"
    assert ran == [] and h.acks.acked == [delivery.tag]


async def test_a_json_body_nested_too_deep_is_dead_lettered_too_deep_unrun() -> None:
    h = worker()
    await h.deliver(json_task([deep(MAX_NESTING + 10)]))
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_TOO_DEEP and ran == []


async def test_nesting_just_inside_the_limit_runs() -> None:
    h = worker()
    await h.deliver(json_task([deep(MAX_NESTING - 3)]))
    assert h.dead() == [] and ran == [deep(MAX_NESTING - 3)]


async def test_a_signing_worker_runs_a_message_its_app_signed() -> None:
    h = worker(signing_key=KEY)
    await h.deliver(h.app.signer.sign(task_envelope("echo", 1)))  # type: ignore[union-attr]
    assert ran == [1] and h.dead() == []


async def test_a_signing_worker_dead_letters_an_unsigned_message_as_bad_signature() -> None:
    h = worker(signing_key=KEY)
    delivery = await h.deliver(task_envelope("echo", 1))
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_BAD_SIGNATURE == "bad-signature"
    assert ran == [] and h.acks.acked == [delivery.tag]


async def test_a_forged_message_is_dead_lettered_and_its_dead_letter_is_not_signed() -> None:
    h = worker(signing_key=KEY)
    forged = h.app.signer.sign(task_envelope("echo", 1))  # type: ignore[union-attr]
    forged.body = task_envelope("echo", 666).body
    await h.deliver(forged)
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_BAD_SIGNATURE and ran == []
    replayed = dead_letters.replay_envelope(dead.envelope)
    assert h.app.signer.check(replayed) is not None  # type: ignore[union-attr]


async def test_a_message_signed_by_another_key_is_refused_and_one_kept_for_rotation_runs() -> None:
    old = make_app(signing_key="o" * 32).signer
    assert old is not None
    h = worker(signing_key=KEY)
    await h.deliver(old.sign(task_envelope("echo", 1)))
    assert [reason_of(d) for d in h.dead()] == ["bad-signature"] and ran == []
    rotating = worker(signing_key=KEY, signing_keys={"old": "o" * 32})
    await rotating.deliver(old.sign(task_envelope("echo", 2)))
    assert ran == [2] and rotating.dead() == []


async def test_a_retry_of_a_signed_message_is_signed_afresh_and_checks() -> None:
    h = worker(signing_key=KEY)
    await h.deliver(h.app.signer.sign(task_envelope("again")))  # type: ignore[union-attr]
    [attempt] = h.publisher.published
    assert decode_task(attempt.envelope).eta is not None
    assert h.app.signer.check(attempt.envelope) is None  # type: ignore[union-attr]


async def test_a_message_due_later_is_sent_on_signed_afresh() -> None:
    h = worker(signing_key=KEY)
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    await h.deliver(h.app.signer.sign(task_envelope("echo", 1, eta=eta)))  # type: ignore[union-attr]
    [later] = h.publisher.published
    assert later.envelope.headers[SIGNATURE_HEADER]
    assert h.app.signer.check(later.envelope) is None  # type: ignore[union-attr]
    assert ran == []


async def test_a_worker_without_a_key_runs_signed_messages_too() -> None:
    signing = make_app(signing_key=KEY).signer
    assert signing is not None
    h = worker()
    await h.deliver(signing.sign(task_envelope("echo", 1)))
    assert ran == [1]
