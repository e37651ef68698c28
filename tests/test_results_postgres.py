"""The PostgreSQL backend's parts that need no server: URL forms, connection parameters,
a refused connection, the cleanup task. Its behaviour against a real PostgreSQL is in
integration/test_results.py."""

from __future__ import annotations

import pytest

import rabbitq
from rabbitq.errors import ResultBackendError
from rabbitq.results.backend import ResultBackend
from rabbitq.results.factory import backend_from_url
from rabbitq.results.postgres import PostgresBackend, connection_params
from rabbitq.serializers import serializer_named
from rabbitq.testing import free_port

JSON = serializer_named("json")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:pw@127.0.0.1:5432/results",
        "postgres://user:pw@127.0.0.1:5432/results",
        "db+postgresql://user:pw@127.0.0.1:5432/results",
    ],
)
def test_postgres_urls_choose_the_postgres_backend(url: str) -> None:
    backend = backend_from_url(url, JSON, 60)
    assert isinstance(backend, PostgresBackend)
    assert backend.params["host"] == "127.0.0.1" and backend.params["dbname"] == "results"


def test_celerys_db_prefix_is_dropped_and_our_timeouts_are_defaults() -> None:
    params = connection_params("db+postgresql://user:pw@127.0.0.1:5433/results")
    assert params["port"] == "5433" and params["user"] == "user" and params["password"] == "pw"
    assert params["connect_timeout"] == 5
    assert params["options"] == "-c statement_timeout=10000"


def test_the_url_overrides_the_timeouts() -> None:
    params = connection_params(
        "postgresql://127.0.0.1/results?connect_timeout=2&options=-c%20statement_timeout%3D500"
    )
    assert params["connect_timeout"] == "2"
    assert params["options"] == "-c statement_timeout=500"


def test_a_refused_connection_raises_result_backend_error_without_the_password() -> None:
    url = f"postgresql://user:secret@127.0.0.1:{free_port()}/results?connect_timeout=2"
    backend = backend_from_url(url, JSON, 60)
    for call in (lambda: backend.state("t1"), lambda: backend.wait(["t1"], 1.0)):
        with pytest.raises(ResultBackendError, match="did not answer") as caught:
            call()
        assert "secret" not in str(caught.value) and "user:***@127.0.0.1" in str(caught.value)


async def test_a_refused_connection_raises_result_backend_error_in_async_callers() -> None:
    url = f"postgresql://user:secret@127.0.0.1:{free_port()}/results?connect_timeout=2"
    backend = backend_from_url(url, JSON, 60)
    with pytest.raises(ResultBackendError, match="did not answer") as caught:
        await backend.await_ready("t1", 1.0)
    assert "secret" not in str(caught.value)


def test_backends_that_expire_by_themselves_have_nothing_to_clean_up() -> None:
    assert ResultBackend.cleanup(backend_from_url("rpc://", JSON, 60)) == 0


def test_the_cleanup_task_is_built_in_under_celerys_name() -> None:
    app = rabbitq.App("cleanup", broker="amqp://guest:guest@127.0.0.1:1/")
    assert app.get_task("celery.backend_cleanup")() == 0  # no backend: nothing to do
