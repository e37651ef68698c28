"""Hypothesis strategies for what can arrive on a worker's queue (issue 21, "Fuzzed input").

Shared by ``tests/test_fuzz_arrival.py`` (a couple of hundred examples per property) and
``benchmarks/fuzz_arrival.py`` (tens of thousands), so both throw the same shapes at the
decoder and at ``decide_arrival``:

* arbitrary bytes under arbitrary headers and content types;
* valid Celery protocol v2 messages (headers ``task``/``id``/..., body ``[args, kwargs,
  embed]`` in JSON or msgpack) with random embeds (callbacks, errbacks, chain, chord), and
  the same mangled (a header of the wrong type, huge, or missing; a body cut short, bytes
  flipped, parts of the wrong shape);
* Celery protocol v1 shapes (the task's name and arguments in the body);
* bodies nested around ``nesting.MAX_NESTING``, and bodies over a small ``max_message_size``;
* signed, unsigned and tampered messages (``rabbitq.signing``).

``arrivals()`` draws one whole delivery: an envelope plus what ``decide_arrival`` is told
about it (redelivered, quorum, limits, and whether the worker signs).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any

import msgpack
from hypothesis import strategies as st

import rabbitq
from rabbitq.message import Envelope, TaskMessage, encode_task
from rabbitq.nesting import MAX_NESTING
from rabbitq.redelivery import QUORUM_DELIVERY_COUNT_HEADER, REDELIVERY_COUNT_HEADER
from rabbitq.serializers import JSON, MSGPACK, Serializer
from rabbitq.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Signer, signer_from_settings
from rabbitq.timeouts import STOPPED_HEADER

# The one instant every strategy and every decision is relative to: runs are reproducible.
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SIGNING_KEY = "fuzz-signing-key-of-32-bytes-ok!"
OTHER_KEY = "another-key-this-worker-lacks!!!"

# What a worker's App registers; a message may name one of these or anything else.
TASK_NAMES = ("echo", "add", "anything", "bound")


def fuzz_app() -> rabbitq.App:
    """An App with a task of each signature shape (optional, required, variadic, bound)."""
    app = rabbitq.App(
        "fuzz", broker="amqp://guest:guest@127.0.0.1:1/", declare_queues_on_publish=False
    )

    @app.task(name="echo")
    def echo(value: Any = None) -> Any:
        return value

    @app.task(name="add")
    def add(x: Any, y: Any) -> Any:
        return x

    @app.task(name="anything")
    def anything(*args: Any, **kwargs: Any) -> None:
        return None

    @app.task(name="bound", bind=True)
    def bound(self: rabbitq.Task, value: Any = None) -> None:
        return None

    return app


@functools.cache
def signer(key: str = SIGNING_KEY) -> Signer:
    made = signer_from_settings(key, None)
    assert made is not None
    return made


# -- values -----------------------------------------------------------------------------------

HEADER_NAMES = (
    "lang", "task", "id", "root_id", "parent_id", "group", "group_index", "eta", "expires",
    "retries", "timelimit", "argsrepr", "kwargsrepr", "origin", "ignore_result",
    SIGNATURE_HEADER, KEY_ID_HEADER, REDELIVERY_COUNT_HEADER, QUORUM_DELIVERY_COUNT_HEADER,
    STOPPED_HEADER, "rabbitq_chord_id", "rabbitq_chord_ledger", "x-death",
)  # fmt: skip

CONTENT_TYPES = (
    "application/json",
    "application/x-msgpack",
    "application/msgpack",
    "application/x-json",
    "Application/JSON; charset=utf-8",
    "application/x-python-serialize",
    "application/x-yaml",
    "text/plain",
    "",
)

times = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.timezones()
) | st.datetimes(min_value=dt.datetime(2025, 12, 31), max_value=dt.datetime(2026, 1, 2))
iso_times = times.map(dt.datetime.isoformat)

# Values an AMQP table can carry (pika and aiormq both), of any type, some of them huge.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(TASK_NAMES),
    iso_times,
    times,
    st.just("x" * 100_000),
    st.just(b"\xff" * 10_000),
)
header_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)

# Wrong types for a header, and missing ones: any known name, or any other.
header_keys = st.sampled_from(HEADER_NAMES) | st.text(max_size=20)
headers = st.dictionaries(header_keys, header_values, max_size=8)
content_types = st.none() | st.sampled_from(CONTENT_TYPES) | st.text(max_size=30)

# Arguments that come back from either serializer as they went in: no tuples (both give
# lists), no NaN (unequal to itself), ints msgpack can pack, dicts without kombu's
# ``__type__`` markers (the JSON decoder turns those into objects).
argument_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
arguments = st.recursive(
    argument_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8).filter(lambda k: k != "__type__"), inner, max_size=4)
    ),
    max_leaves=10,
)
task_names = st.sampled_from(TASK_NAMES) | st.text(min_size=1, max_size=30)
task_ids = st.uuids().map(str) | st.text(min_size=1, max_size=40)
serializers = st.sampled_from((JSON, MSGPACK))


# -- embeds -----------------------------------------------------------------------------------


@st.composite
def signature_dicts(draw: st.DrawFn) -> dict[str, Any]:
    """A Celery signature as it rides in an embed: ``{"task", "args", "kwargs", ...}``."""
    return {
        "task": draw(task_names),
        "args": draw(st.lists(arguments, max_size=3)),
        "kwargs": draw(st.dictionaries(st.text(max_size=8), arguments, max_size=3)),
        "options": draw(st.dictionaries(st.sampled_from(("queue", "countdown")), arguments)),
        "subtask_type": draw(st.sampled_from((None, "chain", "group", "chord"))),
        "immutable": draw(st.booleans()),
    }


signature_lists = st.none() | st.lists(signature_dicts(), max_size=3)
chords = st.none() | signature_dicts()


# -- valid protocol v2 ------------------------------------------------------------------------


@st.composite
def task_messages(draw: st.DrawFn, *, chord: bool = True) -> TaskMessage:
    """A ``TaskMessage`` any rabbitq or Celery producer could send."""
    return TaskMessage(
        task=draw(task_names),
        args=draw(st.lists(arguments, max_size=4)),
        kwargs=draw(
            st.dictionaries(st.sampled_from(("value", "x", "y")) | st.text(max_size=8), arguments)
        ),
        id=draw(task_ids),
        parent_id=draw(st.none() | task_ids),
        group=draw(st.none() | task_ids),
        eta=draw(st.none() | times.map(_aware)),
        expires=draw(st.none() | times.map(_aware)),
        retries=draw(st.integers(min_value=0, max_value=100)),
        timelimit=draw(st.tuples(st.none() | st.integers(1, 60), st.none() | st.integers(1, 60))),
        callbacks=draw(signature_lists),
        errbacks=draw(signature_lists),
        chain=draw(signature_lists),
        chord=draw(chords) if chord else None,
        ignore_result=draw(st.booleans()),
    )


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Built:
    """A valid v2 envelope and the message it was built from."""

    message: TaskMessage
    serializer: Serializer
    envelope: Envelope


@st.composite
def valid_v2(draw: st.DrawFn, *, chord: bool = True) -> Built:
    message = draw(task_messages(chord=chord))
    serializer = draw(serializers)
    return Built(message, serializer, encode_task(message, serializer))


# -- mangled protocol v2 ----------------------------------------------------------------------


@st.composite
def mangled_v2(draw: st.DrawFn) -> Envelope:
    """A valid envelope with one to three things wrong with it."""
    envelope = draw(valid_v2()).envelope
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        envelope = draw(st.sampled_from(_MANGLERS))(draw, envelope)
    return envelope


def _wrong_header(draw: st.DrawFn, envelope: Envelope) -> Envelope:
    name = draw(st.sampled_from(HEADER_NAMES))
    return dataclasses.replace(envelope, headers={**envelope.headers, name: draw(header_values)})


def _missing_header(draw: st.DrawFn, envelope: Envelope) -> Envelope:
    name = draw(st.sampled_from(HEADER_NAMES))
    return dataclasses.replace(
        envelope, headers={k: v for k, v in envelope.headers.items() if k != name}
    )


def _cut_body(draw: st.DrawFn, envelope: Envelope) -> Envelope:
    cut = draw(st.integers(min_value=0, max_value=max(0, len(envelope.body) - 1)))
    return dataclasses.replace(envelope, body=envelope.body[:cut])


def _flipped_bytes(draw: st.DrawFn, envelope: Envelope) -> Envelope:
    body = bytearray(envelope.body)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if body:
            at = draw(st.integers(min_value=0, max_value=len(body) - 1))
            body[at] = draw(st.integers(min_value=0, max_value=255))
    return dataclasses.replace(envelope, body=bytes(body))


def _other_content_type(draw: st.DrawFn, envelope: Envelope) -> Envelope:
    return dataclasses.replace(envelope, content_type=draw(content_types))


def _wrong_body_shape(draw: st.DrawFn, envelope: Envelope) -> Envelope:
    """A body that parses, but is not ``[args, kwargs, embed]``: parts of the wrong type,
    too few or too many, kwargs with keys that are not strings (msgpack allows any)."""
    part = header_values
    shape = draw(
        st.one_of(
            part,
            st.lists(part, max_size=5),
            st.tuples(part, part, part).map(list),
            st.tuples(st.lists(part, max_size=2), part, part).map(list),
            st.tuples(st.lists(part, max_size=2), st.just({}), part).map(list),
            st.just([[], {1: "one"}, {}]),
        )
    )
    serializer = draw(serializers)
    return dataclasses.replace(
        envelope,
        body=_dumps(serializer, shape),
        content_type=serializer.content_type,
    )


_MANGLERS = (
    _wrong_header,
    _missing_header,
    _cut_body,
    _flipped_bytes,
    _other_content_type,
    _wrong_body_shape,
)


def _dumps(serializer: Serializer, value: Any) -> bytes:
    """Anything as the serializer's bytes; what it cannot hold goes as its repr."""
    try:
        return serializer.dumps(value)
    except (TypeError, ValueError, OverflowError):
        return serializer.dumps(repr(value))


# -- protocol v1 ------------------------------------------------------------------------------


@st.composite
def celery_v1(draw: st.DrawFn) -> Envelope:
    """Celery's protocol 1: the task and its arguments in a body map, no ``task`` header."""
    body = {
        "task": draw(task_names),
        "id": draw(task_ids),
        "args": draw(st.lists(arguments, max_size=3)),
        "kwargs": draw(st.dictionaries(st.text(max_size=8), arguments, max_size=3)),
        "retries": draw(st.integers(0, 5)),
        "eta": draw(st.none() | iso_times),
        "expires": draw(st.none() | iso_times),
        "utc": True,
        "callbacks": draw(signature_lists),
        "errbacks": draw(signature_lists),
        "chord": draw(chords),
        "taskset": draw(st.none() | task_ids),
    }
    serializer = draw(serializers)
    extra = draw(st.dictionaries(st.sampled_from(("lang", "id", "retries")), header_values))
    return Envelope(
        body=_dumps(serializer, body),
        headers=extra,
        content_type=serializer.content_type,
        content_encoding=serializer.content_encoding,
        message_id=body["id"],
        correlation_id=draw(st.none() | st.just(body["id"])),
    )


# -- nesting and size -------------------------------------------------------------------------


def nested(depth: int, leaf: Any = 1, *, as_map: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"k": value} if as_map else [value]
    return value


@st.composite
def deep_bodies(draw: st.DrawFn) -> Envelope:
    """A v2 message whose first argument nests lists or maps around ``MAX_NESTING`` deep."""
    depth = draw(st.integers(min_value=0, max_value=4 * MAX_NESTING))
    as_map = draw(st.booleans())
    serializer = draw(serializers)
    envelope = encode_task(TaskMessage(task=draw(st.sampled_from(TASK_NAMES))), serializer)
    return dataclasses.replace(envelope, body=deep_body(serializer, depth, as_map=as_map))


def deep_body(serializer: Serializer, depth: int, *, as_map: bool = False) -> bytes:
    """``[[value], {}, {}]`` with ``value`` nested ``depth`` deep: ``depth + 2`` in all."""
    if serializer is MSGPACK:
        value: Any = 1
        for _ in range(depth):
            value = {"k": value} if as_map else [value]
        packed: bytes = msgpack.packb([[value], {}, {}], use_bin_type=True)
        return packed
    # Written out, not json.dumps: the encoder recurses once per level.
    opening, closing = ('{"k":', "}") if as_map else ("[", "]")
    return f"[[{opening * depth}1{closing * depth}],{{}},{{}}]".encode()


# -- signing ----------------------------------------------------------------------------------


@st.composite
def signed(draw: st.DrawFn) -> Envelope:
    return signer().sign(draw(st.one_of(valid_v2().map(lambda b: b.envelope), mangled_v2())))


@st.composite
def tampered(draw: st.DrawFn) -> Envelope:
    """A signed message changed after signing, or signed with a key the worker lacks, or with
    signature headers of the wrong type: none of them checks."""
    built = draw(valid_v2())
    envelope = signer().sign(built.envelope)
    how = draw(st.sampled_from(("body", "header", "signature", "key", "other-key", "types")))
    if how == "body":
        body = draw(st.binary(min_size=1, max_size=64).filter(lambda b: b != envelope.body))
        return dataclasses.replace(envelope, body=body)
    if how == "header":
        name = draw(st.sampled_from(("task", "id", "eta", "expires", "rabbitq_chord_id")))
        value = draw(
            st.text(min_size=1, max_size=20).filter(lambda v: v != envelope.headers.get(name))
        )
        return dataclasses.replace(envelope, headers={**envelope.headers, name: value})
    if how == "signature":
        good = envelope.headers[SIGNATURE_HEADER]
        bad = draw(st.text(max_size=80).filter(lambda s: s != good))
        return dataclasses.replace(envelope, headers={**envelope.headers, SIGNATURE_HEADER: bad})
    if how == "key":
        key_id = draw(st.text(max_size=20).filter(lambda k: k != signer().key_id))
        return dataclasses.replace(envelope, headers={**envelope.headers, KEY_ID_HEADER: key_id})
    if how == "other-key":
        return signer(OTHER_KEY).sign(encode_task(built.message, built.serializer))
    wrong = {
        SIGNATURE_HEADER: draw(header_values.filter(lambda v: not isinstance(v, str))),
        KEY_ID_HEADER: draw(st.just(signer().key_id) | header_values),
    }
    return dataclasses.replace(envelope, headers={**envelope.headers, **wrong})


# -- everything -------------------------------------------------------------------------------


@st.composite
def raw_envelopes(draw: st.DrawFn) -> Envelope:
    """Arbitrary bytes under arbitrary headers and properties."""
    return Envelope(
        body=draw(st.binary(max_size=512)),
        headers=draw(headers),
        content_type=draw(content_types),
        content_encoding=draw(st.none() | st.sampled_from(("utf-8", "binary", "gzip"))),
        message_id=draw(st.none() | st.text(max_size=40)),
        correlation_id=draw(st.none() | st.text(max_size=40)),
        reply_to=draw(st.none() | st.text(max_size=20)),
        priority=draw(st.none() | st.integers(0, 255)),
    )


@st.composite
def with_extra_headers(draw: st.DrawFn, envelope: st.SearchStrategy[Envelope]) -> Envelope:
    """Some deliveries carry redelivery counts and other bookkeeping of any type."""
    drawn = draw(envelope)
    extra = draw(headers) if draw(st.booleans()) else {}
    return dataclasses.replace(drawn, headers={**drawn.headers, **extra})


def envelopes() -> st.SearchStrategy[Envelope]:
    """Every shape above, each as likely."""
    return st.one_of(
        raw_envelopes(),
        valid_v2().map(lambda built: built.envelope),
        with_extra_headers(valid_v2().map(lambda built: built.envelope)),
        mangled_v2(),
        celery_v1(),
        deep_bodies(),
        signed(),
        tampered(),
    )


@dataclass(frozen=True)
class Arrival:
    """One delivery and what the worker knows about it: ``decide_arrival``'s arguments."""

    envelope: Envelope
    redelivered: bool
    quorum: bool
    redelivery_limit: int
    max_message_size: int
    signs: bool  # the worker's App signs (``signing_key``)

    def decide_kwargs(self) -> dict[str, Any]:
        return {
            "redelivered": self.redelivered,
            "quorum": self.quorum,
            "redelivery_limit": self.redelivery_limit,
            "max_message_size": self.max_message_size,
            "signer": signer() if self.signs else None,
            "clock": lambda: NOW,
        }


@st.composite
def arrivals(draw: st.DrawFn) -> Arrival:
    return Arrival(
        envelope=draw(envelopes()),
        redelivered=draw(st.booleans()),
        quorum=draw(st.booleans()),
        redelivery_limit=draw(st.integers(min_value=0, max_value=10)),
        # Mostly the default; sometimes small enough that ordinary bodies are over it.
        max_message_size=draw(st.sampled_from((16 * 1024 * 1024, 4096)) | st.integers(1, 512)),
        signs=draw(st.booleans()),
    )
