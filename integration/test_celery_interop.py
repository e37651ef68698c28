"""rabbitq and real Celery 5 on one broker: Celery producers to rabbitq workers, rabbitq
producers to Celery workers (solo pool, a subprocess), and results read by the other side."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celery
import pytest

import rabbitq
from integration.apps.interop_celery import make_app
from rabbitq.delays import LEVELS, level_name

from .celery_support import running_celery_worker
from .support import (
    consumer_count,
    drain_queue,
    queue_depth,
    ran_labels,
    running_worker,
    wait_for,
)

RESULT_TIMEOUT = 30


@pytest.fixture
def queue(unique_name: str) -> str:
    return f"interop_{unique_name}"


def labels(tmp_path: Path) -> list[str]:
    return ran_labels(tmp_path / "ran.txt")


def wait_for_label(tmp_path: Path, prefix: str, timeout: float = 30) -> str:
    wait_for(
        lambda: any(label.startswith(prefix) for label in labels(tmp_path)),
        timeout,
        lambda: f"no {prefix!r} in {labels(tmp_path)}",
    )
    return next(label for label in labels(tmp_path) if label.startswith(prefix))


# -- the migration, step by step (docs/migrating-from-celery.md) ---------------------------------


def test_a_queue_celery_declared_moves_to_a_rabbitq_worker_without_losing_a_task(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    before = make_app(queue, None, before_migration=True)
    before.conf.broker_url = broker_url
    after = make_app(queue, None)  # its route now points at the rabbitq exchange
    after.conf.broker_url = broker_url
    with running_celery_worker(broker_url, queue, tmp_path, before_migration=True):
        before.send_task("interop.add", (1, 1))
        wait_for_label(tmp_path, "celery add 1 1")
        # Step 2: a rabbitq worker joins on the same queue; it adopts the queue as Celery
        # declared it and binds it to the rabbitq exchange.
        with running_worker(
            broker_url,
            queue,
            tmp_path,
            app="integration.apps.interop_rabbitq",
            env={"INTEROP_QUEUE": queue},
        ) as worker:
            wait_for(lambda: consumer_count(broker_url, queue) == 2, 30, worker.log)
            for n in range(10):  # step 3: producers switch routes; both workers consume
                (before if n % 2 else after).send_task("interop.add", (n, 100))
            wait_for(lambda: len(labels(tmp_path)) == 11, 30, lambda: str(labels(tmp_path)))
    # Step 4: the Celery worker has stopped; the rabbitq worker carries on alone.
    with running_worker(
        broker_url, queue, tmp_path, app="integration.apps.interop_rabbitq",
        env={"INTEROP_QUEUE": queue},
    ):  # fmt: skip
        after.send_task("interop.add", (7, 7))
        wait_for_label(tmp_path, "rabbitq add 7 7")
    done = labels(tmp_path)
    assert sorted(int(label.split()[2]) for label in done[1:11]) == list(range(10))
    assert {label.split()[0] for label in done} == {"celery", "rabbitq"}
    before.close()
    after.close()


# -- Celery producer -> rabbitq worker ----------------------------------------------------------


@pytest.fixture
def rabbitq_worker(broker_url: str, queue: str, tmp_path: Path) -> Iterator[Any]:
    """A rabbitq worker (rpc results) on the queue Celery's routes point at."""
    with running_worker(
        broker_url,
        queue,
        tmp_path,
        app="integration.apps.interop_rabbitq",
        env={"INTEROP_QUEUE": queue, "RABBITQ_RESULT_BACKEND": "rpc://"},
    ) as worker:
        yield worker


@pytest.fixture
def celery_caller(broker_url: str, queue: str) -> Iterator[celery.Celery]:
    caller = make_app(queue, "rpc://")
    caller.conf.broker_url = broker_url
    yield caller
    caller.close()


def test_celery_send_task_with_args_runs_on_rabbitq_and_celery_gets_the_rpc_result(
    rabbitq_worker: Any, celery_caller: celery.Celery, tmp_path: Path
) -> None:
    result = celery_caller.send_task("interop.add", (2, 3))
    # Celery accepts only JSON results here: the worker answered in the task's serializer.
    assert result.get(timeout=RESULT_TIMEOUT) == 5
    assert labels(tmp_path) == ["rabbitq add 2 3"]


def test_celery_kwargs_reach_the_rabbitq_task(
    rabbitq_worker: Any, celery_caller: celery.Celery
) -> None:
    result = celery_caller.send_task("interop.echo", (1, "x"), {"k": [1, 2], "n": None})
    assert result.get(timeout=RESULT_TIMEOUT) == {
        "args": [1, "x"],
        "kwargs": {"k": [1, 2], "n": None},
    }


def test_celery_msgpack_message_runs_on_rabbitq(
    rabbitq_worker: Any, celery_caller: celery.Celery, tmp_path: Path
) -> None:
    celery_caller.send_task("interop.echo", ("packed",), {"b": 2}, serializer="msgpack")
    seen = json.loads(wait_for_label(tmp_path, "rabbitq echo ").removeprefix("rabbitq echo "))
    assert seen == {"args": ["packed"], "kwargs": {"b": 2}, "retries": 0}


def test_celery_retries_header_is_the_rabbitq_attempt_count(
    rabbitq_worker: Any, celery_caller: celery.Celery, tmp_path: Path
) -> None:
    celery_caller.send_task("interop.echo", ("again",), retries=2)
    seen = json.loads(wait_for_label(tmp_path, "rabbitq echo ").removeprefix("rabbitq echo "))
    assert seen["retries"] == 2


def test_celery_countdown_waits_in_the_delay_levels_not_in_worker_memory(
    rabbitq_worker: Any,
    celery_caller: celery.Celery,
    tmp_path: Path,
    broker_url: str,
) -> None:
    sent = time.time()
    celery_caller.send_task("interop.when", ("late",), countdown=4)
    wait_for(
        lambda: "sent through the delay levels" in rabbitq_worker.log(),
        10,
        lambda: rabbitq_worker.log()[-2000:],
    )
    # While it waits, it sits in a delay level queue: a message cannot also be held, unacked,
    # by the worker.
    assert sum(queue_depth(broker_url, level_name(n)) for n in range(LEVELS)) == 1
    _, started, eta = wait_for_label(tmp_path, "late ", timeout=30).split()
    assert float(started) >= float(eta) >= sent + 3.9


def test_celery_message_already_expired_is_dead_lettered_with_the_reason(
    rabbitq_worker: Any, celery_caller: celery.Celery, tmp_path: Path, queue: str
) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    result = celery_caller.send_task("interop.add", (1, 1), expires=past)
    wait_for(lambda: rabbitq_worker.log().count("expired") >= 1, 20, rabbitq_worker.log)
    dead = drain_queue(rabbitq_worker.broker_url, f"{queue}.dead")
    assert [p.headers["rabbitq_reason"] for p, _ in dead] == ["expired"]
    assert dead[0][0].headers["id"] == result.id
    assert labels(tmp_path) == []


def test_celery_chain_continues_on_rabbitq_workers(
    rabbitq_worker: Any, celery_caller: celery.Celery, tmp_path: Path
) -> None:
    workflow = celery.chain(
        celery_caller.signature("interop.add", (1, 2)),
        celery_caller.signature("interop.add", (3,)),
        celery_caller.signature("interop.add", (4,)),
    )
    assert workflow.apply_async().get(timeout=RESULT_TIMEOUT) == 10
    assert labels(tmp_path) == ["rabbitq add 1 2", "rabbitq add 3 3", "rabbitq add 6 4"]


def test_celery_link_runs_on_rabbitq_with_the_result(
    rabbitq_worker: Any, celery_caller: celery.Celery, tmp_path: Path
) -> None:
    celery_caller.send_task(
        "interop.add", (1, 1), link=celery_caller.signature("interop.add", (10,))
    )
    wait_for_label(tmp_path, "rabbitq add 2 10")


def test_celery_link_error_runs_on_rabbitq_with_the_failed_id(
    rabbitq_worker: Any, celery_caller: celery.Celery, tmp_path: Path
) -> None:
    result = celery_caller.send_task(
        "interop.fail", ("boom",), link_error=celery_caller.signature("interop.errback")
    )
    assert wait_for_label(tmp_path, "rabbitq errback") == f"rabbitq errback {result.id} ValueError"


def test_celery_group_runs_on_rabbitq_and_celery_joins_it(
    rabbitq_worker: Any, celery_caller: celery.Celery
) -> None:
    workflow = celery.group(celery_caller.signature("interop.add", (i, i)) for i in range(5))
    assert workflow.apply_async().get(timeout=RESULT_TIMEOUT) == [0, 2, 4, 6, 8]


def test_celery_chord_member_is_dead_lettered_as_unsupported(
    rabbitq_worker: Any, broker_url: str, redis_url: str, tmp_path: Path, queue: str
) -> None:
    # Celery joins chords in its result backend; a rabbitq worker cannot, and says so.
    caller = make_app(queue, redis_url)  # Celery refuses chords over rpc://
    caller.conf.broker_url = broker_url
    members = [caller.signature("interop.add", (i, i)) for i in range(2)]
    celery.chord(members)(caller.signature("interop.add", (100,)))
    caller.close()
    wait_for(lambda: queue_depth(rabbitq_worker.broker_url, f"{queue}.dead") == 2, 20)
    dead = drain_queue(rabbitq_worker.broker_url, f"{queue}.dead")
    assert {p.headers["rabbitq_reason"] for p, _ in dead} == {"unsupported"}
    assert "Celery chord" in dead[0][0].headers["rabbitq_exception_message"]
    assert labels(tmp_path) == []


def test_celery_reads_the_redis_result_of_a_rabbitq_worker(
    broker_url: str, redis_url: str, queue: str, tmp_path: Path
) -> None:
    caller = make_app(queue, redis_url)
    caller.conf.broker_url = broker_url
    with running_worker(
        broker_url,
        queue,
        tmp_path,
        app="integration.apps.interop_rabbitq",
        env={"INTEROP_QUEUE": queue, "RABBITQ_RESULT_BACKEND": redis_url},
    ):
        assert caller.send_task("interop.add", (20, 22)).get(timeout=RESULT_TIMEOUT) == 42
        failed = caller.send_task("interop.fail", ("kaput",))
        with pytest.raises(Exception, match="kaput") as raised:
            failed.get(timeout=RESULT_TIMEOUT)
        assert type(raised.value).__name__ == "ValueError"
    caller.close()


# -- rabbitq producer -> Celery worker ----------------------------------------------------------


def rabbitq_caller(broker_url: str, queue: str, **options: Any) -> rabbitq.App:
    return rabbitq.App("interop-caller", broker=broker_url, default_queue=queue, **options)


def test_rabbitq_delay_runs_on_a_celery_worker_in_msgpack(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    app = rabbitq_caller(broker_url, queue)  # msgpack, rabbitq's default
    with running_celery_worker(broker_url, queue, tmp_path):
        app.send_task("interop.echo", (1, "two"), {"three": [3]})
        seen = json.loads(wait_for_label(tmp_path, "celery echo ").removeprefix("celery echo "))
    assert seen == {"args": [1, "two"], "kwargs": {"three": [3]}, "retries": 0}
    app.close()


def test_rabbitq_json_task_runs_on_a_celery_worker(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    app = rabbitq_caller(broker_url, queue, serializer="json")
    with running_celery_worker(broker_url, queue, tmp_path):
        app.send_task("interop.add", (4, 5))
        wait_for_label(tmp_path, "celery add 4 5")
    app.close()


def test_rabbitq_countdown_runs_on_a_celery_worker_after_the_delay(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    app = rabbitq_caller(broker_url, queue)
    with running_celery_worker(broker_url, queue, tmp_path):
        sent = time.time()
        app.send_task("interop.when", ("delayed",), countdown=3)
        _, started, _eta = wait_for_label(tmp_path, "delayed ", timeout=30).split(" ", 2)
    assert float(started) >= sent + 3
    app.close()


@pytest.mark.parametrize("backend", ["rpc", "redis"])
def test_rabbitq_reads_the_result_of_a_celery_worker(
    broker_url: str, redis_url: str, queue: str, tmp_path: Path, backend: str
) -> None:
    url = "rpc://" if backend == "rpc" else redis_url
    app = rabbitq_caller(broker_url, queue, result_backend=url)
    with running_celery_worker(broker_url, queue, tmp_path, backend=url):
        assert app.send_task("interop.add", (2, 40)).get(timeout=RESULT_TIMEOUT) == 42
        failed = app.send_task("interop.fail", ("celery says no",))
        with pytest.raises(rabbitq.TaskError) as raised:
            failed.get(timeout=RESULT_TIMEOUT)
    assert raised.value.exc_type == "ValueError"
    assert "celery says no" in str(raised.value)
    app.close()


@pytest.mark.parametrize("backend", ["rpc", "redis"])
def test_rabbitq_chain_runs_on_celery_workers(
    broker_url: str, redis_url: str, queue: str, tmp_path: Path, backend: str
) -> None:
    url = "rpc://" if backend == "rpc" else redis_url
    app = rabbitq_caller(broker_url, queue, result_backend=url)
    add = rabbitq.Signature("interop.add", (1, 2), app=app)
    with running_celery_worker(broker_url, queue, tmp_path, backend=url):
        result = (add | rabbitq.Signature("interop.add", (3,), app=app)).apply_async()
        assert result.get(timeout=RESULT_TIMEOUT) == 6
    assert labels(tmp_path) == ["celery add 1 2", "celery add 3 3"]
    app.close()
