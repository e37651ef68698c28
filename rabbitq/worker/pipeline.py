"""One delivery, from arrival to ack: the pure decisions (``decisions.py``) carried out.

Every path ends in exactly one place, and only after the broker confirmed it:

* ran once and acked (after its follow-ups were confirmed);
* retried: the next attempt published through the delay levels, then acked;
* in a named dead-letter queue with the reason, then acked;
* revoked, or skipped by a middleware (``SkipTask``): REVOKED, then acked;
* handed back to its queue at shutdown, count unchanged, then acked.

If the process dies anywhere in between, the broker still holds the unacked delivery and
redelivers it. A task that succeeded is never run again because something after it failed:
its follow-ups are retried (transient errors) or it is dead-lettered ``followup-failed``
(permanent ones) with its result kept. A failure's follow-ups (errbacks, FAILURE result,
chord error part) never stop its dead letter: their error rides in a header.

A successor the broker does not confirm (a retry, a dead letter, a re-delay, a recount) is
published again, with backoff, for as long as the delivery's channel lives: never nacked,
because a requeue would run a task that already ran. Only when the channel is gone (the
broker has the delivery back) does the pipeline let go. An unroutable dead letter (its queue
was deleted) has its queue declared again first. A hand-back at shutdown is tried once: the
task never ran, so leaving it unacked for the broker to take back costs nothing but a count.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable

from rabbitq.amqp.contract import Publishes as Publisher
from rabbitq.app import App
from rabbitq.errors import Deferred, MessageError, SkipTask, TaskRevokedError, UnroutableError
from rabbitq.message import TaskMessage, decode_task, utcnow
from rabbitq.middleware import DeadLettered, MiddlewareStack, Outcome, TaskContext
from rabbitq.task import Task, TaskRequest, current_request
from rabbitq.timeouts import too_late_to_start
from rabbitq.worker.decisions import (
    DeadLetter,
    Later,
    Recount,
    RetryAt,
    RetryFollowups,
    Revoked,
    Run,
    Stopped,
    Succeed,
    decide_arrival,
    decide_followup_failure,
    decide_outcome,
)
from rabbitq.worker.delivery import Delivery
from rabbitq.worker.executor import Executor
from rabbitq.worker.followups import Followups, check_result
from rabbitq.worker.interrupts import Abandoned, being_cancelled
from rabbitq.worker.republish import Acker, Republisher
from rabbitq.worker.slots import Slots
from rabbitq.worker.time_limits import HARD_GRACE

log = logging.getLogger("rabbitq.worker")

# A successor the broker did not confirm is sent again after this pause, doubling...
SETTLE_BACKOFF_FIRST = 0.5
SETTLE_BACKOFF_MAX = 30.0  # ...up to this (seconds)
# A parked copy (a run that did not stop) comes back this long after its process is gone.
PARK_MARGIN = dt.timedelta(seconds=5)

# Asked to replace this process (a thread is stuck): the wall-clock time by which it will have
# exited, at the latest.
Recycle = Callable[[str], dt.datetime]


class Pipeline:
    def __init__(
        self,
        app: App,
        middleware: MiddlewareStack,
        publisher: Publisher,
        acks: Acker,
        executor: Executor,
        followups: Followups,
        *,
        slots: Slots,
        worker_name: str,
        stopping: Callable[[], bool],
        redeclare: Callable[[str], Awaitable[None]] | None = None,
        recycle: Recycle | None = None,
        end_now: Callable[[], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.app = app
        self.middleware = middleware
        self.acks = acks
        self.executor = executor
        self.followups = followups
        # What "now" is for etas, expiries and retry times: the wall clock, or the in-memory
        # broker's virtual one (``testing/stub_worker.py``).
        self.clock = clock
        self.republish = Republisher(publisher, acks, app.topology, clock, app.signer)
        self.slots = slots
        self.worker_name = worker_name
        self.stopping = stopping
        # Declares a task queue and its dead-letter queue again (a deleted one bounces).
        self.redeclare = redeclare
        self.recycle = recycle
        self.end_now = end_now  # ends the process at once (the broker redelivers its work)
        self._running: dict[int, TaskContext] = {}  # by id(): runs that may be interrupted
        self._waiting: dict[int, TaskContext] = {}  # by id(): received, waiting for a slot
        self._quorum: dict[str, bool] = {}
        self.settle_backoff_first = SETTLE_BACKOFF_FIRST
        self.started = 0  # runs begun in this process
        self._hears_receipts = self.middleware.has("message_received")
        self._hears_task_received = self.middleware.has("task_received")
        self._hears_before = self.middleware.has("before_process")
        self._admits = self.middleware.has("admit")
        self._hears_after = self.middleware.has("after_process")

    async def handle(self, delivery: Delivery) -> None:
        if self._hears_receipts:
            # notify, not emit: plain hooks (the metrics') then cost no coroutine.
            pending = self.middleware.notify("message_received", delivery)
            if pending is not None:
                await pending
        quorum = self._is_quorum(delivery.queue)
        action = decide_arrival(
            delivery.envelope,
            redelivered=delivery.redelivered,
            tasks=self.app.tasks,
            redelivery_limit=self.app.redelivery_limit,
            quorum=quorum,
            clock=self.clock,
            max_message_size=self.app.max_message_size,
            signer=self.app.signer,
        )
        if type(action) is Run:
            context = self._context(delivery, action.task, action.message)
            if self._hears_task_received:
                pending = self.middleware.notify("task_received", context)
                if pending is not None:
                    await pending
            self._waiting[id(context)] = context  # ``inspect reserved``
            try:
                if action.wait_s:
                    await asyncio.sleep(action.wait_s)
                if self._admits and not await self._admit(delivery, context):
                    return
                await self._start_when_free(delivery, context)
            finally:
                self._waiting.pop(id(context), None)
                if context.releases:
                    await self._release(context)
        elif type(action) is DeadLetter:
            await self._dead_letter(delivery, action)
        elif type(action) is Later:
            later = action
            await self._settle(
                delivery,
                "re-delay",
                lambda: self.republish.later(delivery, later.message, later.eta),
            )
        elif type(action) is Stopped:
            context = self._context(delivery, action.task, action.message)
            await self._conclude(delivery, context, action.error, None)
        elif type(action) is Recount:
            count, limit = action.redeliveries, self.app.redelivery_limit
            await self._settle(
                delivery, "recount", lambda: self.republish.recount(delivery, count, limit)
            )

    async def _start_when_free(self, delivery: Delivery, context: TaskContext) -> None:
        async with self.slots:
            self._waiting.pop(id(context), None)
            if self.stopping():
                await self.hand_back(delivery)
                return
            if too_late_to_start(self.app.consumer_timeout, time.monotonic() - delivery.arrived):
                log.warning(
                    "message %s waited for a slot until the broker's consumer_timeout "
                    "was near; handing it back to its queue",
                    context.message.id,
                )
                await self.hand_back(delivery)
                return
            await self._run(context)

    async def _admit(self, delivery: Delivery, context: TaskContext) -> bool:
        """True: the task may take a slot. False: it was settled elsewhere (``Deferred``:
        moved to a limit's waiting queue), or concluded here with the hook's error as its
        failure (retried or dead-lettered by its policy, as from ``before_process``)."""
        try:
            pending = self.middleware.call("admit", context)
            if pending is not None:
                await pending
            return True
        except Deferred:
            return False
        except Exception as exc:
            await self._conclude(delivery, context, exc, None)
            return False

    async def _release(self, context: TaskContext) -> None:
        for release in context.releases:
            try:
                await release()
            except Exception:  # a limit that could not give back: it tells why itself
                log.exception("releasing what %s[%s] held failed", *_who(context))
        context.releases.clear()

    async def hand_back(self, delivery: Delivery) -> None:
        """Shutting down: this one never started. With its channel gone the broker already
        has it back; otherwise a copy goes back with its count unchanged (not a nack).

        One try only: if the copy is not confirmed, the delivery stays unacked and the broker
        takes it back when the worker closes (counted as a redelivery, but it never ran), so
        a shutdown is never held up by a broker that refuses publishes."""
        if delivery.channel.is_closed:
            return
        quorum = self._is_quorum(delivery.queue)
        try:
            await self.republish.hand_back(delivery, quorum=quorum)
        except Exception as exc:
            log.warning(
                "message %s left to the broker at shutdown (its copy was not confirmed: %s)",
                delivery.envelope.message_id,
                exc,
            )

    def _is_quorum(self, queue: str) -> bool:
        known = self._quorum.get(queue)
        if known is None:
            known = self._quorum[queue] = self.app.topology.queue(queue).type == "quorum"
        return known

    async def _settle(
        self, delivery: Delivery, what: str, publish: Callable[[], Awaitable[object]]
    ) -> bool:
        """Run ``publish`` (a successor, confirmed, then the ack) until it succeeds: True; or
        until the delivery's channel is gone, when the broker has it back: False."""
        attempt = 0
        while not delivery.channel.is_closed:
            try:
                await publish()
                return True
            except Exception as exc:
                attempt += 1
                if isinstance(exc, UnroutableError) and self.redeclare is not None:
                    await self._redeclare(delivery.queue)
                pause = min(SETTLE_BACKOFF_MAX, self.settle_backoff_first * 2 ** (attempt - 1))
                log.error(
                    "%s of message %s from %s not confirmed (%s: %s); trying again in %.1fs",
                    what,
                    delivery.envelope.message_id,
                    delivery.queue,
                    type(exc).__name__,
                    exc,
                    pause,
                )
                await asyncio.sleep(pause)
        log.warning(
            "%s of message %s abandoned: its channel closed, the broker redelivers it",
            what,
            delivery.envelope.message_id,
        )
        return False

    async def _redeclare(self, queue: str) -> None:
        assert self.redeclare is not None
        try:
            await self.redeclare(queue)
        except Exception as exc:  # the next attempt says whether it helped
            log.warning("could not declare %s and its dead-letter queue again: %s", queue, exc)

    # -- running ----------------------------------------------------------------------------

    def _context(self, delivery: Delivery, task: Task, message: TaskMessage) -> TaskContext:
        request = TaskRequest(
            id=message.id,
            task=task.name,
            args=message.args,
            kwargs=message.kwargs,
            retries=message.retries,
            root_id=message.root_id,
            parent_id=message.parent_id,
            group=message.group,
            queue=delivery.queue,
            routing_key=delivery.original_routing_key,
            redelivered=delivery.redelivered,
            eta=message.eta,
            headers=message.headers,
            reply_to=message.reply_to,
        )
        # Set before the hooks, so that ``task.request`` answers in ``before_process`` and in
        # Celery's task_prerun receivers as it does inside the task.
        current_request.set(request)
        return TaskContext(delivery, message, task, request, self.worker_name)

    def interrupt_runs_on(self, channel: object) -> int:
        """Stop the runs whose deliveries came on ``channel`` (the broker took them back);
        how many were asked to stop."""
        stopped = 0
        for context in list(self._running.values()):
            if context.delivery.channel is channel and context.control is not None:
                context.control.interrupt_hard()
                stopped += 1
        return stopped

    @property
    def running(self) -> int:
        """Tasks running now in this process."""
        return len(self._running)

    def runs(self) -> list[TaskContext]:
        """The runs going on now (``inspect active``)."""
        return list(self._running.values())

    def waiting(self) -> list[TaskContext]:
        """Received and judged runnable, waiting for a slot (``inspect reserved``)."""
        return list(self._waiting.values())

    async def _run(self, context: TaskContext) -> None:
        context.started = time.perf_counter()
        self.started += 1
        self._running[id(context)] = context
        try:
            await self._run_in(context)
        finally:
            del self._running[id(context)]

    async def _run_in(self, context: TaskContext) -> None:
        delivery, task, message = context.delivery, context.task, context.message
        exception: BaseException | None = None
        value = None
        try:
            if self._hears_before:
                try:
                    pending = self.middleware.call("before_process", context)
                    if pending is not None:
                        await pending
                except SkipTask as skip:  # from a middleware only: the task's own is a failure
                    await self._skip(delivery, context, skip)
                    return
            try:
                await self.followups.started(task, message)
            except Exception as exc:  # a state report only: the task still runs
                log.warning("could not record %s[%s] as started: %s", task.name, message.id, exc)
            value = await self.executor.run(task, context.request, context.control)
            check_result(self.app, task, message, value)
        except Abandoned:
            await self._park(delivery, context)
            return
        except asyncio.CancelledError as cancelled:
            if being_cancelled():
                # The worker itself is cancelling (the channel closed: the broker has the
                # message back and redelivers it). A thread running the task would go on
                # beside that copy: stop it.
                if context.control is not None:
                    context.control.interrupt_hard()
                    if not task.is_async:
                        asyncio.get_running_loop().call_later(
                            HARD_GRACE, self._give_up_if_running, context
                        )
                raise
            exception = cancelled  # the task's own doing, like any other error
        except BaseException as exc:  # SystemExit, KeyboardInterrupt: the task's failure only
            exception = exc
        await self._conclude(delivery, context, exception, value)

    async def _skip(self, delivery: Delivery, context: TaskContext, skip: SkipTask) -> None:
        """Never run (revoked, or skipped by a middleware): REVOKED, and its chord told, before
        the ack; published again until confirmed, as any successor."""
        task, message = context.task, context.message
        log.info("task %s[%s] not run: %s", task.name, message.id, skip.reason)
        error = TaskRevokedError(skip.reason)
        if await self._settle(
            delivery, "revoked state", lambda: self._revoke(delivery, context, error)
        ):
            await self.middleware.emit("after_skip", context, skip.reason)

    async def _revoke(self, delivery: Delivery, context: TaskContext, error: BaseException) -> None:
        await self.followups.revoked(context.task, context.message, error)
        self.acks.ack(delivery)

    def _give_up_if_running(self, context: TaskContext) -> None:
        """A thread whose run the worker cancelled (its message went back to the broker)
        and which did not stop: only the end of its process can stop it running beside the
        copy the broker redelivers."""
        control = context.control
        if control is None or control.finished or self.recycle is None:
            return
        control.abandon()
        self.recycle(f"task {context.task.name}[{context.message.id}] did not stop after its "
                     "channel closed")  # fmt: skip

    async def _conclude(
        self,
        delivery: Delivery,
        context: TaskContext,
        exception: BaseException | None,
        value: object,
    ) -> None:
        verdict = decide_outcome(context.task, context.message, exception, value, clock=self.clock)
        if self._hears_after:
            outcome = Outcome(value, exception, retried=type(verdict) is RetryAt)
            pending = self.middleware.notify("after_process", context, outcome)
            if pending is not None:
                await pending
        if type(verdict) is Succeed:
            await self._succeed(delivery, context, verdict.value)
        elif type(verdict) is RetryAt:
            await self._retry(delivery, context, verdict)
        elif type(verdict) is DeadLetter:
            await self._dead_letter(delivery, verdict, context)
        elif type(verdict) is Revoked:
            error = verdict.error
            log.warning("task %s[%s] terminated: %s", *_who(context), error)
            await self._settle(
                delivery, "revoked state", lambda: self._revoke(delivery, context, error)
            )

    async def _park(self, delivery: Delivery, context: TaskContext) -> None:
        """The run did not stop at its hard limit and its thread was given up: its message
        must not run again (nor be retried or dead-lettered) while that thread can still
        run. A copy goes into the delay levels, due after this process is certainly gone
        (it is recycled, with a kernel timer as the backstop); whoever receives it then
        concludes the run as stopped (``decisions.Stopped``). Then the original is acked."""
        assert self.recycle is not None, "abandoning a run needs a way to recycle the process"
        who = f"{context.task.name}[{context.message.id}]"
        gone_by = self.recycle(f"task {who} did not stop at its hard time limit")
        eta = gone_by + PARK_MARGIN
        note = f"{context.control.hard_limit if context.control else '?'}s in {self.worker_name}"
        message = context.message
        if not await self._settle(
            delivery, "park", lambda: self.republish.park(delivery, message, eta, note)
        ):
            # The channel closed first: the broker has the message back and will run it
            # again while the stuck thread may still run. Only ending now prevents that.
            log.error("the parked copy of %s was not confirmed: ending this process now", who)
            if self.end_now is not None:
                self.end_now()

    async def _succeed(self, delivery: Delivery, context: TaskContext, value: object) -> None:
        task, message = context.task, context.message
        attempt = 0
        deadline = 0.0  # set at the first failure: the common case never needs the clock
        while True:
            try:
                await self.followups.succeeded(task, message, value)
                break
            except Exception as exc:
                if delivery.channel.is_closed:
                    # The broker has taken the delivery back and may already be running it
                    # elsewhere: sending its follow-ups from here too would only duplicate.
                    log.warning(
                        "follow-ups of %s[%s] lost with the channel: %s", *_who(context), exc
                    )
                    return
                attempt += 1
                now = time.monotonic()
                if attempt == 1:
                    deadline = now + self.app.followup_retry_for
                decision = decide_followup_failure(
                    exc, attempt=attempt, now=now, deadline=now if self.stopping() else deadline
                )
                if type(decision) is RetryFollowups:
                    log.warning(
                        "follow-ups of %s[%s] failed (%s: %s); retrying them in %.1fs",
                        *_who(context),
                        type(exc).__name__,
                        exc,
                        decision.after_s,
                    )
                    await asyncio.sleep(decision.after_s)
                    continue
                assert type(decision) is DeadLetter
                # Succeeded: keep its result; no FAILURE, no errbacks.
                await self._dead_letter(
                    delivery, DeadLetter(decision.reason, decision.error, message), context,
                    tell_failure=False,
                )  # fmt: skip
                return
        self.acks.ack(delivery)
        if log.isEnabledFor(logging.INFO):
            log.info("task %s[%s] succeeded in %.4fs", task.name, message.id, context.runtime)

    async def _retry(self, delivery: Delivery, context: TaskContext, retry: RetryAt) -> None:
        try:
            await self.followups.retrying(context.task, context.message, retry.cause)
        except Exception as exc:  # a state report only: the retry still goes out
            log.warning("could not record %s[%s] as retrying: %s", *_who(context), exc)
        message = context.message
        if await self._settle(
            delivery,
            "retry",
            lambda: self.republish.retry(delivery, message, retry.retries, retry.eta),
        ):
            await self.middleware.emit("after_retry", context, retry.cause, retry.eta)

    async def _dead_letter(
        self,
        delivery: Delivery,
        action: DeadLetter,
        context: TaskContext | None = None,
        *,
        tell_failure: bool = True,
    ) -> None:
        message = action.message
        if message is None and tell_failure:
            message = _decoded_or_none(delivery)  # e.g. the redelivery limit, judged undecoded
        task = self.app.tasks.get(message.task) if message is not None else None
        followup_error: BaseException | None = None
        if tell_failure and message is not None:
            try:
                await self.followups.failed(task, message, action.error)
            except Exception as exc:
                # The dead letter goes out all the same; why the errbacks (or the FAILURE
                # result, or the chord's error part) did not is written on it.
                followup_error = exc
                log.warning("follow-ups of failed %s[%s] not sent: %s", task, message.id, exc)
        decoded = message
        if await self._settle(
            delivery,
            "dead letter",
            lambda: self.republish.dead_letter(
                delivery, action.reason, action.error, decoded, followup_error=followup_error
            ),
        ):
            queue = self.republish.dead_letter_queue(delivery)
            await self.middleware.emit(
                "after_dead_letter",
                DeadLettered(delivery, action.reason, action.error, queue, message, task),
            )


def _decoded_or_none(delivery: Delivery) -> TaskMessage | None:
    try:
        return decode_task(delivery.envelope)
    except MessageError:
        return None


def _who(context: TaskContext) -> tuple[str, str]:
    return context.task.name, context.message.id
