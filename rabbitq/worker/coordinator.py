"""The chord coordinator: the single active consumer of ``rabbitq.chords``.

Every worker subscribes; RabbitMQ delivers to one at a time (``x-single-active-consumer``)
and hands over to the next when that one's channel closes. The tallies (``chords.py``) are
rebuilt from the parts RabbitMQ redelivers, so a coordinator killed at any point loses no
chord: its unacked parts return to the queue, and so do the ledger records that say which
chords are already finished.

All handling is serialised by one lock: parts of one chord must never interleave with that
chord's completion. A failure touches only its own chord: the chord waits (its parts held)
and is tried again with backoff, or goes to ``rabbitq.chords.dead``; every other chord goes
on. After a reconnect every tally is dropped (its deliveries belong to the dead channel and
will be redelivered) — acking a fresh copy as a "duplicate" of a part held only on a dead
channel would lose it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from rabbitq import dead_letters
from rabbitq.amqp.contract import AsyncPublisher
from rabbitq.amqp.declare import declare_chord_queues
from rabbitq.app import App
from rabbitq.canvas import signature
from rabbitq.chords import (
    CHORD_DEAD_QUEUE,
    CHORD_QUEUE,
    REASON_UNPUBLISHABLE,
    ChordLedger,
    ChordPart,
    ChordTally,
    FinishedChords,
    decode_record,
    ledger_envelope,
    part_envelope,
    returned,
)
from rabbitq.compile import compile_signature
from rabbitq.errors import MessageError, TaskError
from rabbitq.message import Envelope, envelope_from_properties
from rabbitq.prepare import Context
from rabbitq.results import meta as results
from rabbitq.worker.decisions import is_permanent
from rabbitq.worker.followups import Followups, can_store

log = logging.getLogger("rabbitq.chords")

FOLD_AFTER = 600.0  # seconds: well inside RabbitMQ's default consumer_timeout (30 min)
FOLD_PARTS = 1000  # held parts of one chord before they are folded into one
TICK = 1.0  # seconds between looks at held parts (folds, retries, compaction)

Delivery = tuple[int, AbstractIncomingMessage]  # (channel generation, message)


@dataclass
class PendingDeadLetter:
    """An undecodable part whose dead letter is not confirmed yet: held until it is."""

    delivery: Delivery
    dead: Envelope


class ChordCoordinator:
    def __init__(
        self,
        app: App,
        connection: AbstractRobustConnection | None,
        publisher: AsyncPublisher,
        followups: Followups,
        *,
        fold_after: float = FOLD_AFTER,
        fold_parts: int = FOLD_PARTS,
    ) -> None:
        self.app = app
        self.connection = connection
        self.publisher = publisher
        self.followups = followups  # the body's failure is reported as a task's would be
        self.fold_after = fold_after
        self.fold_parts = fold_parts
        self.completed = 0
        self.folds = 0
        self.dead_lettered = 0
        self._tallies: dict[str, ChordTally] = {}
        self._finished = FinishedChords()
        self._undecodable: list[PendingDeadLetter] = []
        self._lock = asyncio.Lock()
        self._generation = 0
        self._channel: AbstractRobustChannel | None = None
        self._consumer_tag: str | None = None
        self._stopping = False
        self._ticker: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Chords this coordinator tallies now (0 unless it is the queue's active consumer)."""
        return len(self._tallies)

    async def start(self) -> None:
        assert self.connection is not None, "consuming rabbitq.chords needs a connection"
        await declare_chord_queues(self.connection)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=0)  # parts are held until their chord completes
        # aio-pika reopens the channel after a reconnect but does not consume on it again.
        channel.reopen_callbacks.add(self._consume_again)
        await self._consume(channel)
        self._channel = channel
        self.begin_ticking()

    def begin_ticking(self) -> None:
        """Look at held parts every tick (folds, retries, compaction); whatever consumes
        ``rabbitq.chords`` hands each message to ``receive``."""
        self._ticker = asyncio.create_task(self._tick())

    async def _consume(self, channel: AbstractRobustChannel) -> None:
        queue = await channel.get_queue(CHORD_QUEUE, ensure=False)
        self._consumer_tag = await queue.consume(self.receive)

    async def _consume_again(self, channel: AbstractRobustChannel | None) -> None:
        async with self._lock:
            self._forget_held()  # before anything arrives on the new channel
        if channel is not None and not self._stopping:
            await self._consume(channel)

    async def stop(self) -> None:
        self._stopping = True
        if self._channel is None:
            if self._ticker is not None:
                self._ticker.cancel()
            return
        # What is being settled finishes first, the ticker's work too: a chord body, a fold or
        # a dead letter already published must have its parts acked, not handed back (a
        # successor would publish it again). So the lock is taken before the ticker is
        # cancelled, which then only ever stops between looks.
        try:
            await asyncio.wait_for(self._lock.acquire(), 5.0)
            locked = True
        except TimeoutError:
            locked = False
        if self._ticker is not None:
            self._ticker.cancel()
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), 5.0)  # unacked parts go back
        finally:
            if locked:
                self._lock.release()

    def _forget_held(self) -> None:
        # Everything held was on the channel that closed: RabbitMQ redelivers it. Which chords
        # finished stays true (and the ledger records come back too).
        self._generation += 1
        self._tallies.clear()
        self._finished.replaced()
        self._undecodable.clear()

    # -- what arrives -----------------------------------------------------------------------

    async def receive(self, message: AbstractIncomingMessage) -> None:
        async with self._lock:
            delivery: Delivery = (self._generation, message)
            envelope = envelope_from_properties(message, message.body)
            try:
                self._check_signature(envelope)
                record = decode_record(envelope)
            except MessageError as exc:
                dead = dead_letters.dead_letter_envelope(
                    envelope,
                    reason=exc.reason,
                    queue=CHORD_QUEUE,
                    routing_key=CHORD_QUEUE,
                    exchange="",
                    exception=exc,
                    attempts=None,
                )
                self._undecodable.append(PendingDeadLetter(delivery, dead))
                log.warning("%s chord part goes to %s: %s", exc.reason, CHORD_DEAD_QUEUE, exc)
                await self._dead_letter_undecodable()
                return
            came_back = returned(message.headers)
            if isinstance(record, ChordLedger):
                await self._remember(record, delivery, came_back)
            else:
                await self._offer(record, delivery, came_back)

    def _check_signature(self, envelope: Envelope) -> None:
        """A signing App's chords take only signed parts: a forged part could complete a
        chord early or run its callback with made-up results."""
        signer = self.app.signer
        if signer is not None:
            error = signer.check(envelope)
            if error is not None:
                raise error

    def _signed(self, envelope: Envelope) -> Envelope:
        """Ledgers and folded parts the coordinator writes are signed like the workers'."""
        signer = self.app.signer
        return envelope if signer is None else signer.sign(envelope)

    async def _remember(self, ledger: ChordLedger, delivery: Delivery, came_back: bool) -> None:
        self._finished.hold(ledger, delivery, returned=came_back)
        for chord_id in ledger.done:
            # Parts taken before the ledger came back (a takeover redelivers in any order)
            # belong to a finished chord: late duplicates.
            tally = self._tallies.pop(chord_id, None)
            if tally is not None:
                await self._ack_all(tally.held)
                log.info("chord %s is finished: %d late part(s) dropped", chord_id, len(tally.held))

    async def _offer(self, part: ChordPart, delivery: Delivery, came_back: bool) -> None:
        if part.chord_id in self._finished:
            await delivery[1].ack()
            log.info("chord %s is finished: late part dropped", part.chord_id)
            return
        tally = self._tallies.get(part.chord_id)
        if tally is None:
            tally = self._tallies[part.chord_id] = ChordTally(part)
        if not tally.offer(part, delivery, returned=came_back):
            await delivery[1].ack()  # adds nothing we do not already hold
            return
        if tally.waiting_to_retry:
            return  # settling failed before: the ticker tries again when due
        if tally.settles:
            await self._settle(tally)
        elif len(tally.held) >= self.fold_parts:
            await self._try_fold(tally)

    # -- settling a chord -------------------------------------------------------------------

    async def _settle(self, tally: ChordTally) -> None:
        """Publish the chord's outcome and its completion record, then ack its parts. A
        failure keeps the parts held and the chord waits to be tried again, or, when it
        cannot pass, goes to the dead letters."""
        if tally.unpublishable is None:
            try:
                await self._send_outcome(tally)
                await self._record_finished(tally)
                return
            except Exception as exc:
                tally.settling_failed(exc, permanent=is_permanent(exc))
                if tally.unpublishable is None:
                    log.warning(
                        "chord %s not settled (attempt %d), retrying in %.1fs: %s",
                        tally.chord_id,
                        tally.attempts,
                        (tally.retry_at or 0.0) - time.monotonic(),
                        exc,
                    )
                    return
                log.error("chord %s cannot be settled: %r", tally.chord_id, exc)
        try:
            await self._dead_letter(tally)
        except Exception as exc:
            tally.settling_failed(exc, permanent=True)  # already going to the dead letters
            log.error(
                "chord %s: its dead letter is not stored (%r); parts stay held, retrying",
                tally.chord_id,
                exc,
            )

    async def _send_outcome(self, tally: ChordTally) -> None:
        if tally.outcome_sent:
            return
        if tally.error is not None:
            await self._send_failure(tally)
        else:
            body = signature(tally.body, self.app)
            context = Context(parent_result=(tally.ordered_results(),), parent_id=tally.chord_id)
            compiled = compile_signature(body, context, self.app.prepare_signature)
            await self.app.apublish_prepared(compiled.messages, self.publisher)
            log.info(
                "chord %s complete: body %s published with %d results",
                tally.chord_id,
                body.task,
                tally.size,
            )
        tally.outcome_sent = True

    async def _send_failure(self, tally: ChordTally) -> None:
        error = dict(tally.error or {})
        member = error.get("index")
        body = signature(tally.body, self.app)
        body_id = body.id or tally.chord_id
        reason = TaskError(
            "ChordError",
            f"chord member {member} ({error.get('task_id')}) failed: "
            f"{error.get('exc_type')}: {error.get('exc_message')}",
            error.get("traceback"),
            task_id=body_id,
        )
        reply_to = body.options.get("reply_to")
        if can_store(self.app, reply_to):
            await self.followups.store(
                results.failure(body_id, reason, error.get("traceback")), reply_to
            )
        info = {
            **error,
            "exc_type": "ChordError",
            "task_id": body_id,
            "exc_message": reason.exc_message,
        }
        outgoing = self.followups.errback_messages(
            body.options.get("link_error") or [], body_id, info, Context(parent_id=tally.chord_id)
        )
        if outgoing:
            await self.app.apublish_prepared(outgoing, self.publisher)
        log.warning("chord %s failed: %s", tally.chord_id, info["exc_message"])

    async def _record_finished(self, tally: ChordTally) -> None:
        # The record is confirmed before the parts are acked: a successor that takes over in
        # between receives both, and drops the parts as duplicates of a finished chord.
        record = self._signed(ledger_envelope(ChordLedger([tally.chord_id]), self.app.serializer))
        await self.publisher.publish(CHORD_QUEUE, record, exchange="")
        self._finished.add(tally.chord_id)
        self._tallies.pop(tally.chord_id, None)
        await self._ack_all(tally.held)
        self.completed += 1

    async def _dead_letter(self, tally: ChordTally) -> None:
        envelope = part_envelope(tally.dead_part(), self.app.serializer)
        dead = dead_letters.dead_letter_envelope(
            envelope,
            reason=REASON_UNPUBLISHABLE,
            queue=CHORD_QUEUE,
            routing_key=CHORD_QUEUE,
            exchange="",
            exception=tally.unpublishable,
            attempts=tally.attempts,
        )
        await self.publisher.publish(CHORD_DEAD_QUEUE, dead, exchange="")
        # Not recorded as finished: replaying the dead letter must complete the chord.
        self._tallies.pop(tally.chord_id, None)
        await self._ack_all(tally.held)
        self.dead_lettered += 1
        log.error(
            "chord %s dead-lettered to %s (%s): %r",
            tally.chord_id,
            CHORD_DEAD_QUEUE,
            REASON_UNPUBLISHABLE,
            tally.unpublishable,
        )

    async def _dead_letter_undecodable(self) -> None:
        while self._undecodable:
            pending = self._undecodable[0]
            try:
                await self.publisher.publish(CHORD_DEAD_QUEUE, pending.dead, exchange="")
            except Exception as exc:
                # Held, not nacked: a nack would count as a return on a quorum queue. The
                # ticker tries again.
                log.error("undecodable chord part not dead-lettered yet (%r); held", exc)
                return
            self._undecodable.pop(0)
            await self._ack_all([pending.delivery])

    # -- folds and compaction ---------------------------------------------------------------

    async def _try_fold(self, tally: ChordTally) -> None:
        try:
            await self._fold(tally)
        except Exception as exc:
            # The parts stay held (still in RabbitMQ); the ticker folds them at its next look.
            log.error("could not fold chord %s (%r); will retry", tally.chord_id, exc)

    async def _fold(self, tally: ChordTally) -> None:
        part = tally.fold()
        await self.publisher.publish(
            CHORD_QUEUE, self._signed(part_envelope(part, self.app.serializer)), exchange=""
        )
        await self._ack_all(tally.folded())
        self.folds += 1
        log.info("chord %s: folded %d results into one part", tally.chord_id, len(part.results))

    async def _compact_ledger(self) -> None:
        ledger = self._finished.compacted()
        await self.publisher.publish(
            CHORD_QUEUE, self._signed(ledger_envelope(ledger, self.app.serializer)), exchange=""
        )
        await self._ack_all(self._finished.replaced())
        log.info("ledger of %d finished chords compacted into one record", len(ledger.done))

    async def _ack_all(self, held: list[Any]) -> None:
        for generation, message in held:
            if generation == self._generation:
                await message.ack()

    async def _tick(self) -> None:
        period = max(0.05, min(self.fold_after / 4, TICK))
        while True:
            await asyncio.sleep(period)
            async with self._lock:
                try:
                    await self._look_at_held(time.monotonic())
                except Exception as exc:
                    # An ack on a channel that has just closed: what it held returns to the
                    # queue and the reopen forgets it. The ticker itself must go on.
                    log.warning("chord coordinator: %r; held parts will be redelivered", exc)

    async def _look_at_held(self, now: float) -> None:
        await self._dead_letter_undecodable()
        for tally in list(self._tallies.values()):
            if tally.due(now):
                await self._settle(tally)
            if self._tallies.get(tally.chord_id) is not tally or not tally.held:
                continue
            if tally.worn or tally.held_for(now) >= self.fold_after:
                await self._try_fold(tally)
        if self._finished.needs_compacting(now, self.fold_after):
            try:
                await self._compact_ledger()
            except Exception as exc:
                # The records stay held: what they remember is still in RabbitMQ.
                log.error("could not compact the ledger of finished chords (%r); will retry", exc)
