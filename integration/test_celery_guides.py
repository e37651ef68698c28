"""Celery's "Calling Tasks" and "Canvas: Designing Work-flows" guides, section by section, in
the guides' own spelling, against a real worker, with results over rpc:// and Redis.

Each test is one section of a guide; its examples are written as the guide writes them (the
tasks are in ``integration/apps/guides_app.py``), only with a ``timeout`` on ``get()`` and
short countdowns. Where rabbitq differs on purpose, the test says so and
docs/migrating-from-celery.md lists it ("Celery's guides"). The same conventions without a
broker: ``tests/test_celery_calling.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rabbitq
from integration.apps import guides_app
from integration.apps.guides_app import (
    add,
    create_user,
    fail,
    import_contacts,
    log_error,
    log_result,
    mul,
    reset_buffers,
    send_email,
    send_welcome_email,
    subtract,
    tsum,
)
from integration.support import WorkerProcess, running_worker, wait_for
from rabbitq import chain, chord, group, signature

TIMEOUT = 30


@dataclasses.dataclass
class Guide:
    """The guides' app in this process, and how to start its worker."""

    app: rabbitq.App
    queue: str
    env: dict[str, str]
    tmp_path: Path

    def worker(self, queues: str | None = None) -> Any:
        return running_worker(
            self.app.broker_url,
            queues or self.queue,
            self.tmp_path,
            env=self.env,
            app="integration.apps.guides_app",
        )

    def recorded(self) -> list[str]:
        path = self.tmp_path / "ran.txt"
        return path.read_text().splitlines() if path.exists() else []

    def wait_recorded(self, prefix: str, count: int = 1) -> list[str]:
        wait_for(
            lambda: len([r for r in self.recorded() if r.startswith(prefix)]) >= count,
            TIMEOUT,
            lambda: f"fewer than {count} records {prefix!r}: {self.recorded()[-5:]}",
        )
        return [r for r in self.recorded() if r.startswith(prefix)]


@pytest.fixture(params=["rpc", "redis"])
def guide(
    request: pytest.FixtureRequest,
    broker_url: str,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Guide]:
    backend = "rpc://" if request.param == "rpc" else request.getfixturevalue("redis_url")
    app = guides_app.app
    monkeypatch.setattr(app, "broker_url", broker_url)
    monkeypatch.setattr(app, "default_queue", unique_name)
    monkeypatch.setattr(app, "result_backend_url", backend)
    monkeypatch.setattr(app, "_backend", None)
    monkeypatch.setattr(send_email, "queue", f"{unique_name}-emails")
    monkeypatch.setenv("RABBITQ_TEST_RECORD", str(tmp_path / "ran.txt"))
    app._declare_once.reset()
    env = {"RABBITQ_TEST_QUEUE": unique_name, "RABBITQ_RESULT_BACKEND": backend}
    yield Guide(app, unique_name, env, tmp_path)
    app.close()
    app._publisher = None


# == Calling Tasks ===========================================================================


def test_calling_basics(guide: Guide) -> None:
    with guide.worker():
        assert add.delay(2, 2).get(timeout=TIMEOUT) == 4
        assert add.apply_async((2,), {"y": 2}).get(timeout=TIMEOUT) == 4
        assert add.apply_async(args=[2, 2], kwargs={}).get(timeout=TIMEOUT) == 4
        assert add.s(2, 2).apply_async().get(timeout=TIMEOUT) == 4
        own_id = f"my_own_task_id-{guide.queue}"
        result = add.apply_async((1, 1), task_id=own_id)
        assert result.id == own_id and result.get(timeout=TIMEOUT) == 2
        assert guide.app.send_task(add.name, (3, 3)).get(timeout=TIMEOUT) == 6


def test_calling_linking_callbacks_and_errbacks(guide: Guide) -> None:
    with guide.worker():
        result = add.apply_async((2, 2), link=add.s(16))
        assert result.get(timeout=TIMEOUT) == 4
        wait_for(lambda: result.children is not None, TIMEOUT)
        (child,) = result.children or []
        assert child.get(timeout=TIMEOUT) == 20  # (2 + 2) + 16

        both = add.apply_async((2, 2), link=[add.s(16), mul.s(2)])
        assert both.get(timeout=TIMEOUT) == 4
        assert [c.get(timeout=TIMEOUT) for c in both.children or []] == [20, 8]

        # Errbacks are called the old way, with the failed task's id (see "What differs").
        failed = fail.apply_async(link_error=log_error.s())
        (line,) = guide.wait_recorded("error")
    assert line == f"error {failed.id} ValueError"


def test_calling_eta_and_countdown(guide: Guide) -> None:
    with guide.worker():
        started = time.monotonic()
        result = add.apply_async((2, 2), countdown=1)
        assert result.get(timeout=TIMEOUT) == 4
        assert time.monotonic() - started >= 1.0
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        assert add.apply_async((2, 2), eta=soon).get(timeout=TIMEOUT) == 4


def test_calling_expiration(guide: Guide) -> None:
    with guide.worker():
        assert add.apply_async((10, 10), expires=60).get(timeout=TIMEOUT) == 20
        tomorrow = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        assert add.apply_async((10,), {"y": 10}, expires=tomorrow).get(timeout=TIMEOUT) == 20


def test_calling_serializers(guide: Guide) -> None:
    with guide.worker():
        assert add.apply_async((10, 10), serializer="json").get(timeout=TIMEOUT) == 20


def test_calling_connections_the_group_example(guide: Guide) -> None:
    numbers = [(2, 2), (4, 4), (8, 8), (16, 16)]
    with guide.worker():
        res = group(add.s(i, j) for i, j in numbers).apply_async()
        assert res.get(timeout=TIMEOUT) == [4, 8, 16, 32]


def test_calling_routing_options(guide: Guide) -> None:
    other = f"{guide.queue}-priority.high"
    with guide.worker(f"{guide.queue},{other}"):
        assert add.apply_async((1, 1), queue=other).get(timeout=TIMEOUT) == 2


def test_calling_results_options(guide: Guide) -> None:
    with guide.worker():
        result = add.apply_async((1, 2), ignore_result=False)
        assert result.get(timeout=TIMEOUT) == 3
        done = result.date_done
        assert done is not None and abs(dt.datetime.now(dt.UTC) - done) < dt.timedelta(minutes=1)
        # Celery's get() returns None here; rabbitq says why there is nothing to wait for.
        ignored = add.apply_async((1, 2), ignore_result=True)
        with pytest.raises(rabbitq.ResultsDisabledError, match="ignores its result"):
            ignored.get(timeout=TIMEOUT)


def test_calling_revoke(guide: Guide) -> None:
    with guide.worker():
        result = add.apply_async((1, 1), countdown=2)
        result.revoke()
        error = result.get(timeout=TIMEOUT, propagate=False)
        assert isinstance(error, rabbitq.TaskError) and result.state == "REVOKED"


# == Canvas: Signatures ======================================================================


def test_canvas_signatures(guide: Guide) -> None:
    by_name = signature(add.name, args=(2, 2), countdown=1, app=guide.app)
    assert (by_name.args, by_name.options) == ((2, 2), {"countdown": 1})
    s = add.signature((2, 2), {"debug": True}, countdown=10)
    assert (s.args, s.kwargs, s.options) == ((2, 2), {"debug": True}, {"countdown": 10})
    assert add(2, 2) == 4
    assert add.s(2, 2)() == 4  # in this process: no worker needed
    with guide.worker():
        assert by_name.delay().get(timeout=TIMEOUT) == 4
        assert add.signature((2, 2), countdown=1).apply_async().get(timeout=TIMEOUT) == 4
        assert add.signature((2, 2)).delay().get(timeout=TIMEOUT) == 4
        assert add.signature((2, 2)).set(countdown=1).delay().get(timeout=TIMEOUT) == 4


def test_canvas_partials(guide: Guide) -> None:
    with guide.worker():
        assert add.s(2, 2).delay().get(timeout=TIMEOUT) == 4
        assert add.s(2, 2).apply_async(countdown=1).get(timeout=TIMEOUT) == 4
        partial = add.s(2)
        assert partial.delay(4).get(timeout=TIMEOUT) == 6
        assert partial.apply_async((4,)).get(timeout=TIMEOUT) == 6
        assert subtract.s(10).delay(30).get(timeout=TIMEOUT) == 20  # subtract(30, 10)
        s = add.signature((2, 2), countdown=10)
        started = time.monotonic()
        assert s.apply_async(countdown=1).get(timeout=TIMEOUT) == 4  # countdown is now 1
        assert time.monotonic() - started < 10
    assert add.s(2).clone(args=(4,), kwargs={"debug": True}) == add.s(4, 2, debug=True)


def test_canvas_immutability_and_callbacks(guide: Guide) -> None:
    with guide.worker():
        add.apply_async((2, 2), link=reset_buffers.signature(immutable=True))
        add.apply_async((2, 2), link=reset_buffers.si())
        guide.wait_recorded("reset", count=2)
        result = add.apply_async((2, 2), link=add.s(8))
        assert result.get(timeout=TIMEOUT) == 4
        wait_for(lambda: result.children is not None, TIMEOUT)
        assert [c.get(timeout=TIMEOUT) for c in result.children or []] == [12]
        assert ~add.s(2, 2) == 4  # the guide's shell shortcut


# == Canvas: The Primitives ==================================================================


def test_canvas_primitives_examples(guide: Guide) -> None:
    with guide.worker():
        # Simple chain
        assert chain(add.s(2, 2), add.s(4), add.s(8))().get(timeout=TIMEOUT) == 16
        assert (add.s(2, 2) | add.s(4) | add.s(8))().get(timeout=TIMEOUT) == 16
        # Immutable signatures
        res = (add.si(2, 2) | add.si(4, 4) | add.si(8, 8))()
        assert res.get(timeout=TIMEOUT) == 16
        assert res.parent is not None and res.parent.get(timeout=TIMEOUT) == 8
        assert res.parent.parent is not None and res.parent.parent.get(timeout=TIMEOUT) == 4
        # Simple group
        res = group(add.s(i, i) for i in range(10))()
        assert res.get(timeout=TIMEOUT) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
        # Simple chord
        assert chord((add.s(i, i) for i in range(10)), tsum.s())().get(timeout=TIMEOUT) == 90
        immutable_body = chord((add.s(i, i) for i in range(3)), reset_buffers.si())
        assert immutable_body.apply_async().get(timeout=TIMEOUT) == "reset"


def test_canvas_primitives_blow_your_mind_by_combining(guide: Guide) -> None:
    with guide.worker():
        c1 = add.s(4) | mul.s(8)
        assert c1(16).get(timeout=TIMEOUT) == 160  # (16 + 4) * 8
        c2 = add.s(4, 16) | mul.s(2) | (add.s(4) | mul.s(8))
        assert c2().get(timeout=TIMEOUT) == 352  # ((4 + 16) * 2 + 4) * 8
        c3 = group(add.s(i, i) for i in range(10)) | tsum.s()
        assert c3().get(timeout=TIMEOUT) == 90
        new_user_workflow = create_user.s() | group(import_contacts.s(), send_welcome_email.s())
        res = new_user_workflow.delay(
            username="artv", first="Art", last="Vandelay", email="art@vandelay.com"
        )
        assert res.get(timeout=TIMEOUT) == ["contacts of artv", "welcome artv"]
        res = (add.s(4, 4) | group(add.si(i, i) for i in range(10)))()
        assert res.get(timeout=TIMEOUT) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
        assert res.parent is not None and res.parent.get(timeout=TIMEOUT) == 8


# == Canvas: Chains ==========================================================================


def test_canvas_chains(guide: Guide) -> None:
    with guide.worker():
        res = add.apply_async((2, 2), link=mul.s(16))
        assert res.get(timeout=TIMEOUT) == 4
        wait_for(lambda: res.children is not None, TIMEOUT)
        assert [c.get(timeout=TIMEOUT) for c in res.children or []] == [64]

        s = add.s(2, 2)
        s.link(mul.s(4))
        s.link(log_result.s())
        s.delay()
        assert guide.wait_recorded("result") == ["result 4"]

        failing = fail.s().on_error(log_error.s()).delay()
        guide.wait_recorded(f"error {failing.id}")

        last = chain(add.s(4, 4), mul.s(8), mul.s(10))()
        assert last.get(timeout=TIMEOUT) == 640
        assert last.parent is not None and last.parent.get(timeout=TIMEOUT) == 64
        assert last.parent.parent is not None and last.parent.parent.get(timeout=TIMEOUT) == 8
        assert isinstance(last.parent.parent, rabbitq.AsyncResult)
        assert (add.s(2, 2) | mul.s(8) | mul.s(10)).apply_async().get(timeout=TIMEOUT) == 320


# == Canvas: Groups ==========================================================================


def test_canvas_groups(guide: Guide) -> None:
    with guide.worker():
        g = group(add.s(2, 2), add.s(4, 4))
        res = g()
        assert res.get(timeout=TIMEOUT) == [4, 8]
        assert len(group(add.s(i, i) for i in range(100))().get(timeout=TIMEOUT)) == 100

        # Group results
        job = group([add.s(2, 2), add.s(4, 4), add.s(8, 8), add.s(16, 16), add.s(32, 32)])
        result = job.apply_async()
        assert result.join(timeout=TIMEOUT) == [4, 8, 16, 32, 64]
        assert result.ready() and result.successful() and not result.failed()
        assert not result.waiting() and result.completed_count() == 5
        assert result.get(timeout=TIMEOUT) == [4, 8, 16, 32, 64]

        # Group errbacks reach every member: one call per failing member.
        g = group(fail.s(), fail.s())
        g.link_error(log_error.s())
        g()
        assert len(guide.wait_recorded("error", count=2)) == 2

        # Group unrolling: a group of one passes a single result on.
        assert chain(add.s(2, 2), group(add.s(1)), add.s(1))().get(timeout=TIMEOUT) == 6
        unrolled = chain(add.s(2, 2), group(add.s(1), add.s(2)), tsum.s())
        assert unrolled().get(timeout=TIMEOUT) == 11  # tsum([5, 6])


# == Canvas: Chords ==========================================================================


def test_canvas_chords(guide: Guide) -> None:
    with guide.worker():
        assert chord(add.s(i, i) for i in range(100))(tsum.s()).get(timeout=TIMEOUT) == 9900
        callback = tsum.s()
        header = [add.s(i, i) for i in range(100)]
        result = chord(header)(callback)
        assert result.get(timeout=TIMEOUT) == 9900
        assert isinstance(result.parent, rabbitq.GroupResult) and len(result.parent) == 100

        # Error handling: the body fails, naming the member that did.
        c = chord([add.s(4, 4), fail.s(), add.s(8, 8)])
        with pytest.raises(rabbitq.TaskError) as caught:
            c(tsum.s()).get(timeout=TIMEOUT)
        assert caught.value.exc_type == "ChordError"  # Celery's name, as a TaskError
        assert caught.value.exc_message.startswith("chord member 1 (")
        assert "ValueError: the guide's failing task" in caught.value.exc_message

        on_error = group(add.s(i, i) for i in range(10)) | fail.si().on_error(log_error.s())
        on_error()
        guide.wait_recorded("error")


# == Canvas: Map & Starmap, Chunks ===========================================================


def test_canvas_map_and_starmap(guide: Guide) -> None:
    with guide.worker():
        assert ~tsum.map([list(range(10)), list(range(100))]) == [45, 4950]
        assert ~add.starmap(zip(range(10), range(10), strict=True)) == [
            0, 2, 4, 6, 8, 10, 12, 14, 16, 18,
        ]  # fmt: skip
        delayed = add.starmap(zip(range(10), range(10), strict=True)).apply_async(countdown=1)
        assert delayed.get(timeout=TIMEOUT)[-1] == 18


def test_canvas_chunks(guide: Guide) -> None:
    with guide.worker():
        res = add.chunks(zip(range(100), range(100), strict=True), 10)()
        assert res.get(timeout=TIMEOUT) == [
            [i + i for i in range(s, s + 10)] for s in range(0, 100, 10)
        ]
        res = add.chunks(zip(range(100), range(100), strict=True), 10).apply_async()
        assert len(res.get(timeout=TIMEOUT)) == 10
        g = add.chunks(zip(range(100), range(100), strict=True), 10).group()
        started = time.monotonic()
        res = g.skew(start=1, stop=2)()
        assert len(res.get(timeout=TIMEOUT)) == 10
        assert time.monotonic() - started >= 2.0  # the last chunks waited 2 s


def test_map_starmap_and_chunks_run_on_a_worker_of_the_mapped_tasks_queue_only(
    guide: Guide,
) -> None:
    """Celery sends them to the default queue, which a worker on ``-Q emails`` never reads."""
    assert send_email.queue is not None
    with guide.worker(send_email.queue):
        assert send_email.map(["a@x", "b@x"]).delay().get(timeout=TIMEOUT) == [
            "sent to a@x",
            "sent to b@x",
        ]
        assert send_email.starmap([("c@x",)]).delay().get(timeout=TIMEOUT) == ["sent to c@x"]
        chunks = send_email.chunks([("d@x",), ("e@x",), ("f@x",)], 2)()
        assert chunks.get(timeout=TIMEOUT) == [["sent to d@x", "sent to e@x"], ["sent to f@x"]]


# == Tasks defined in a script run as __main__ ==============================================

SCRIPT = """
import os

import rabbitq

app = rabbitq.App("proj", default_queue=os.environ["SCRIPT_QUEUE"])


@app.task
def add(x, y):
    return x + y


if __name__ == "__main__":
    print(add.name)
    print(add.delay(2, 2).get(timeout=30))
"""


def test_a_task_of_a_script_run_as_main_runs_on_a_worker_importing_the_script(
    guide: Guide, tmp_path: Path
) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "tasks.py").write_text(textwrap.dedent(SCRIPT))
    queue = f"{guide.queue}-script"
    env = {
        **guide.env,
        "SCRIPT_QUEUE": queue,
        "RABBITQ_BROKER_URL": guide.app.broker_url,
        "PYTHONPATH": str(scripts),  # the worker imports the script as the module "tasks"
    }
    worker = WorkerProcess(
        guide.app.broker_url,
        queue,
        tmp_path / "ran.txt",
        tmp_path / "script-worker.log",
        env=env,
        app="tasks",
    )
    try:
        worker.wait_until_consuming()
        run = subprocess.run(
            [sys.executable, "tasks.py"],
            cwd=scripts,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        worker.stop()
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["tasks.add", "4"]
