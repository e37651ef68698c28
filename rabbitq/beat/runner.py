"""``rabbitq beat``: one process of a highly available scheduler.

Run as many as you like; each loops through the same steps:

1. connect (retrying with backoff while the broker is away);
2. try to take the lease (``BeatLink.try_to_lead``); standbys retry every ``retry_interval``;
3. as leader: read the state, then fire due ticks, record them, sleep until the next one.

Anything that breaks the connection sends the process back to step 1 as a standby, and the
broker deletes the lease so another beat takes over.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable

from rabbitq.amqp.beat_link import CONNECTION_ERRORS, BeatLink
from rabbitq.app import App
from rabbitq.beat.planner import Planner, Tick
from rabbitq.beat.schedules import PeriodicEntry, format_time
from rabbitq.canvas import Signature
from rabbitq.dead_letters import dead_letter_envelope
from rabbitq.errors import BrokerConnectionError, PublishError, RabbitqError, UnroutableError
from rabbitq.message_size import refuse_oversized
from rabbitq.prepare import Context, PreparedMessage

log = logging.getLogger("rabbitq.beat")

# Carried by every tick: which entry, which scheduled time, which beat sent it.
BEAT_HEADER = "rabbitq_beat"
REASON_UNROUTABLE = "unroutable"
# The leader rewrites its state at least this often, so status readers see it is alive.
STATE_REFRESH = dt.timedelta(seconds=30)
# The longest the leader sleeps at once, so a stop request is noticed quickly.
MAX_NAP = 0.5
RECONNECT_BACKOFF_MAX = 5.0

Clock = Callable[[], dt.datetime]


def wall_clock() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Beat:
    def __init__(
        self,
        app: App,
        entries: Iterable[PeriodicEntry],
        *,
        group: str = "",
        retry_interval: float = 1.0,
        heartbeat: int = 2,
        identity: str | None = None,
        clock: Clock = wall_clock,
    ) -> None:
        self.app = app
        self.entries = list(entries)
        self.group = group
        self.retry_interval = retry_interval
        self.heartbeat = heartbeat
        self.identity = identity or default_identity()
        self.clock = clock
        self.stopping = threading.Event()
        # One message per entry, built now so that a bad entry fails at start, not at 3 a.m.;
        # they also tell which queues a leader must make sure exist.
        now = self.clock()
        self.queues = {self.message(Tick(entry, now)).route.queue for entry in self.entries}

    def stop(self) -> None:
        self.stopping.set()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            try:
                link = BeatLink(
                    self.app.broker_url,
                    identity=self.identity,
                    group=self.group,
                    heartbeat=self.heartbeat,
                )
            except BrokerConnectionError as exc:
                log.warning("%s; retrying in %.1f s", exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, RECONNECT_BACKOFF_MAX)
                continue
            backoff = 0.5
            try:
                self._serve(link)
            except (*CONNECTION_ERRORS, BrokerConnectionError) as exc:
                log.warning("beat lost its connection (%s: %s)", type(exc).__name__, exc)
            finally:
                link.close()
        log.info("beat %s stopped", self.identity)

    def _serve(self, link: BeatLink) -> None:
        waiting_logged = False
        while not self.stopping.is_set():
            if link.try_to_lead():
                self._lead(link)
                return
            if not waiting_logged:
                log.info("beat %s is standing by: another beat leads", self.identity)
                waiting_logged = True
            self._nap(link, self.retry_interval)

    def _lead(self, link: BeatLink) -> None:
        state = link.read_state()
        planner = Planner(self.entries, state, self.clock(), self.identity)
        previous = f" after {state.leader}" if state is not None and state.leader else ""
        log.info("beat %s leads%s (%d entries)", self.identity, previous, len(self.entries))
        for queue in self.queues:
            self.app.ensure_queue(queue)
        written = self.clock()
        while not self.stopping.is_set():
            now = self.clock()
            ticks = planner.due(now)
            for tick in ticks:
                self._fire(link, tick)
            planner.commit()
            if planner.dirty or now - written >= STATE_REFRESH:
                link.write_state(planner.snapshot(now))
                written = now
            if ticks:
                continue  # more may have fallen due while sending
            wait = (
                min(planner.next_wake(), written + STATE_REFRESH) - self.clock()
            ).total_seconds()
            self._nap(link, wait)
        log.info("beat %s gives up the lead", self.identity)

    def _nap(self, link: BeatLink, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            link.sleep(min(left, MAX_NAP))

    # -- one tick ------------------------------------------------------------------------------

    def message(self, tick: Tick) -> PreparedMessage:
        entry_sig = tick.entry.signature
        sig = Signature(
            entry_sig.task,
            entry_sig.args,
            entry_sig.kwargs,
            {**entry_sig.options, "task_id": tick.id},
            app=self.app,
        )
        beat = {"entry": tick.entry.name, "scheduled": format_time(tick.scheduled)}
        context = Context(headers={BEAT_HEADER: {**beat, "beat": self.identity}})
        prepared = self.app.prepare_signature(sig, context)
        # The beat sends on its own link, not through App.publish: the App's checks here.
        refuse_oversized([prepared], self.app.max_message_size)
        if self.app.signer is not None:
            self.app.signer.sign(prepared.envelope)
        return prepared

    def _fire(self, link: BeatLink, tick: Tick) -> None:
        try:
            prepared = self.message(tick)
        except RabbitqError as exc:
            log.error("periodic entry %r: cannot build tick %s: %s", tick.entry.name, tick.id, exc)
            return
        try:
            link.publish(prepared.exchange, prepared.routing_key, prepared.envelope)
        except UnroutableError as exc:
            # Not lost: kept with the reason, for ``rabbitq dead`` to inspect and replay.
            log.error("tick %s: %s; dead-lettered to %s", tick.id, exc, link.dead_queue)
            link.dead_letter(
                dead_letter_envelope(
                    prepared.envelope,
                    reason=REASON_UNROUTABLE,
                    queue=prepared.route.queue or "",
                    routing_key=prepared.routing_key,
                    exchange=prepared.exchange,
                    exception=exc,
                )
            )
            return
        except PublishError as exc:
            # A nack: the broker could not store it. Drop the lease so a fresh connection (ours
            # or another beat's) retries this tick from the recorded state.
            raise BrokerConnectionError(f"tick {tick.id} was refused: {exc}") from exc
        log.info("sent %s (%s)", tick.id, prepared.envelope.headers.get("task", "?"))
