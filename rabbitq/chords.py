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
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from rabbitq.errors import MessageDecodeError
from rabbitq.message import Envelope
from rabbitq.serializers import Serializer, serializer_for_content_type

CHORD_QUEUE = "rabbitq.chords"
CHORD_DEAD_QUEUE = "rabbitq.chords.dead"
CHORD_ID_HEADER = "rabbitq_chord_id"


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


def decode_part(envelope: Envelope) -> ChordPart:
    serializer = serializer_for_content_type(envelope.content_type)
    try:
        data = serializer.loads(envelope.body)
    except Exception as exc:
        raise MessageDecodeError(f"chord part is not valid {serializer.name}: {exc}") from exc
    if not isinstance(data, dict):
        raise MessageDecodeError("chord part must be a mapping")
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

    def offer(self, part: ChordPart, delivery: Any) -> bool:
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
        if self.held_since is None:
            self.held_since = time.monotonic()
        return True

    @property
    def complete(self) -> bool:
        return len(self.results) == self.size

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
        replaced, self.held, self.held_since = self.held, [], None
        return replaced
