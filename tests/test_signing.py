"""Signed task messages (``rabbitq/signing.py``): what the signature covers, what it does
not, rotation, and the settings refused at once."""

from __future__ import annotations

import dataclasses

import pytest

import rabbitq
from rabbitq import dead_letters
from rabbitq.message import Envelope
from rabbitq.signing import KEY_ID_HEADER, SIGNATURE_HEADER, Signer, signer_from_settings
from tests.pipeline_support import task_envelope

KEY = "k" * 32
OLD_KEY = "o" * 32


def signer(key: str = KEY, **others: str) -> Signer:
    made = signer_from_settings(key, others or None)
    assert made is not None
    return made


def signed(**fields: object) -> Envelope:
    return signer().sign(task_envelope("t", 1, **fields))  # type: ignore[arg-type]


def with_headers(envelope: Envelope, **headers: object) -> Envelope:
    return dataclasses.replace(envelope, headers={**envelope.headers, **headers})


def test_a_signed_message_checks() -> None:
    assert signer().check(signed()) is None


def test_an_unsigned_message_is_refused_with_bad_signature() -> None:
    error = signer().check(task_envelope("t", 1))
    assert isinstance(error, rabbitq.BadSignatureError)
    assert error.reason == dead_letters.REASON_BAD_SIGNATURE == "bad-signature"
    assert "not signed" in str(error)


def test_a_changed_body_is_refused() -> None:
    envelope = dataclasses.replace(signed(), body=task_envelope("t", 2).body)
    error = signer().check(envelope)
    assert error is not None and "does not match" in str(error)


@pytest.mark.parametrize("header", ["task", "id", "eta", "expires", "rabbitq_chord_id"])
def test_a_changed_header_that_decides_what_runs_is_refused(header: str) -> None:
    assert signer().check(with_headers(signed(), **{header: "2099-01-01T00:00:00"})) is not None


def test_a_changed_content_type_is_refused() -> None:
    envelope = dataclasses.replace(signed(), content_type="application/json")
    assert signer().check(envelope) is not None


def test_headers_outside_the_signature_may_change() -> None:
    envelope = with_headers(signed(), retries=3, x_trace="abc", rabbitq_redeliveries=2)
    assert signer().check(envelope) is None


def test_a_header_set_to_none_signs_as_an_absent_one() -> None:
    envelope = signed()
    envelope.headers.pop("eta", None)
    signer().sign(envelope)
    assert signer().check(with_headers(envelope, eta=None)) is None


def test_a_str_header_that_comes_back_as_bytes_still_checks() -> None:
    envelope = signed()
    assert signer().check(with_headers(envelope, id=envelope.headers["id"].encode())) is None


def test_a_message_signed_with_a_key_not_held_is_refused_naming_its_key_id() -> None:
    envelope = signer(OLD_KEY).sign(task_envelope("t", 1))
    error = signer().check(envelope)
    assert error is not None and envelope.headers[KEY_ID_HEADER] in str(error)


def test_during_a_rotation_both_keys_are_accepted_and_the_new_one_signs() -> None:
    rotating = signer(KEY, old=OLD_KEY)
    assert rotating.check(signer(OLD_KEY).sign(task_envelope("t", 1))) is None
    assert rotating.check(signer(KEY).sign(task_envelope("t", 1))) is None
    assert rotating.sign(task_envelope("t", 1)).headers[KEY_ID_HEADER] == signer(KEY).key_id


def test_a_signature_of_the_wrong_type_is_refused() -> None:
    envelope = with_headers(signed(), **{SIGNATURE_HEADER: 12345})
    assert signer().check(envelope) is not None


def test_the_key_id_is_a_fingerprint_not_the_key() -> None:
    key_id = signer().key_id
    assert len(key_id) == 16 and KEY not in key_id
    assert key_id == signer(KEY, renamed=KEY).key_id


def test_a_short_key_is_refused() -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="at least 16 bytes"):
        signer_from_settings("short", None)


def test_a_key_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="str or bytes"):
        signer_from_settings(12345, None)  # type: ignore[arg-type]


def test_rotation_keys_without_a_signing_key_are_refused() -> None:
    with pytest.raises(rabbitq.ConfigurationError, match="give signing_key too"):
        signer_from_settings(None, {"old": OLD_KEY})


def test_an_app_without_a_key_does_not_sign() -> None:
    assert rabbitq.App("t", broker="amqp://127.0.0.1:1/").signer is None


def test_a_replayed_signed_dead_letter_keeps_its_eta_and_its_signature() -> None:
    envelope = signed(retries=2)
    envelope.headers["eta"] = "2026-01-01T00:00:00+00:00"
    signer().sign(envelope)
    dead = dead_letters.dead_letter_envelope(
        envelope, reason="task-failed", queue="q", routing_key="q", exchange="rabbitq",
        exception=ValueError("x"), attempts=3,
    )  # fmt: skip
    replayed = dead_letters.replay_envelope(dead)
    assert replayed.headers["eta"] == "2026-01-01T00:00:00+00:00"
    assert signer().check(replayed) is None
