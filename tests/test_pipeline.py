"""The worker's pipeline, every branch, against an in-memory publisher: where each message
ends (acked once, retried, dead-lettered with a reason, handed back) and what it publishes."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from typing import Any

import pytest

import rabbitq
from rabbitq import dead_letters
from rabbitq.chords import decode_part
from rabbitq.delays import EXCHANGE_PREFIX
from rabbitq.errors import PublishTimeoutError, UnroutableError
from rabbitq.message import Envelope, decode_task
from rabbitq.middleware import MiddlewareStack
from rabbitq.middleware.revocations import Revocations
from rabbitq.redelivery import QUORUM_DELIVERY_COUNT_HEADER, REDELIVERY_COUNT_HEADER
from rabbitq.retries import RetryPolicy
from rabbitq.revocations import Revocation
from rabbitq.topology import QueueSpec, Topology
from tests.pipeline_support import (
    FakeChannel,
    InMemoryPublisher,
    Published,
    harness,
    make_app,
    task_envelope,
)

ran: list[Any] = []


@pytest.fixture(autouse=True)
def _fresh_record() -> None:
    ran.clear()


def app_with_tasks(**options: Any) -> rabbitq.App:
    app = make_app(**options)

    @app.task(name="ok")
    def ok(x: int = 0) -> int:
        ran.append(("ok", x))
        return x + 1

    @app.task(name="boom")
    def boom() -> None:
        ran.append("boom")
        raise ValueError("boom")

    @app.task(name="exits")
    def exits() -> None:
        ran.append("exits")
        sys.exit(3)

    @app.task(name="interrupts")
    async def interrupts() -> None:
        ran.append("interrupts")
        raise KeyboardInterrupt

    @app.task(name="retries", bind=True, max_retries=2)
    def retries(self: rabbitq.Task) -> None:
        ran.append("retries")
        raise self.retry(countdown=30)

    @app.task(name="flaky", autoretry_for=(ConnectionError,), default_retry_delay=5)
    def flaky() -> None:
        ran.append("flaky")
        raise ConnectionError("down")

    @app.task(name="unencodable")
    def unencodable() -> object:
        ran.append("unencodable")
        return object()

    @app.task(name="huge_error")
    def huge_error() -> None:
        raise ValueError("x" * 500_000)

    return app


def reason_of(published: Published) -> Any:
    return published.envelope.headers["rabbitq_reason"]


# -- arrival ----------------------------------------------------------------------------------


async def test_a_task_that_returns_is_acked_once_and_nothing_else_is_published() -> None:
    h = harness(app_with_tasks())
    delivery = await h.deliver(task_envelope("ok", 1))
    assert ran == [("ok", 1)]
    assert h.acks.acked == [delivery.tag]
    assert h.publisher.published == []
    assert h.stats.succeeded == 1


async def test_an_undecodable_message_is_dead_lettered_undecodable_and_acked() -> None:
    h = harness(app_with_tasks())
    garbage = Envelope(
        body=b"\xc1\xc1", headers={"task": "ok"}, content_type="application/x-msgpack"
    )
    delivery = await h.deliver(garbage)
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_UNDECODABLE
    assert h.acks.acked == [delivery.tag]


async def test_an_expired_message_is_dead_lettered_expired_without_running() -> None:
    h = harness(app_with_tasks())
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    await h.deliver(task_envelope("ok", expires=past))
    assert ran == []
    assert reason_of(h.dead()[0]) == dead_letters.REASON_EXPIRED


async def test_an_unknown_task_is_dead_lettered_unknown_task() -> None:
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("nobody.knows"))
    assert reason_of(h.dead()[0]) == dead_letters.REASON_UNKNOWN_TASK


async def test_arguments_that_do_not_fit_are_dead_lettered_bad_arguments() -> None:
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("ok", 1, 2, 3))
    assert ran == []
    assert reason_of(h.dead()[0]) == "bad-arguments"


async def test_a_celery_chord_member_is_dead_lettered_unsupported() -> None:
    h = harness(app_with_tasks())
    envelope = task_envelope("ok", chord={"task": "body"})
    await h.deliver(envelope)
    assert ran == []
    assert reason_of(h.dead()[0]) == "unsupported"


async def test_an_eta_far_ahead_goes_back_through_the_delay_levels_unrun() -> None:
    h = harness(app_with_tasks())
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    delivery = await h.deliver(task_envelope("ok", eta=eta))
    assert ran == []
    [later] = h.publisher.published
    assert later.exchange.startswith(EXCHANGE_PREFIX)
    assert h.acks.acked == [delivery.tag]


async def test_a_redelivered_classic_message_is_copied_back_with_its_count_then_acked() -> None:
    h = harness(app_with_tasks())
    delivery = await h.deliver(task_envelope("ok"), redelivered=True)
    assert ran == []
    [copy] = h.publisher.to("work")
    assert copy.envelope.headers[REDELIVERY_COUNT_HEADER] == 1
    assert h.acks.acked == [delivery.tag]


async def test_a_message_redelivered_past_the_limit_is_dead_lettered_redelivery_limit() -> None:
    h = harness(app_with_tasks(redelivery_limit=2))
    await h.deliver(task_envelope("ok", headers={REDELIVERY_COUNT_HEADER: 2}), redelivered=True)
    assert ran == []
    assert reason_of(h.dead()[0]) == dead_letters.REASON_REDELIVERY_LIMIT


async def test_an_x_delivery_count_on_a_first_delivery_came_from_a_publisher_and_is_ignored() -> (
    None
):
    h = harness(app_with_tasks(redelivery_limit=2))
    await h.deliver(task_envelope("ok", headers={QUORUM_DELIVERY_COUNT_HEADER: 99}))
    assert ran == [("ok", 0)]


def quorum_work() -> Topology:
    return Topology(queues=(QueueSpec("work", type="quorum"),))


async def test_a_quorum_count_on_a_redelivery_from_a_quorum_queue_is_trusted() -> None:
    h = harness(app_with_tasks(redelivery_limit=2, routing=quorum_work()))
    envelope = task_envelope("ok", headers={QUORUM_DELIVERY_COUNT_HEADER: 3})
    await h.deliver(envelope, redelivered=True)
    assert ran == []
    assert reason_of(h.dead()[0]) == dead_letters.REASON_REDELIVERY_LIMIT


async def test_a_replayed_quorum_redelivery_limit_dead_letter_runs_the_task() -> None:
    h = harness(app_with_tasks(redelivery_limit=2, routing=quorum_work()))
    envelope = task_envelope("ok", headers={QUORUM_DELIVERY_COUNT_HEADER: 3})
    await h.deliver(envelope, redelivered=True)
    dead = h.dead()[0].envelope
    assert QUORUM_DELIVERY_COUNT_HEADER not in dead.headers
    replayed = dead_letters.replay_envelope(dead)
    await h.deliver(replayed)
    assert ran == [("ok", 0)]


# -- running ----------------------------------------------------------------------------------


async def test_a_task_failure_is_dead_lettered_task_failed_with_its_traceback() -> None:
    h = harness(app_with_tasks())
    delivery = await h.deliver(task_envelope("boom"))
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_TASK_FAILED
    assert dead.envelope.headers["rabbitq_exception_type"] == "ValueError"
    assert "boom" in dead.envelope.headers["rabbitq_traceback"]
    assert h.acks.acked == [delivery.tag]
    assert h.stats.failed == 1


async def test_sys_exit_in_a_thread_task_is_that_tasks_failure_only() -> None:
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("exits"))
    assert reason_of(h.dead()[0]) == dead_letters.REASON_TASK_FAILED
    assert h.dead()[0].envelope.headers["rabbitq_exception_type"] == "SystemExit"
    await h.deliver(task_envelope("ok", 5))  # the pipeline still runs tasks
    assert ran[-1] == ("ok", 5)


async def test_keyboard_interrupt_in_an_async_task_is_that_tasks_failure_only() -> None:
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("interrupts"))
    assert h.dead()[0].envelope.headers["rabbitq_exception_type"] == "KeyboardInterrupt"


async def test_self_retry_publishes_the_next_attempt_through_the_delay_levels() -> None:
    h = harness(app_with_tasks())
    delivery = await h.deliver(task_envelope("retries"))
    [attempt] = h.publisher.published
    assert attempt.exchange.startswith(EXCHANGE_PREFIX)
    assert attempt.routing_key.endswith(".queue.work")
    assert decode_task(attempt.envelope).retries == 1
    assert h.acks.acked == [delivery.tag]
    assert h.stats.retried == 1


async def test_a_retry_drops_the_delivery_counts() -> None:
    h = harness(app_with_tasks())
    headers = {QUORUM_DELIVERY_COUNT_HEADER: 1, REDELIVERY_COUNT_HEADER: 1}
    await h.deliver(task_envelope("retries", headers=headers))
    [attempt] = h.publisher.published
    assert QUORUM_DELIVERY_COUNT_HEADER not in attempt.envelope.headers
    assert REDELIVERY_COUNT_HEADER not in attempt.envelope.headers


async def test_retries_past_max_retries_are_dead_lettered_retries_exhausted() -> None:
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("retries", retries=2))
    assert reason_of(h.dead()[0]) == dead_letters.REASON_RETRIES_EXHAUSTED


async def test_an_autoretry_for_error_is_retried() -> None:
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("flaky"))
    [attempt] = h.publisher.published
    assert decode_task(attempt.envelope).retries == 1


async def test_an_unencodable_result_is_the_tasks_failure() -> None:
    h = harness(app_with_tasks(result_backend="rpc://"))
    await h.deliver(task_envelope("unencodable", reply_to="caller"))
    assert h.dead()[0].envelope.headers["rabbitq_exception_type"] == "ResultEncodeError"


# -- follow-ups -------------------------------------------------------------------------------


def link_error_to(task: str) -> dict[str, Any]:
    return {"task": task, "args": [], "kwargs": {}, "options": {}}


async def test_a_malformed_errback_does_not_stop_the_dead_letter() -> None:
    h = harness(app_with_tasks())
    envelope = task_envelope("boom", errbacks=[{"not": "a signature"}])
    delivery = await h.deliver(envelope)
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_TASK_FAILED
    assert "rabbitq_followup_error" in dead.envelope.headers
    assert h.acks.acked == [delivery.tag]


async def test_an_errback_routed_nowhere_does_not_stop_the_dead_letter() -> None:
    def unroutable(item: Published) -> BaseException | None:
        return UnroutableError(item.routing_key) if item.routing_key == "nowhere" else None

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=unroutable))
    errback = link_error_to("handler") | {"options": {"routing_key": "nowhere"}}
    delivery = await h.deliver(task_envelope("boom", errbacks=[errback]))
    [dead] = h.dead()
    assert "UnroutableError" in dead.envelope.headers["rabbitq_followup_error"]
    assert h.acks.acked == [delivery.tag]


async def test_an_errbacks_error_header_is_bounded_like_a_dead_letters() -> None:
    h = harness(app_with_tasks())
    await h.deliver(task_envelope("huge_error", errbacks=[link_error_to("handler")]))
    [errback] = [p for p in h.publisher.published if p.envelope.headers.get("task") == "handler"]
    info = errback.envelope.headers["rabbitq_error"]
    assert len(info["exc_message"]) <= dead_letters.MAX_MESSAGE_CHARS
    assert len(info["traceback"]) <= dead_letters.MAX_TRACEBACK_CHARS


async def test_a_succeeded_task_whose_callback_is_unroutable_is_dead_lettered_not_rerun() -> None:
    def unroutable(item: Published) -> BaseException | None:
        return UnroutableError(item.routing_key) if item.routing_key == "nowhere" else None

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=unroutable))
    callback = link_error_to("next") | {"options": {"routing_key": "nowhere"}}
    delivery = await h.deliver(task_envelope("ok", 1, callbacks=[callback]))
    assert ran == [("ok", 1)]
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_FOLLOWUP_FAILED
    assert dead.envelope.headers["rabbitq_exception_type"] == "FollowupError"
    assert h.acks.acked == [delivery.tag]


async def test_a_followup_failure_keeps_the_stored_success() -> None:
    def unroutable(item: Published) -> BaseException | None:
        return UnroutableError(item.routing_key) if item.routing_key == "nowhere" else None

    h = harness(app_with_tasks(result_backend="rpc://"), InMemoryPublisher(refuse=unroutable))
    callback = link_error_to("next") | {"options": {"routing_key": "nowhere"}}
    await h.deliver(task_envelope("ok", 1, callbacks=[callback], reply_to="caller"))
    states = [p.envelope.body for p in h.publisher.to("caller")]
    assert states and all(b"FAILURE" not in body for body in states)
    assert any(b"SUCCESS" in body for body in states)


async def test_a_transient_followup_failure_retries_the_followups_not_the_task() -> None:
    failures = iter([PublishTimeoutError("down"), PublishTimeoutError("down")])

    def twice_down(item: Published) -> BaseException | None:
        return next(failures, None) if item.envelope.headers.get("task") == "next" else None

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=twice_down))
    delivery = await h.deliver(task_envelope("ok", 1, callbacks=[link_error_to("next")]))
    assert ran == [("ok", 1)]
    assert [p.envelope.headers["task"] for p in h.publisher.published] == ["next"]
    assert h.dead() == []
    assert h.acks.acked == [delivery.tag]


async def test_transient_followup_failures_past_followup_retry_for_dead_letter_it() -> None:
    def down(item: Published) -> BaseException | None:
        return PublishTimeoutError("down") if item.envelope.headers.get("task") == "next" else None

    h = harness(app_with_tasks(followup_retry_for=0), InMemoryPublisher(refuse=down))
    await h.deliver(task_envelope("ok", 1, callbacks=[link_error_to("next")]))
    assert ran == [("ok", 1)]
    assert reason_of(h.dead()[0]) == dead_letters.REASON_FOLLOWUP_FAILED


async def test_followups_lost_with_their_channel_are_left_to_the_broker() -> None:
    channel = FakeChannel()

    def down(item: Published) -> BaseException | None:
        channel.is_closed = True
        return PublishTimeoutError("down")

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=down))
    await h.deliver(task_envelope("ok", 1, callbacks=[link_error_to("next")]), channel=channel)
    assert h.acks.acked == []  # the broker redelivers it; nothing more from here
    assert h.publisher.published == []


# -- shutdown ---------------------------------------------------------------------------------


async def test_a_message_handed_back_at_shutdown_keeps_its_redelivery_count() -> None:
    h = harness(app_with_tasks())
    h.stopping = True
    envelope = task_envelope("ok", headers={REDELIVERY_COUNT_HEADER: 2})
    delivery = await h.deliver(envelope)
    assert ran == []
    [copy] = h.publisher.to("work")
    assert copy.envelope.headers[REDELIVERY_COUNT_HEADER] == 2
    assert h.acks.acked == [delivery.tag]


async def test_a_quorum_count_handed_back_at_shutdown_moves_into_our_header() -> None:
    h = harness(app_with_tasks(redelivery_limit=5, routing=quorum_work()))
    h.stopping = True
    envelope = task_envelope("ok", headers={QUORUM_DELIVERY_COUNT_HEADER: 2})
    await h.deliver(envelope, redelivered=True)
    [copy] = h.publisher.to("work")
    assert copy.envelope.headers[REDELIVERY_COUNT_HEADER] == 2
    assert QUORUM_DELIVERY_COUNT_HEADER not in copy.envelope.headers


async def test_a_hand_back_on_a_closed_channel_publishes_nothing() -> None:
    h = harness(app_with_tasks())
    h.stopping = True
    await h.deliver(task_envelope("ok"), channel=FakeChannel(is_closed=True))
    assert h.publisher.published == []
    assert h.acks.acked == []


async def test_a_failed_started_report_does_not_stop_the_task() -> None:
    first_reply = iter([PublishTimeoutError("down")])

    def no_replies(item: Published) -> BaseException | None:
        return next(first_reply, None) if item.routing_key == "caller" else None

    app = app_with_tasks(result_backend="rpc://", track_started=True)
    h = harness(app, InMemoryPublisher(refuse=no_replies))
    await h.deliver(task_envelope("ok", 2, reply_to="caller"))
    assert ran == [("ok", 2)]


def test_retry_policy_is_what_the_tasks_use() -> None:
    # The tasks above rely on Celery's option names reaching the policy.
    app = app_with_tasks()
    assert app.tasks["flaky"].retry_policy == RetryPolicy(
        autoretry_for=(ConnectionError,), default_retry_delay=5
    )


async def test_a_stop_while_followups_are_retried_dead_letters_at_once() -> None:
    holder: dict[str, Any] = {}

    def down_then_stop(item: Published) -> BaseException | None:
        if item.envelope.headers.get("task") != "next":
            return None
        holder["h"].stopping = True  # SIGTERM arrives during the first failure
        return PublishTimeoutError("down")

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=down_then_stop))
    holder["h"] = h
    await h.deliver(task_envelope("ok", 1, callbacks=[link_error_to("next")]))
    assert ran == [("ok", 1)]
    assert reason_of(h.dead()[0]) == dead_letters.REASON_FOLLOWUP_FAILED


# -- what the review found ----------------------------------------------------------------------


async def test_a_thread_task_raising_stop_iteration_is_its_failure_not_a_hung_slot() -> None:
    app = app_with_tasks()

    @app.task(name="stops")
    def stops() -> None:
        next(iter([]))  # a plain bug: StopIteration out of a thread task

    h = harness(app)
    delivery = await asyncio.wait_for(h.deliver(task_envelope("stops")), 10)
    [dead] = h.dead()
    assert reason_of(dead) == dead_letters.REASON_TASK_FAILED
    assert dead.envelope.headers["rabbitq_exception_type"] == "RuntimeError"
    assert h.acks.acked == [delivery.tag]


async def test_a_publisher_x_delivery_count_on_a_classic_queue_does_not_stop_the_recount() -> None:
    h = harness(app_with_tasks(redelivery_limit=2))
    envelope = task_envelope("ok", headers={QUORUM_DELIVERY_COUNT_HEADER: 0})
    await h.deliver(envelope, redelivered=True)  # the worker died mid-task; redelivered
    assert ran == []
    [copy] = h.publisher.to("work")
    assert copy.envelope.headers[REDELIVERY_COUNT_HEADER] == 1


async def test_a_dead_letter_the_broker_does_not_confirm_is_sent_again_never_requeued() -> None:
    refusals = iter([PublishTimeoutError("blocked"), PublishTimeoutError("blocked")])

    def blocked_twice(item: Published) -> BaseException | None:
        return next(refusals, None) if item.routing_key == "work.dead" else None

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=blocked_twice))
    h.pipeline_backoff(0.0)
    delivery = await h.deliver(task_envelope("boom"))
    assert ran == ["boom"]
    assert reason_of(h.dead()[0]) == dead_letters.REASON_TASK_FAILED
    assert h.acks.acked == [delivery.tag]


async def test_a_succeeded_task_whose_followup_dead_letter_bounces_is_not_run_again() -> None:
    def down(item: Published) -> BaseException | None:
        if item.envelope.headers.get("task") == "next":
            return PublishTimeoutError("down")
        return None

    dead_refusals = iter([PublishTimeoutError("blocked")])

    def refuse(item: Published) -> BaseException | None:
        if item.routing_key == "work.dead":
            return next(dead_refusals, None)
        return down(item)

    h = harness(app_with_tasks(followup_retry_for=0), InMemoryPublisher(refuse=refuse))
    h.pipeline_backoff(0.0)
    delivery = await h.deliver(task_envelope("ok", 1, callbacks=[link_error_to("next")]))
    assert ran == [("ok", 1)]
    assert reason_of(h.dead()[0]) == dead_letters.REASON_FOLLOWUP_FAILED
    assert h.acks.acked == [delivery.tag]


async def test_a_successor_still_unconfirmed_when_the_channel_closes_is_left_to_the_broker() -> (
    None
):
    channel = FakeChannel()

    def refuse(item: Published) -> BaseException | None:
        if item.routing_key != "work.dead":
            return None
        channel.is_closed = True  # the connection dropped while publishing
        return PublishTimeoutError("gone")

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=refuse))
    await h.deliver(task_envelope("boom"), channel=channel)
    assert h.dead() == []
    assert h.acks.acked == []  # unacked: the broker redelivers it


async def test_an_unroutable_dead_letter_has_its_queue_declared_again() -> None:
    declared: list[str] = []

    def unroutable_until_declared(item: Published) -> BaseException | None:
        if item.routing_key == "work.dead" and not declared:
            return UnroutableError("work.dead", "")
        return None

    async def redeclare(queue: str) -> None:
        declared.append(queue)

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=unroutable_until_declared))
    h.pipeline.redeclare = redeclare
    h.pipeline_backoff(0.0)
    await h.deliver(task_envelope("boom"))
    assert declared == ["work"]
    assert reason_of(h.dead()[0]) == dead_letters.REASON_TASK_FAILED


async def test_skip_task_raised_by_the_task_itself_is_its_failure() -> None:
    app = app_with_tasks()

    @app.task(name="skips")
    def skips() -> None:
        raise rabbitq.SkipTask("only middleware may skip")

    h = harness(app)
    await h.deliver(task_envelope("skips"))
    assert reason_of(h.dead()[0]) == dead_letters.REASON_TASK_FAILED


async def test_a_hand_back_the_broker_does_not_confirm_is_left_unacked_not_retried() -> None:
    attempts: list[str] = []

    def refuse(item: Published) -> BaseException | None:
        attempts.append(item.routing_key)
        return PublishTimeoutError("blocked")

    h = harness(app_with_tasks(), InMemoryPublisher(refuse=refuse))
    h.stopping = True
    await h.deliver(task_envelope("ok"))
    assert attempts == ["work"]  # one try: shutdown is not held up
    assert h.acks.acked == []  # the broker takes it back when the worker closes
    assert ran == []


# -- revoked and terminated -----------------------------------------------------------------


def revoking(*ids: str) -> Revocations:
    revocations = Revocations()
    revocations.apply(Revocation.now(ids, 60))
    return revocations


async def test_a_revoked_task_is_acked_without_running_and_its_chord_told() -> None:
    app = app_with_tasks()
    ran: list[str] = []

    @app.task(name="member")
    def member() -> None:
        ran.append("ran")

    h = harness(app, middleware=MiddlewareStack((revoking("m-1"), *app.middleware)))
    chord = {"id": "c-1", "index": 0, "size": 2, "body": {"task": "body"}}
    delivery = await h.deliver(
        task_envelope("member", id="m-1", embed_extras={"rabbitq_chord": chord})
    )
    assert ran == [] and h.acks.acked == [delivery.tag] and h.dead() == []
    (part,) = h.publisher.to("rabbitq.chords")
    assert decode_part(part.envelope).error["exc_type"] == "TaskRevokedError"


async def test_a_terminated_task_is_acked_not_retried_even_when_autoretry_matches() -> None:
    app = app_with_tasks()

    @app.task(name="stopped", autoretry_for=(Exception,))
    def stopped() -> None:
        raise rabbitq.Terminated("revoked and terminated")

    h = harness(app)
    delivery = await h.deliver(task_envelope("stopped"))
    assert h.acks.acked == [delivery.tag] and h.dead() == [] and h.publisher.published == []
