"""Signed task messages (issue 21): HMAC-SHA256 over what decides what runs.

With ``App(signing_key=...)`` every task message the App publishes (``delay``, canvases,
beat, a worker's retries, follow-ups and chord parts) carries two headers::

    rabbitq_signature      hex HMAC-SHA256 of the fields below
    rabbitq_signature_key  the id of the key that made it

and a worker of that App runs only messages whose signature it can check; any other goes to
the dead-letter queue with reason ``bad-signature`` before it is decoded.

What is signed, each field length-prefixed under a version tag (so no two different
messages sign the same bytes): the key id, the content type, the headers ``task``, ``id``,
``eta``, ``expires`` and the chord headers (absent, or None, told apart from any value), then the
whole body (arguments, callbacks, errbacks, chain). Not signed: the other headers
(``retries``, tracing, rabbitq's bookkeeping), the AMQP properties (``reply_to``,
``correlation_id``, priority) and the routing key; nor anything outside task messages
(results, events, remote control).

A key's id is the first 16 hex digits of its SHA-256, not a name: every process holding
the key agrees on it without configuration, and the id says nothing about the key. The names
in ``signing_keys`` are for people: errors say which one a message was signed with.
Rotation: workers sign too (retries, chain steps, chord parts), so every process must accept
the new key before any signs with it: first ``signing_key=OLD, signing_keys={"next": NEW}``
everywhere, then ``signing_key=NEW, signing_keys={"previous": OLD}`` everywhere, then, once
nothing signed with the old key is left in the queues, drop it (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rabbitq.errors import BadSignatureError, ConfigurationError
from rabbitq.message import Envelope

SIGNATURE_HEADER = "rabbitq_signature"
KEY_ID_HEADER = "rabbitq_signature_key"
SIGNED_HEADERS = ("task", "id", "eta", "expires", "rabbitq_chord_id", "rabbitq_chord_ledger")
MIN_KEY_BYTES = 16  # an HMAC key shorter than this is a password, and guessable offline
_VERSION = b"rabbitq-signature-v1"


@dataclass(frozen=True, slots=True)
class _Key:
    name: str
    key_id: str
    mac: Any  # an hmac object keyed once; each message works on a copy
    prefix: bytes  # the framed version and key id that begin every signed text


class Signer:
    """Signs with one key; checks with it and with the keys kept for a rotation."""

    def __init__(self, key: _Key, also_accepted: Mapping[str, _Key]) -> None:
        self._key = key
        self._accepted = {key.key_id: key, **also_accepted}

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def sign(self, envelope: Envelope) -> Envelope:
        """Set ``envelope``'s signature headers in place (a republished message is signed
        afresh: its eta or retries may have changed) and return it."""
        headers = envelope.headers
        headers[KEY_ID_HEADER] = self._key.key_id
        headers[SIGNATURE_HEADER] = _digest(self._key, envelope)
        return envelope

    def check(self, envelope: Envelope) -> BadSignatureError | None:
        """None when ``envelope`` was signed by a key held here; else why not."""
        headers = envelope.headers
        signature = headers.get(SIGNATURE_HEADER)
        key_id = headers.get(KEY_ID_HEADER)
        if signature is None or key_id is None:
            return BadSignatureError(
                "the message is not signed and this App requires signatures (signing_key): "
                "it was sent by an App without signing_key, or by a Celery producer"
            )
        key = self._accepted.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            return BadSignatureError(
                f"signed with key id {_shown(key_id)}, which this App does not hold (it holds "
                f"{', '.join(sorted(self._accepted))}): add that key to signing_keys"
            )
        if not isinstance(signature, str) or not hmac.compare_digest(
            signature.encode("ascii", "replace"), _digest(key, envelope).encode("ascii")
        ):
            return BadSignatureError(
                f"the signature (key {key.name!r}) does not match the message: its body or "
                f"its headers {', '.join(SIGNED_HEADERS)} were changed after signing"
            )
        return None


def signer_from_settings(
    signing_key: str | bytes | None, signing_keys: Mapping[str, str | bytes] | None
) -> Signer | None:
    """The App's settings, checked at once: None when signing is off."""
    if signing_key is None:
        if signing_keys:
            raise ConfigurationError(
                "signing_keys are the keys accepted besides signing_key during a rotation; "
                "give signing_key too (the key this App signs with)"
            )
        return None
    key = _keyed("signing_key", signing_key)
    others: dict[str, _Key] = {}
    for name, value in (signing_keys or {}).items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"signing_keys: a key's name must be a string: {name!r}")
        other = _keyed(name, value)
        if other.key_id != key.key_id:
            others[other.key_id] = other
    return Signer(key, others)


def _keyed(name: str, value: str | bytes) -> _Key:
    if isinstance(value, str):
        secret = value.encode("utf-8")
    elif isinstance(value, bytes):
        secret = value
    else:
        raise ConfigurationError(f"{name}: a signing key is str or bytes, not {type(value)!r}")
    if len(secret) < MIN_KEY_BYTES:
        raise ConfigurationError(
            f"{name}: a signing key needs at least {MIN_KEY_BYTES} bytes, this one has "
            f"{len(secret)} (e.g. python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    key_id = hashlib.sha256(secret).hexdigest()[:16]
    prefix = b"".join(_framed(part) for part in (_VERSION, key_id.encode()))
    return _Key(name, key_id, hmac.new(secret, digestmod=hashlib.sha256), prefix)


def _digest(key: _Key, envelope: Envelope) -> str:
    # Each part framed by its length, so no two messages sign the same text. A plain loop,
    # not generators: this runs on every delivery of a signing worker.
    mac = key.mac.copy()
    get = envelope.headers.get
    text = bytearray(key.prefix)
    text += _framed((envelope.content_type or "").encode())
    for name in SIGNED_HEADERS:
        text += _framed(_field(get(name)))
    mac.update(text)
    mac.update(envelope.body)
    digest: str = mac.hexdigest()
    return digest


def _framed(part: bytes) -> bytes:
    return len(part).to_bytes(4, "big") + part


def _field(value: object) -> bytes:
    # AMQP tables bring a value back as the same str, int or bool, except that a str may come
    # back as bytes (pika, when it is not UTF-8): both sign the same. A header set to None
    # signs as an absent one: Celery's producers send ``eta: None``, and a worker's copy of a
    # message writes the eta it read, None included.
    if value is None:
        return b"-"
    if isinstance(value, bytes):
        return b"+" + value
    return b"+" + str(value).encode("utf-8", "surrogateescape")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
