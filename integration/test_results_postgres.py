"""The PostgreSQL backend's own behaviour against a real server (the shared result specs, run
over every backend, are in test_results.py): expiry and cleanup, NOTIFY wake-ups, the table."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

import rabbitq
from rabbitq.results.factory import backend_from_url
from rabbitq.results.meta import success
from rabbitq.results.postgres import TABLE, PostgresBackend
from rabbitq.serializers import serializer_named

MSGPACK = serializer_named("msgpack")


@pytest.fixture
def backend() -> Iterator[Callable[..., PostgresBackend]]:
    """Backends made by the test, closed after it."""
    made: list[PostgresBackend] = []

    def make(url: str, expires: float | None = 60.0) -> PostgresBackend:
        found = backend_from_url(url, MSGPACK, expires)
        assert isinstance(found, PostgresBackend)
        made.append(found)
        return found

    yield make
    for each in made:
        each.close()


def store(target: PostgresBackend, task_id: str, value: object) -> None:
    async def main() -> None:
        await target.store(success(task_id, value), None, None)  # type: ignore[arg-type]
        await target.aclose()

    asyncio.run(main())


def test_results_are_stored_in_the_tasks_serializer_never_pickle(
    postgres_url: str, backend: Callable[..., PostgresBackend]
) -> None:
    task_id = uuid.uuid4().hex
    store(backend(postgres_url), task_id, {"n": 1})
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute(
            f"SELECT status, content_type, document FROM {TABLE} WHERE task_id = %s", (task_id,)
        ).fetchone()
    assert row is not None and row[0] == "SUCCESS" and row[1] == "msgpack"
    assert MSGPACK.loads(bytes(row[2]))["result"] == {"n": 1}


def test_an_expired_result_is_pending_at_once_and_cleanup_deletes_it(
    postgres_url: str, backend: Callable[..., PostgresBackend]
) -> None:
    short, kept = backend(postgres_url, expires=0.05), backend(postgres_url, expires=None)
    expired_id, kept_id = uuid.uuid4().hex, uuid.uuid4().hex
    store(short, expired_id, 1)
    store(kept, kept_id, 2)
    time.sleep(0.1)
    assert short.state(expired_id).status == "PENDING"
    assert short.cleanup() >= 1
    assert short.cleanup() == 0
    assert kept.state(kept_id).result == 2  # no expiry: kept


def test_a_waiting_get_is_woken_by_the_write_not_by_polling(
    postgres_url: str, backend: Callable[..., PostgresBackend]
) -> None:
    reader, writer = backend(postgres_url), backend(postgres_url)
    task_id = uuid.uuid4().hex
    threading.Timer(0.2, store, (writer, task_id, "late")).start()
    started = time.monotonic()
    found = reader.wait([task_id, "never-sent"], timeout=1.5)
    assert found[task_id].result == "late" and "never-sent" not in found
    assert time.monotonic() - started >= 1.5  # still waited for the other one
    second = uuid.uuid4().hex
    threading.Timer(0.2, store, (writer, second, "again")).start()
    started = time.monotonic()
    assert reader.wait([second], timeout=10)[second].result == "again"  # the kept connection
    assert time.monotonic() - started < 10  # returned on the write, not at its timeout


def test_a_waiting_aget_is_woken_and_a_timeout_returns_none(
    postgres_url: str, backend: Callable[..., PostgresBackend]
) -> None:
    target = backend(postgres_url)
    task_id = uuid.uuid4().hex

    async def main() -> tuple[object, object]:
        nothing = await target.await_ready(task_id, 0.2)
        waiting = asyncio.create_task(target.await_ready(task_id, 10))
        await asyncio.sleep(0.1)
        await target.store(success(task_id, 7), None, None)  # type: ignore[arg-type]
        found = await waiting
        await target.aclose()
        return nothing, found and found.result

    assert asyncio.run(main()) == (None, 7)


def test_processes_creating_the_table_at_once_do_not_collide(
    postgres_url: str, backend: Callable[..., PostgresBackend]
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS racing")
    url = f"{postgres_url}?options=-c%20search_path%3Dracing"
    errors: list[BaseException] = []

    def first_use() -> None:
        try:
            backend(url).state("t")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_connections_dropped_by_the_server_are_replaced(
    postgres_url: str, backend: Callable[..., PostgresBackend]
) -> None:
    target = backend(postgres_url)
    task_id = uuid.uuid4().hex
    store(target, task_id, "kept")
    assert target.state(task_id).result == "kept"
    assert target.wait([task_id], 1)[task_id].result == "kept"  # keeps its waiting connection
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'rabbitq' AND pid <> pg_backend_pid()"
        )
    assert target.state(task_id).result == "kept"
    assert target.wait([task_id], 1)[task_id].result == "kept"


def test_the_builtin_cleanup_task_deletes_the_apps_expired_results(
    postgres_url: str, backend: Callable[..., PostgresBackend]
) -> None:
    app = rabbitq.App(
        "cleanup", "amqp://guest:guest@127.0.0.1:1/", result_backend=postgres_url,
        result_expires=0.05,
    )  # fmt: skip
    store(backend(postgres_url, expires=0.05), uuid.uuid4().hex, 1)
    time.sleep(0.1)
    try:
        assert app.get_task("celery.backend_cleanup")() >= 1
    finally:
        assert isinstance(app.backend, PostgresBackend)
        app.backend.close()
