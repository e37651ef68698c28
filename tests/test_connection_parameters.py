"""The one seam between broker URLs and the client libraries (no broker needed)."""

from __future__ import annotations

import ssl
from pathlib import Path

import aio_pika
import pytest

from rabbitq.amqp.aio_connection import FailoverConnection
from rabbitq.amqp.connection_parameters import aio_targets, connection_failure, pika_parameters
from rabbitq.amqp.management import management_client, management_url_for
from rabbitq.broker_urls import endpoints
from rabbitq.errors import BrokerConnectionError, BrokerTlsError, ConfigurationError
from rabbitq.testing.certificates import make_certificates


def test_aio_pika_still_has_the_step_failover_overrides() -> None:
    # FailoverConnection replaces this one private step; an upgrade renaming it must fail
    # here, not silently stop failing over.
    assert hasattr(aio_pika.RobustConnection, "_RobustConnection__connect_transport")
    assert "_RobustConnection__connect_transport" in FailoverConnection.__dict__


def test_pika_gets_one_parameter_set_per_node_with_the_tuning_on_each() -> None:
    nodes = pika_parameters("amqp://a:1//;amqp://b:2//", heartbeat=7)
    assert [(p.host, p.port, p.heartbeat) for p in nodes] == [("a", 1, 7), ("b", 2, 7)]


def test_an_amqps_node_gets_an_ssl_context_trusting_its_ca(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    (parameters,) = pika_parameters(f"amqps://h:5671//?ca_certs={files.ca}")
    assert parameters.ssl_options is not None
    context = parameters.ssl_options.context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.get_ca_certs()  # ours, loaded


def test_aio_pika_is_given_our_context_and_the_url_without_tls_parameters(
    tmp_path: Path,
) -> None:
    files = make_certificates(tmp_path)
    (target,) = aio_targets(f"amqps://h:5671//?ca_certs={files.ca}&server_hostname=rabbit")
    assert target.url == "amqps://h:5671//"
    assert isinstance(target.context, ssl.SSLContext)
    assert target.server_hostname == "rabbit"


def test_a_client_certificate_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="client certificate"):
        pika_parameters(f"amqps://h//?certfile={tmp_path / 'none.pem'}")


def test_no_node_answering_is_a_connection_error_naming_each_without_passwords() -> None:
    nodes = endpoints("amqp://u:secret@a//;amqp://u:secret@b//")
    error = connection_failure([(node, ConnectionRefusedError(111, "refused")) for node in nodes])
    assert type(error) is BrokerConnectionError
    assert "a//" in str(error) and "b//" in str(error) and "secret" not in str(error)


def test_every_node_refusing_our_tls_is_a_tls_error() -> None:
    (node,) = endpoints("amqps://h//")
    refusal = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error = connection_failure([(node, OSError(refusal))])
    assert isinstance(error, BrokerTlsError)
    assert "not trusted" in str(error)


def test_a_tls_alert_pika_keeps_only_as_text_is_still_a_tls_error() -> None:
    (node,) = endpoints("amqps://h//")
    lost = OSError("Stream connection lost: SSLError(1, '[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED]")
    error = connection_failure([(node, lost)])
    assert isinstance(error, BrokerTlsError)
    assert "client certificate" in str(error)


def test_a_tls_connection_the_broker_ends_abruptly_is_a_tls_error_asking_for_a_certificate() -> (
    None
):
    # TLS 1.3: a broker refusing a client without a certificate may just close; pika keeps
    # only the text of the EOF it saw.
    (node,) = endpoints("amqps://h//")
    lost = OSError(
        "StreamLostError: (\"Stream connection lost: SSLEOFError(8, 'EOF occurred in violation "
        "of protocol (_ssl.c:2427)')\",)"
    )
    error = connection_failure([(node, lost)])
    assert isinstance(error, BrokerTlsError)
    assert "client certificate" in str(error)


def test_the_management_api_of_an_amqps_broker_is_guessed_as_https() -> None:
    assert management_url_for("amqps://u:p@rabbit//") == "https://u:p@rabbit:15671/"
    assert management_url_for("amqp://u:p@a//;amqp://u:p@b//") == "http://u:p@a:15672/"


def test_plain_http_management_for_an_amqps_broker_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="plain HTTP") as caught:
        management_client("amqps://u:secret@rabbit//", "http://u:secret@rabbit:15672/")
    assert "secret" not in str(caught.value)
