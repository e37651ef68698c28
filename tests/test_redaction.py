from __future__ import annotations

from rabbitq.redaction import redacted, without_password


def test_a_password_in_a_url_is_hidden() -> None:
    assert without_password("redis://user:secret@host:6379/0") == "redis://user:***@host:6379/0"
    assert (
        without_password("amqp://guest:guest@127.0.0.1:5672/") == "amqp://guest:***@127.0.0.1:5672/"
    )


def test_a_url_without_a_password_is_unchanged() -> None:
    assert without_password("amqp://localhost/") == "amqp://localhost/"
    assert without_password("redis://user@host/0") == "redis://user@host/0"


def test_each_password_of_a_failover_url_is_hidden() -> None:
    assert (
        without_password("amqp://a:one@h1//;amqps://b:two@h2/?ca_certs=/ca.pem")
        == "amqp://a:***@h1//;amqps://b:***@h2/?ca_certs=/ca.pem"
    )


def test_a_password_quoted_inside_a_client_library_s_error_is_hidden() -> None:
    text = "ConnectionRefused: amqp://ops:s3cret@rabbit:5672/ said no"
    assert redacted(text) == "ConnectionRefused: amqp://ops:***@rabbit:5672/ said no"


def test_a_password_holding_an_at_sign_is_hidden_whole() -> None:
    assert without_password("amqp://ops:p@ss@rabbit/") == "amqp://ops:***@rabbit/"
