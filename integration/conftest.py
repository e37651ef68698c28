"""Broker fixtures: $RABBITQ_TEST_URL, else a throwaway local node, else testcontainers.

Under pytest-xdist (scripts/test.sh runs the integration tests in two processes) each process
has a broker of its own: a throwaway node each, or one of the space-separated
$RABBITQ_TEST_URLS (and $RABBITQ_TEST_MANAGEMENT_URLS) by the process's number, so no test ever
sees another's workers, events or connections.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rabbitq
from rabbitq.testing import LocalBroker


def _this_process_s_broker() -> None:
    """Name this xdist process's broker in $RABBITQ_TEST_URL, which everything else reads."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    if not worker.startswith("gw"):
        return
    for many, one in (
        ("RABBITQ_TEST_URLS", "RABBITQ_TEST_URL"),
        ("RABBITQ_TEST_MANAGEMENT_URLS", "RABBITQ_TEST_MANAGEMENT_URL"),
    ):
        urls = os.environ.get(many, "").split()
        if not urls:
            if one == "RABBITQ_TEST_URL" and os.environ.get(one):
                raise pytest.UsageError(
                    f"${one} names one broker for several pytest processes: name one per "
                    f"process in ${many} or run serially (RABBITQ_TEST_PROCESSES=0)"
                )
            continue
        number = int(worker[2:])
        if number >= len(urls):
            # Sharing a broker, tests would see each other's workers and events: refuse.
            raise pytest.UsageError(
                f"${many} names {len(urls)} broker(s), too few for pytest process {worker}: "
                "give one broker per process (-n) or run serially"
            )
        os.environ[one] = urls[number]


_this_process_s_broker()


def _docker_engine_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


# Fixtures that start nodes of the machine's own RabbitMQ (3.10), whatever broker the run
# was given.
OWN_BROKER_FIXTURES = frozenset({"small_broker", "broker_not_started_yet", "restartable_broker"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In the RabbitMQ 4.0 pass (``RABBITQ_TEST_BROKER_PASS``), skip what only starts the
    machine's own 3.10 nodes again, and what is marked ``first_pass_only`` (what the worker
    process, a framework, the command line, logs or a result backend do, with the broker only
    as a transport): the first pass ran them, and they say nothing about 4.0."""
    if not os.environ.get("RABBITQ_TEST_BROKER_PASS"):
        return
    skip = pytest.mark.skip(reason="runs the machine's own RabbitMQ nodes; the first pass ran it")
    once = pytest.mark.skip(reason="says nothing about the broker's version; the first pass ran it")
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("own_broker") or fixtures & OWN_BROKER_FIXTURES:
            item.add_marker(skip)
        elif item.get_closest_marker("first_pass_only"):
            item.add_marker(once)


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
    core_app.app._declare_once.reset()
    yield core_app.app
    core_app.app.close()


@pytest.fixture
def unique_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server for the Redis result backend tests."""
    from rabbitq.testing import LocalRedis

    with LocalRedis() as redis:
        yield redis.url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster for the PostgreSQL result backend tests."""
    from rabbitq.testing import LocalPostgres

    with LocalPostgres() as postgres:
        yield postgres.url


@dataclasses.dataclass
class CanvasSetup:
    """The canvas test app in this process, and how to start its worker."""

    app: rabbitq.App
    queue: str
    env: dict[str, str]
    tmp_path: Path

    def worker(self, *extra: str, env: dict[str, str] | None = None) -> Any:
        from integration.support import running_worker

        return running_worker(
            self.app.broker_url,
            self.queue,
            self.tmp_path,
            *extra,
            env={**self.env, **(env or {})},
            app="integration.apps.canvas_app",
        )

    @property
    def record_file(self) -> Path:
        return self.tmp_path / "ran.txt"


def _canvas_setup(
    broker_url: str,
    backend: str | None,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CanvasSetup]:
    from integration.apps import canvas_app

    app = canvas_app.app
    monkeypatch.setattr(app, "broker_url", broker_url)
    monkeypatch.setattr(app, "default_queue", unique_name)
    monkeypatch.setattr(app, "result_backend_url", backend)
    monkeypatch.setattr(app, "_backend", None)
    monkeypatch.setenv("RABBITQ_TEST_RECORD", str(tmp_path / "ran.txt"))
    app._declare_once.reset()
    env = {"RABBITQ_TEST_QUEUE": unique_name, "RABBITQ_RESULT_BACKEND": backend or ""}
    yield CanvasSetup(app, unique_name, env, tmp_path)
    app.close()
    app._publisher = None


@pytest.fixture(params=["rpc", "redis", "postgres"])
def results_setup(
    request: pytest.FixtureRequest,
    broker_url: str,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[CanvasSetup]:
    """The canvas app with each result backend in turn."""
    backend = (
        "rpc://" if request.param == "rpc" else request.getfixturevalue(f"{request.param}_url")
    )
    yield from _canvas_setup(broker_url, backend, unique_name, tmp_path, monkeypatch)


@pytest.fixture
def canvas(
    broker_url: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CanvasSetup]:
    """The canvas app with NO result backend: workflows must not need one."""
    yield from _canvas_setup(broker_url, None, unique_name, tmp_path, monkeypatch)


@pytest.fixture
def rpc_canvas(
    broker_url: str, unique_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CanvasSetup]:
    """The canvas app with the rpc backend, to read workflow results."""
    yield from _canvas_setup(broker_url, "rpc://", unique_name, tmp_path, monkeypatch)
