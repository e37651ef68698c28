"""A broker URL as App(broker=..., broker_use_ssl=...) reads it: several nodes, TLS settings."""

from __future__ import annotations

import ssl

import pytest

from rabbitq import App
from rabbitq.broker_urls import broker_url, endpoints, first_url
from rabbitq.errors import ConfigurationError


def test_a_list_of_urls_becomes_one_semicolon_joined_url() -> None:
    assert broker_url(["amqp://a//", "amqp://b//"], None) == "amqp://a//;amqp://b//"


def test_the_nodes_of_a_failover_url_are_tried_in_their_order() -> None:
    nodes = endpoints("amqp://a:1//; amqp://b:2//")
    assert [node.host for node in nodes] == ["a", "b"]
    assert first_url("amqp://a//;amqp://b//") == "amqp://a//"


def test_an_app_given_a_list_of_brokers_keeps_all_of_them() -> None:
    app = App(broker=["amqp://guest:guest@a:5672//", "amqp://guest:guest@b:5672//"])
    assert app.broker_url.count(";") == 1


def test_broker_use_ssl_turns_amqp_into_amqps_carrying_its_settings() -> None:
    url = broker_url("amqp://h:5671//", {"ca_certs": "/etc/ca.pem"})
    assert url == "amqps://h:5671//?ca_certs=/etc/ca.pem"
    (node,) = endpoints(url)
    assert node.url == "amqps://h:5671//"
    assert node.tls is not None and node.tls.ca_certs == "/etc/ca.pem"


def test_broker_use_ssl_true_verifies_against_the_system_s_cas() -> None:
    (node,) = endpoints(broker_url("amqp://h//", True))
    assert node.tls is not None
    assert node.tls.cert_reqs == ssl.CERT_REQUIRED and node.tls.check_hostname


def test_an_amqps_url_without_settings_still_verifies() -> None:
    (node,) = endpoints("amqps://h//")
    assert node.tls is not None and node.tls.cert_reqs == ssl.CERT_REQUIRED


def test_cert_reqs_by_name_or_constant_is_understood() -> None:
    for value in ("CERT_NONE", ssl.CERT_NONE, "none"):
        (node,) = endpoints(broker_url("amqps://h//", {"cert_reqs": value}))
        assert node.tls is not None and node.tls.cert_reqs == ssl.CERT_NONE


def test_an_unknown_broker_use_ssl_key_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match="'ca_cert'"):
        App(broker="amqp://h//", broker_use_ssl={"ca_cert": "/ca.pem"})


def test_a_keyfile_without_a_certfile_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="keyfile without certfile"):
        broker_url("amqps://h//", {"keyfile": "/k.pem"})


def test_tls_settings_on_a_plain_amqp_url_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="use amqps://"):
        endpoints("amqp://h//?ca_certs=/ca.pem")


def test_a_url_of_another_scheme_is_refused_without_its_password() -> None:
    with pytest.raises(ConfigurationError, match="expected amqp://") as caught:
        App(broker="redis://u:secret@h//;amqp://h//")
    assert "secret" not in str(caught.value)


def test_the_in_memory_broker_cannot_be_one_of_several_nodes() -> None:
    with pytest.raises(ConfigurationError, match="in-memory"):
        broker_url("memory://a;amqp://h//", None)


def test_the_in_memory_broker_has_no_tls() -> None:
    with pytest.raises(ConfigurationError, match="no TLS"):
        broker_url("memory://a", True)


def test_broker_use_ssl_contradicting_the_url_s_own_setting_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="the broker URL says"):
        broker_url("amqps://h//?ca_certs=/a.pem", {"ca_certs": "/b.pem"})


def test_an_empty_list_of_brokers_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no URL"):
        broker_url(";", None)
