"""The chord coordinator: the single active consumer of ``rabbitq.chords``.

Every worker subscribes; RabbitMQ delivers to one at a time (``x-single-active-consumer``)
and hands over to the next when that one's channel closes. The tallies (``chords.py``) are
rebuilt from the parts RabbitMQ redelivers, so a coordinator killed at any point loses no
chord: its unacked parts return to the queue.

All handling is serialised by one lock: parts of one chord must never interleave with that
chord's completion. After a reconnect every tally is dropped (its deliveries belong to the
dead channel and will be redelivered) — acking a fresh copy as a "duplicate" of a part held
only on a dead channel would lose it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from rabbitq import dead_letters
from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.declare import declare_chord_queues
from rabbitq.app import App
from rabbitq.canvas import signature
from rabbitq.chords import CHORD_DEAD_QUEUE, CHORD_QUEUE, ChordTally, decode_part, part_envelope
from rabbitq.compile import Context, compile_signature
from rabbitq.errors import MessageError, TaskError
from rabbitq.message import envelope_from_properties
from rabbitq.results import meta as results
from rabbitq.worker.followups import Followups, can_store

log = logging.getLogger("rabbitq.chords")

FOLD_AFTER = 600.0  # seconds: well inside RabbitMQ's default consumer_timeout (30 min)
FOLD_PARTS = 1000  # held parts of one chord before they are folded into one
REMEMBER_DONE = 100_000  # chord ids whose late duplicates are recognised and dropped


class ChordCoordinator:
    def __init__(
        self,
        app: App,
        connection: AbstractRobustConnection,
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
        self._tallies: dict[str, ChordTally] = {}
        self._done: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = asyncio.Lock()
        self._generation = 0
        self._channel: AbstractRobustChannel | None = None
        self._consumer_tag: str | None = None
        self._fold_timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await declare_chord_queues(self.connection)
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=0)  # parts are held until their chord completes
        channel.reopen_callbacks.add(self._forget_tallies)
        queue = await channel.get_queue(CHORD_QUEUE, ensure=False)
        self._consumer_tag = await queue.consume(self._on_message)
        self._channel = channel
        self._fold_timer = asyncio.create_task(self._fold_old_parts())

    async def stop(self) -> None:
        if self._fold_timer is not None:
            self._fold_timer.cancel()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), 5.0)  # unacked parts go back

    def _forget_tallies(self, *_args: Any) -> None:
        self._generation += 1
        self._tallies.clear()

    # -- parts ------------------------------------------------------------------------------

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with self._lock:
            try:
                await self._take(message)
            except Exception:
                # A publish failed (broker trouble): put the part back and try again later.
                log.exception("chord part not handled; it goes back to the queue")
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
                self._forget_tallies()
                await asyncio.sleep(1.0)

    async def _take(self, message: AbstractIncomingMessage) -> None:
        envelope = envelope_from_properties(message, message.body)
        try:
            part = decode_part(envelope)
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
            await self.publisher.publish(CHORD_DEAD_QUEUE, dead, exchange="")
            await message.ack()
            log.warning("undecodable chord part dead-lettered to %s: %s", CHORD_DEAD_QUEUE, exc)
            return
        if part.chord_id in self._done:
            await message.ack()  # a late duplicate of a finished chord
            return
        tally = self._tallies.get(part.chord_id)
        if tally is None:
            tally = self._tallies[part.chord_id] = ChordTally(part)
        if not tally.offer(part, (self._generation, message)):
            await message.ack()  # adds nothing we do not already hold
            return
        if tally.error is not None:
            await self._fail(tally)
        elif tally.complete:
            await self._finish(tally)
        elif len(tally.held) >= self.fold_parts:
            await self._fold(tally)

    async def _finish(self, tally: ChordTally) -> None:
        body = signature(tally.body, self.app)
        context = Context(parent_result=(tally.ordered_results(),), parent_id=tally.chord_id)
        compiled = compile_signature(body, context, self.app.prepare_signature)
        await self.app.apublish_prepared(compiled.messages, self.publisher)
        await self._settle(tally)
        self.completed += 1
        log.info(
            "chord %s complete: body %s published with %d results",
            tally.chord_id,
            body.task,
            tally.size,
        )

    async def _fail(self, tally: ChordTally) -> None:
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
        await self._settle(tally)
        log.warning("chord %s failed: %s", tally.chord_id, info["exc_message"])

    async def _fold(self, tally: ChordTally) -> None:
        part = tally.fold()
        await self.publisher.publish(
            CHORD_QUEUE, part_envelope(part, self.app.serializer), exchange=""
        )
        await self._ack_all(tally.folded())
        self.folds += 1
        log.info("chord %s: folded %d results into one part", tally.chord_id, len(part.results))

    async def _settle(self, tally: ChordTally) -> None:
        self._tallies.pop(tally.chord_id, None)
        self._done[tally.chord_id] = None
        while len(self._done) > REMEMBER_DONE:
            self._done.popitem(last=False)
        await self._ack_all(tally.held)

    async def _ack_all(self, held: list[Any]) -> None:
        for generation, message in held:
            if generation == self._generation:
                await message.ack()

    async def _fold_old_parts(self) -> None:
        period = max(0.05, min(self.fold_after / 4, 30.0))
        while True:
            await asyncio.sleep(period)
            async with self._lock:
                now = time.monotonic()
                for tally in list(self._tallies.values()):
                    if tally.held and tally.held_for(now) >= self.fold_after:
                        try:
                            await self._fold(tally)
                        except Exception:
                            log.exception("could not fold chord %s; will retry", tally.chord_id)
