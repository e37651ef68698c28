"""Chords without a result store: the parts, and one chord's tally. Pure: no I/O.

Every header member of a chord carries ``rabbitq_chord`` = ``{id, index, size, body}``. The
worker that finishes one publishes a *part* to the durable queue ``rabbitq.chords``:

    headers: rabbitq_chord_id
    body:    {"chord": id, "size": n, "body": <body signature>,
              "results": [[index, value], ...], "error": null | {...}, "fold": null | id}

The queue has a single active consumer (any worker may be it: the *coordinator*). It holds
each chord's parts unacked while the chord is incomplete, so they stay in RabbitMQ, not only
in its memory; when every index has arrived it publishes the body with the results in
order, waits for the confirm, and only then acks the parts. If it dies, its unacked parts
return to the queue and the next active consumer rebuilds the tallies from them.

Duplicates (a member redelivered after a crash sends its part again) are recognised by index
and acked at once: they can neither fire the body early nor twice. A part held too long
(RabbitMQ's ``consumer_timeout``, 30 minutes by default, would close the channel) or too
many parts of one chord are *folded*: the coordinator publishes one part carrying every
result it holds (its ``fold`` id marks it as expected), waits for the confirm, then acks the
parts it replaces.

A part that comes back (its ``x-delivery-count``, set by a quorum queue, is 1 or more: a
coordinator failed over while holding it) is folded too, at once: the fold is a fresh message
whose count starts again, so RabbitMQ 4.x's delivery-limit on quorum queues (20 by default,
and every return counts) is never reached by parts that merely outlived coordinators.

**Completion records.** After a chord's body (or, for a failed chord, its errbacks) is
confirmed, the coordinator publishes a *ledger* record ``{"done": [chord id]}`` into the same
queue, waits for the confirm, and only then acks the parts. It holds ledger records unacked,
as it holds parts, and now and then compacts them into one record naming the last
``REMEMBER_DONE`` finished chords. A coordinator that takes over receives the ledger with the
held parts and so knows which chords are finished: a late duplicate part (its member
redelivered after a crash) is acked as such instead of starting a tally that never completes.

**Settling fails.** A chord whose body cannot be published is retried alone, with backoff,
when the failure may pass (broker or Redis unreachable, a full queue refusing the message);
when it cannot pass (unroutable, malformed body signature, a refusal by the broker), one part
carrying everything the chord holds goes to ``rabbitq.chords.dead`` with reason
``chord-unpublishable``, and the held parts are acked once that is confirmed. Which failures
cannot pass is decided as for a task's follow-ups (``worker/decisions.is_permanent``).
Replaying the dead letter (``rabbitq dead replay``) completes the chord.
"""

from __future__ import annotations

import collections
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rabbitq.errors import MessageDecodeError
from rabbitq.message import Envelope
from rabbitq.redelivery import QUORUM_DELIVERY_COUNT_HEADER
from rabbitq.serializers import Serializer, serializer_for_content_type

CHORD_QUEUE = "rabbitq.chords"
CHORD_DEAD_QUEUE = "rabbitq.chords.dead"
CHORD_ID_HEADER = "rabbitq_chord_id"
CHORD_LEDGER_HEADER = "rabbitq_chord_ledger"

# Dead-letter reason: the chord's body (or its failure report) cannot be published, for good.
REASON_UNPUBLISHABLE = "chord-unpublishable"

REMEMBER_DONE = 100_000  # finished chords whose late duplicates are recognised and acked
COMPACT_AT = 100  # ledger records held before they are compacted (or a tenth of REMEMBER_DONE)
RETRY_FIRST = 0.5  # seconds before a chord's settling is tried again, doubling
RETRY_MAX = 30.0


@dataclass
class ChordPart:
    chord_id: str
    size: int
    body: dict[str, Any]
    results: list[tuple[int, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None  # index, task_id, exc_type, exc_message, traceback
    fold: str | None = None


def part_envelope(part: ChordPart, serializer: Serializer) -> Envelope:
    body = serializer.dumps(
        {
            "chord": part.chord_id,
            "size": part.size,
            "body": part.body,
            "results": [[index, value] for index, value in part.results],
            "error": part.error,
            "fold": part.fold,
        }
    )
    return Envelope(
        body=body,
        headers={CHORD_ID_HEADER: part.chord_id},
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        message_id=str(uuid.uuid4()),
    )


@dataclass
class ChordLedger:
    """Chords known to be finished: any part of theirs that still arrives is a duplicate."""

    done: list[str]


def ledger_envelope(ledger: ChordLedger, serializer: Serializer) -> Envelope:
    return Envelope(
        body=serializer.dumps({"done": list(ledger.done)}),
        headers={CHORD_LEDGER_HEADER: True},
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        message_id=str(uuid.uuid4()),
    )


def decode_record(envelope: Envelope) -> ChordPart | ChordLedger:
    """What ``rabbitq.chords`` holds: a part, or a ledger of finished chords."""
    data = _loads(envelope)
    if "done" in data and "chord" not in data:
        done = data["done"]
        if not isinstance(done, list) or not all(isinstance(i, str) for i in done):
            raise MessageDecodeError("chord ledger must list chord ids")
        return ChordLedger(done)
    return _part_from(data)


def decode_part(envelope: Envelope) -> ChordPart:
    return _part_from(_loads(envelope))


def _loads(envelope: Envelope) -> dict[str, Any]:
    serializer = serializer_for_content_type(envelope.content_type)
    try:
        data = serializer.loads(envelope.body)
    except Exception as exc:
        raise MessageDecodeError(f"chord part is not valid {serializer.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise MessageDecodeError("chord part must be a mapping")
    return data


def _part_from(data: dict[str, Any]) -> ChordPart:
    chord_id, size, body = data.get("chord"), data.get("size"), data.get("body")
    results = data.get("results") or []
    if not isinstance(chord_id, str) or not isinstance(size, int) or size < 1:
        raise MessageDecodeError("chord part lacks its chord id or size")
    if not isinstance(body, dict) or not isinstance(results, list):
        raise MessageDecodeError("chord part lacks its body signature or results")
    pairs: list[tuple[int, Any]] = []
    for item in results:
        if not isinstance(item, list | tuple) or len(item) != 2 or not isinstance(item[0], int):
            raise MessageDecodeError(f"chord result must be [index, value], got {item!r}")
        if not 0 <= item[0] < size:
            raise MessageDecodeError(f"chord result index {item[0]} outside 0..{size - 1}")
        pairs.append((item[0], item[1]))
    error = data.get("error")
    fold = data.get("fold")
    return ChordPart(
        chord_id,
        size,
        body,
        pairs,
        error if isinstance(error, dict) else None,
        fold if isinstance(fold, str) else None,
    )


def returned(headers: dict[str, Any] | None) -> bool:
    """This delivery came back to the queue before (a quorum queue counts it)."""
    count = (headers or {}).get(QUORUM_DELIVERY_COUNT_HEADER)
    return isinstance(count, int) and not isinstance(count, bool) and count >= 1


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt to settle a chord."""
    return float(min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, attempts - 1)))


class ChordTally:
    """What the coordinator knows of one chord, and which deliveries hold that knowledge."""

    def __init__(self, part: ChordPart) -> None:
        self.chord_id = part.chord_id
        self.size = part.size
        self.body = part.body
        self.results: dict[int, Any] = {}
        self.error: dict[str, Any] | None = None
        self.held: list[Any] = []  # deliveries to ack once the chord is done or folded
        self.held_since: float | None = None
        self.expected_fold: str | None = None
        self.worn = False  # holds a delivery that came back: fold it before a limit nears
        # Settling (publishing the body, or the failure's errbacks and result):
        self.outcome_sent = False  # confirmed; only the completion record remains
        self.attempts = 0
        self.retry_at: float | None = None
        self.unpublishable: BaseException | None = None  # why it goes to the dead letters

    def offer(self, part: ChordPart, delivery: Any, *, returned: bool = False) -> bool:
        """Take a part. False: it adds nothing (a duplicate), so ack it now."""
        new = [(i, v) for i, v in part.results if i not in self.results]
        takes_error = part.error is not None and self.error is None
        expected = part.fold is not None and part.fold == self.expected_fold
        if not new and not takes_error and not expected:
            return False
        self.results.update(new)
        if takes_error:
            self.error = part.error
        self.held.append(delivery)
        self.worn = self.worn or returned
        if self.held_since is None:
            self.held_since = time.monotonic()
        return True

    @property
    def complete(self) -> bool:
        return len(self.results) == self.size

    @property
    def settles(self) -> bool:
        """Every result is in, or one member failed: the chord is decided."""
        return self.complete or self.error is not None

    @property
    def waiting_to_retry(self) -> bool:
        return self.retry_at is not None

    def due(self, now: float) -> bool:
        return self.retry_at is not None and now >= self.retry_at

    def settling_failed(
        self, exc: BaseException, *, permanent: bool, now: float | None = None
    ) -> None:
        """An attempt to settle failed; the next waits longer. A ``permanent`` failure (the
        same publish would fail the same way) sends the chord to the dead letters from now on,
        unless its outcome is already out: then only the completion record is missing, and a
        dead letter, replayed, would run the body twice."""
        if permanent and self.unpublishable is None and not self.outcome_sent:
            self.unpublishable = exc
        self.attempts += 1
        self.retry_at = (now if now is not None else time.monotonic()) + retry_delay(self.attempts)

    def dead_part(self) -> ChordPart:
        """One part carrying everything held, for the dead letters: replayed, it is taken
        as new results (no ``fold`` id), so it completes the chord."""
        return ChordPart(
            self.chord_id, self.size, self.body, sorted(self.results.items()), self.error
        )

    def ordered_results(self) -> list[Any]:
        return [self.results[index] for index in range(self.size)]

    def held_for(self, now: float | None = None) -> float:
        if self.held_since is None:
            return 0.0
        return (now if now is not None else time.monotonic()) - self.held_since

    def fold(self) -> ChordPart:
        """One part standing for everything held; call ``folded`` once it is confirmed."""
        self.expected_fold = str(uuid.uuid4())
        return ChordPart(
            self.chord_id,
            self.size,
            self.body,
            sorted(self.results.items()),
            self.error,
            self.expected_fold,
        )

    def folded(self) -> list[Any]:
        """The deliveries the fold replaced (to ack); the tally holds none until it returns."""
        replaced, self.held, self.held_since, self.worn = self.held, [], None, False
        return replaced


class FinishedChords:
    """The chords known to be finished, and the ledger deliveries that record them.

    The deliveries are held unacked (the record lives in the broker, not only here) until
    ``compacted()`` replaces them with one record of every remembered id.
    """

    def __init__(self, limit: int = REMEMBER_DONE) -> None:
        self.limit = limit
        self.ids: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.held: list[Any] = []
        self.held_since: float | None = None
        self.worn = False

    def __contains__(self, chord_id: str) -> bool:
        return chord_id in self.ids

    def add(self, chord_id: str) -> None:
        self.ids[chord_id] = None
        while len(self.ids) > self.limit:
            self.ids.popitem(last=False)

    def hold(self, ledger: ChordLedger, delivery: Any, *, returned: bool = False) -> None:
        for chord_id in ledger.done:
            self.add(chord_id)
        self.held.append(delivery)
        self.worn = self.worn or returned
        if self.held_since is None:
            self.held_since = time.monotonic()

    def needs_compacting(self, now: float, fold_after: float) -> bool:
        """Too many records held, one held long enough to meet consumer_timeout, or one came
        back (a quorum queue counts its returns)."""
        if not self.held:
            return False
        # Compared as a sum: (t + 600) - t can come out a hair under 600 in floating point.
        held_long = self.held_since is not None and now >= self.held_since + fold_after
        many = len(self.held) >= max(COMPACT_AT, len(self.ids) // 10)
        return self.worn or held_long or (many and len(self.held) > 1)

    def compacted(self) -> ChordLedger:
        return ChordLedger(list(self.ids))

    def replaced(self) -> list[Any]:
        """The deliveries a confirmed compaction replaces (to ack)."""
        replaced, self.held, self.held_since, self.worn = self.held, [], None, False
        return replaced
