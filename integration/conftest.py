"""Broker fixtures: $RABBITQ_TEST_URL, else a throwaway local node, else testcontainers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

import rabbitq
from rabbitq.testing import LocalBroker


def _docker_engine_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def local_broker_or_none() -> Iterator[LocalBroker | None]:
    if os.environ.get("RABBITQ_TEST_URL"):
        yield None
        return
    try:
        broker = LocalBroker(management=True)
        broker.start()
    except Exception as exc:
        if _docker_engine_answers():
            yield None
            return
        pytest.fail(f"no broker for the integration tests: {exc}")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def broker_url(local_broker_or_none: LocalBroker | None) -> Iterator[str]:
    if local_broker_or_none is not None:
        yield local_broker_or_none.url
        return
    url = os.environ.get("RABBITQ_TEST_URL")
    if url:
        yield url
        return
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-management") as container:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


@pytest.fixture(scope="session")
def management_url(local_broker_or_none: LocalBroker | None) -> str:
    if local_broker_or_none is None or local_broker_or_none.management_url is None:
        url = os.environ.get("RABBITQ_TEST_MANAGEMENT_URL")
        if not url:
            pytest.skip("needs the management API (set RABBITQ_TEST_MANAGEMENT_URL)")
        return url
    return local_broker_or_none.management_url


@pytest.fixture
def restartable_broker() -> Iterator[LocalBroker]:
    """A broker of the test's own, which it may stop, kill and restart."""
    if os.environ.get("RABBITQ_TEST_URL"):
        pytest.skip("needs a broker the tests can restart (RABBITQ_TEST_URL is set)")
    with LocalBroker() as broker:
        yield broker


@pytest.fixture
def app(broker_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[rabbitq.App]:
    """The app the integration workers run, publishing to this session's broker."""
    from integration.apps import core_app

    monkeypatch.setattr(core_app.app, "broker_url", broker_url)
    core_app.app._ensured_queues.clear()
    core_app.app._delay_levels_pid = None
    yield core_app.app
    core_app.app.close()


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
