"""The wire format is Celery's message protocol v2."""

from __future__ import annotations

import datetime as dt

import msgpack
import pytest

from rabbitq.errors import MessageDecodeError
from rabbitq.message import Envelope, TaskMessage, decode_task, encode_task
from rabbitq.serializers import JSON, MSGPACK


def test_encoded_message_carries_celery_v2_headers_and_properties() -> None:
    message = TaskMessage(task="shop.send", args=[1], kwargs={"a": 2}, id="abc")
    envelope = encode_task(message, MSGPACK)
    assert envelope.headers["lang"] == "py"
    assert envelope.headers["task"] == "shop.send"
    assert envelope.headers["id"] == "abc"
    assert envelope.headers["root_id"] == "abc"
    assert envelope.headers["retries"] == 0
    assert envelope.message_id == envelope.correlation_id == "abc"
    assert envelope.content_type == "application/x-msgpack"
    assert envelope.delivery_mode == 2


def test_body_is_args_kwargs_embed() -> None:
    envelope = encode_task(TaskMessage(task="t", args=[1, "x"], kwargs={"k": True}), JSON)
    import json

    args, kwargs, embed = json.loads(envelope.body)
    assert args == [1, "x"]
    assert kwargs == {"k": True}
    assert set(embed) == {"callbacks", "errbacks", "chain", "chord"}


@pytest.mark.parametrize("serializer", [MSGPACK, JSON])
def test_round_trip_keeps_every_field(serializer: object) -> None:
    eta = dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    original = TaskMessage(
        task="t",
        args=[1, [2, 3]],
        kwargs={"x": {"y": None}},
        id="id1",
        parent_id="p",
        group="g",
        eta=eta,
        expires=eta,
        retries=3,
        timelimit=(1.5, 3.0),
        origin="me",
        headers={"custom": "value"},
        embed_extras={"rabbitq_member": 4},
    )
    decoded = decode_task(encode_task(original, serializer))  # type: ignore[arg-type]
    assert decoded.task == "t" and decoded.id == "id1"
    assert decoded.args == [1, [2, 3]] and decoded.kwargs == {"x": {"y": None}}
    assert decoded.eta == eta and decoded.expires == eta
    assert decoded.retries == 3 and decoded.timelimit == (1.5, 3.0)
    assert decoded.parent_id == "p" and decoded.group == "g" and decoded.root_id == "id1"
    assert decoded.headers == {"custom": "value"}
    assert decoded.embed_extras == {"rabbitq_member": 4}


def test_timelimit_header_puts_the_hard_limit_first_as_celery_does() -> None:
    envelope = encode_task(TaskMessage(task="t", timelimit=(5, 10)), JSON)
    assert envelope.headers["timelimit"] == [10, 5]


def test_a_celery_timelimit_header_is_read_hard_limit_first() -> None:
    envelope = encode_task(TaskMessage(task="t"), JSON)
    envelope.headers["timelimit"] = [1, None]  # send_task(time_limit=1) from Celery
    assert decode_task(envelope).timelimit == (None, 1.0)


def test_naive_time_headers_from_celery_mean_utc() -> None:
    envelope = encode_task(TaskMessage(task="t"), JSON)
    envelope.headers["eta"] = "2030-01-01T00:00:00"
    assert decode_task(envelope).eta == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def test_missing_task_header_is_undecodable() -> None:
    envelope = Envelope(
        body=msgpack.packb([[], {}, {}]), headers={}, content_type="application/x-msgpack"
    )
    with pytest.raises(MessageDecodeError, match="task"):
        decode_task(envelope)


def test_garbage_body_is_undecodable() -> None:
    envelope = encode_task(TaskMessage(task="t"), JSON)
    envelope.body = b"\xff\x00not json"
    with pytest.raises(MessageDecodeError, match="not valid json"):
        decode_task(envelope)


def test_body_of_wrong_shape_is_undecodable() -> None:
    envelope = encode_task(TaskMessage(task="t"), JSON)
    envelope.body = b'{"args": []}'
    with pytest.raises(MessageDecodeError, match=r"\[args, kwargs, embed\]"):
        decode_task(envelope)


def test_unknown_content_type_is_undecodable() -> None:
    envelope = encode_task(TaskMessage(task="t"), JSON)
    envelope.content_type = "application/x-python-serialize"
    with pytest.raises(MessageDecodeError, match="unsupported content_type"):
        decode_task(envelope)


def test_bad_eta_header_is_undecodable() -> None:
    envelope = encode_task(TaskMessage(task="t"), JSON)
    envelope.headers["eta"] = "next tuesday"
    with pytest.raises(MessageDecodeError, match="ISO 8601"):
        decode_task(envelope)


def test_expired_message_knows_it() -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert TaskMessage(task="t", expires=past).is_expired()
    assert not TaskMessage(task="t").is_expired()
