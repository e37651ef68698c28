from __future__ import annotations

from rabbitq.redaction import without_password


def test_a_password_in_a_url_is_hidden() -> None:
    assert without_password("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert (
        without_password("amqp://guest:guest@127.0.0.1:5672/") == "amqp://guest:***@127.0.0.1:5672/"
    )


def test_a_url_without_a_password_is_unchanged() -> None:
    assert without_password("amqp://localhost/") == "amqp://localhost/"
    assert without_password("redis://user@host/0") == "redis://user@host/0"
