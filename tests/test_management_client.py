"""The management API client's URL handling (``amqp/management.py``); no broker needed."""

from __future__ import annotations

import base64

from rabbitq.amqp.management import ManagementClient, management_url_for


def basic_credentials(client: ManagementClient) -> str:
    return base64.b64decode(client._auth.removeprefix("Basic ")).decode()


def test_percent_encoded_credentials_are_sent_decoded() -> None:
    client = ManagementClient("http://ops%40shop:p%25ss%3Aword@rabbit:15672/")
    assert basic_credentials(client) == "ops@shop:p%ss:word"


def test_the_guessed_management_url_keeps_the_brokers_credentials_usable() -> None:
    url = management_url_for("amqp://ops%40shop:p%25ss@rabbit:5672/vhost")
    assert basic_credentials(ManagementClient(url)) == "ops@shop:p%ss"
    assert ManagementClient(url).base == "http://rabbit:15672"
