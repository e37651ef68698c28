from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest

from rabbitq.errors import ConfigurationError, MessageDecodeError
from rabbitq.serializers import (
    JSON,
    MSGPACK,
    serializer_for_content_type,
    serializer_named,
)


def test_json_keeps_datetimes_uuids_decimals_and_bytes_like_kombu() -> None:
    value = {
        "when": dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        "id": uuid.UUID(int=5),
        "price": decimal.Decimal("1.10"),
        "raw": b"\x00\x01",
    }
    assert JSON.loads(JSON.dumps(value)) == value


def test_msgpack_round_trips_bytes_and_nested_values() -> None:
    value = [b"\x00", {"a": [1, 2.5, None, True]}]
    assert MSGPACK.loads(MSGPACK.dumps(value)) == value


def test_unserializable_argument_raises_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        MSGPACK.dumps(object())


def test_unknown_serializer_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="pickle"):
        serializer_named("pickle")


def test_content_type_with_parameters_is_understood() -> None:
    assert serializer_for_content_type("application/json; charset=utf-8") is JSON


def test_pickle_content_type_is_refused() -> None:
    with pytest.raises(MessageDecodeError):
        serializer_for_content_type("application/x-python-serialize")
