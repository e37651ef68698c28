"""The revocation log's entries and the set a worker keeps (``revocations.py``)."""

from __future__ import annotations

import pytest

from rabbitq.errors import MessageDecodeError
from rabbitq.revocations import (
    EXPIRES_MARGIN,
    Revocation,
    RevokedSet,
    decode_revocation,
    stream_arguments,
)


def test_a_revocation_survives_its_encoding() -> None:
    revocation = Revocation.now(["a", "b"], 60, terminate=True, signal="TERM", clock=1000.0)
    assert decode_revocation(revocation.encode()) == revocation
    assert revocation.keep_until == 1060.0


@pytest.mark.parametrize(
    "body", [b"not json", b"{}", b'{"ids": "a", "keep_until": 1}', b'{"ids": [1], "keep_until": 1}']
)
def test_anything_else_in_the_log_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode_revocation(body)


def test_revoked_ids_are_kept_until_their_keep_until() -> None:
    kept = RevokedSet()
    assert kept.add(Revocation(("a",), keep_until=100.0), now=10.0) == ["a"]
    assert "a" in kept
    kept.prune(now=99.0, every=0)
    assert "a" in kept
    kept.prune(now=100.0, every=0)
    assert "a" not in kept


def test_a_revocation_already_run_out_is_not_kept() -> None:
    kept = RevokedSet()
    assert kept.add(Revocation(("a",), keep_until=5.0), now=10.0) == []
    assert "a" not in kept


def test_the_later_keep_until_wins_when_an_id_is_revoked_twice() -> None:
    kept = RevokedSet()
    kept.add(Revocation(("a",), keep_until=200.0), now=10.0)
    assert kept.add(Revocation(("a",), keep_until=100.0), now=10.0) == []
    kept.prune(now=150.0, every=0)
    assert "a" in kept


def test_meeting_the_revoked_message_with_an_expiry_shortens_what_is_kept() -> None:
    kept = RevokedSet()
    kept.add(Revocation(("a",), keep_until=10_000.0), now=10.0)
    kept.met("a", expires=50.0)
    kept.prune(now=50.0 + EXPIRES_MARGIN, every=0)
    assert "a" not in kept


def test_the_log_is_created_as_a_stream_with_a_retention_in_whole_seconds() -> None:
    assert stream_arguments(86400.0) == {"x-queue-type": "stream", "x-max-age": "86400s"}
    assert stream_arguments(0.2)["x-max-age"] == "1s"
