"""Body serializers, chosen by name when publishing and by content_type when consuming.

msgpack is the default (compact, fast); JSON is there for interoperability and debugging.
JSON values that JSON cannot hold natively (datetime, date, time, UUID, Decimal, bytes) use
kombu's ``{"__type__": ..., "__value__": ...}`` markers so Celery reads them the same way.
Pickle is deliberately absent: a task queue must never execute what a message says.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from rabbitq.errors import ConfigurationError, MessageDecodeError


@dataclass(frozen=True)
class Serializer:
    name: str
    content_type: str
    content_encoding: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _msgpack_dumps(value: Any) -> bytes:
    packed: bytes = msgpack.packb(
        value, use_bin_type=True, datetime=False, default=_msgpack_default
    )
    return packed


def _msgpack_default(value: Any) -> Any:
    # Same coercions as the JSON serializer, so a task behaves alike under either.
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | decimal.Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialize object of type {type(value).__name__} with msgpack")


def _msgpack_loads(data: bytes) -> Any:
    # strict_map_key=False: Celery's msgpack payloads may carry non-str keys.
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"__type__": "datetime", "__value__": value.isoformat()}
    if isinstance(value, dt.date):
        return {"__type__": "date", "__value__": value.isoformat()}
    if isinstance(value, dt.time):
        return {"__type__": "time", "__value__": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"__type__": "uuid", "__value__": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"__type__": "decimal", "__value__": str(value)}
    if isinstance(value, bytes):
        return {"__type__": "bytes", "__value__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot serialize object of type {type(value).__name__} with json")


_JSON_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": dt.datetime.fromisoformat,
    "date": dt.date.fromisoformat,
    "time": dt.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "bytes": lambda text: base64.b64decode(text),
}


def _json_object_hook(obj: dict[str, Any]) -> Any:
    kind = obj.get("__type__")
    if kind is not None and len(obj) == 2 and "__value__" in obj:
        decoder = _JSON_DECODERS.get(kind)
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode("utf-8")


def _json_loads(data: bytes) -> Any:
    return json.loads(data, object_hook=_json_object_hook)


MSGPACK = Serializer("msgpack", "application/x-msgpack", "binary", _msgpack_dumps, _msgpack_loads)
JSON = Serializer("json", "application/json", "utf-8", _json_dumps, _json_loads)

_BY_NAME = {s.name: s for s in (MSGPACK, JSON)}
_BY_CONTENT_TYPE = {s.content_type: s for s in (MSGPACK, JSON)}
# Other spellings seen on the wire (kombu registers msgpack under both).
_BY_CONTENT_TYPE["application/msgpack"] = MSGPACK
_BY_CONTENT_TYPE["application/x-json"] = JSON


def serializer_named(name: str) -> Serializer:
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(sorted(_BY_NAME))
        raise ConfigurationError(f"unknown serializer {name!r}; expected one of: {known}") from None


def known_serializer(content_type: str | None) -> Serializer | None:
    """The serializer a content type names, parameters and case aside; None if unknown."""
    if content_type is None:
        return None
    return _BY_CONTENT_TYPE.get(content_type.split(";")[0].strip().lower())


def serializer_for_content_type(content_type: str | None) -> Serializer:
    if content_type is None:
        raise MessageDecodeError("message has no content_type; cannot choose a serializer")
    serializer = known_serializer(content_type)
    if serializer is None:
        raise MessageDecodeError(
            f"unsupported content_type {content_type!r}; rabbitq reads msgpack and json only"
        )
    return serializer
