"""Celery's events from rabbitq workers and producers, read by Celery's own receiver and state
(what Flower and celery-exporter run), next to a real Celery worker's; the history stream."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rabbitq
from integration.apps.interop_celery import make_app as make_celery_app

from .celery_support import running_celery_worker
from .event_capture import CeleryEventCapture
from .support import REPO_ROOT, running_worker, wait_for

HOST = socket.gethostname()
# One retention for every spec on this broker: a stream keeps the arguments it was made with.
HISTORY_YAML = "events:\n  history:\n    max_age: 1h\n    max_bytes: 200MB\n"


@pytest.fixture
def events_app(
    broker_url: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[rabbitq.App]:
    from integration.apps import events_app

    app = events_app.app
    monkeypatch.setattr(app, "broker_url", broker_url)
    monkeypatch.setattr(app, "default_queue", unique_name)
    app._declare_once.reset()
    yield app
    app.close()
    app._publisher = None


def events_worker(broker_url: str, queue: str, tmp_path: Path, *extra: str) -> Any:
    return running_worker(
        broker_url,
        queue,
        tmp_path,
        "-n",
        f"{queue}@%h",
        *extra,
        app="integration.apps.events_app",
        env={"RABBITQ_TEST_QUEUE": queue},
    )


def test_a_worker_without_task_events_goes_online_beats_and_goes_offline(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    node = f"{unique_name}@{HOST}"
    add = events_app.tasks["ev.add"]
    with CeleryEventCapture(broker_url) as capture:
        with events_worker(broker_url, unique_name, tmp_path):
            capture.wait_for(lambda: capture.of_type("worker-online", hostname=node), what="online")
            add.delay(1, 2)
            capture.wait_for(
                lambda: any(e["processed"] == 1 for e in capture.of_type("worker-heartbeat")),
                what="a heartbeat counting the task",
            )
            assert capture.state.workers[node].alive
            assert capture.state.workers[node].freq == 2.0
        capture.wait_for(lambda: capture.of_type("worker-offline", hostname=node), what="offline")
        assert not capture.state.workers[node].alive
        worker_tasks = [
            e for e in capture.events if e["type"].startswith("task-") and e["hostname"] == node
        ]
        assert worker_tasks == []  # no -E: no task events from the worker


async def adelay_and_close(app: rabbitq.App, a: int, b: int) -> str:
    handle = await app.tasks["ev.async_add"].adelay(a, b)
    await app.aclose()  # what an asyncio.run script does before its loop ends: events leave
    return handle.id


def test_with_task_events_celerys_state_follows_each_task_to_its_end(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    node = f"{unique_name}@{HOST}"
    tasks = events_app.tasks
    with (
        CeleryEventCapture(broker_url) as capture,
        events_worker(broker_url, unique_name, tmp_path, "-E"),
    ):
        ok = tasks["ev.add"].delay(1, 2).id
        failed = tasks["ev.fail"].delay("boom").id
        retried = tasks["ev.retry_once"].delay(7).id
        awaited = asyncio.run(adelay_and_close(events_app, 3, 4))
        ends = {ok: "SUCCESS", failed: "FAILURE", retried: "SUCCESS", awaited: "SUCCESS"}
        capture.wait_for(
            lambda: all(
                uuid in capture.state.tasks and capture.state.tasks[uuid].state == state
                for uuid, state in ends.items()
            ),
            what=f"the tasks' ends {ends}",
        )
        state = capture.state.tasks
        assert state[ok].result == "3" and state[ok].runtime > 0
        assert state[ok].worker.hostname == node and state[ok].name == "ev.add"
        assert state[ok].args == "(1, 2)" and state[ok].kwargs == "{}"
        assert state[ok].client.startswith("gen") and state[ok].sent is not None
        assert state[ok].received <= state[ok].started <= state[ok].succeeded
        assert state[failed].exception == "ValueError('boom')"
        assert "ValueError: boom" in state[failed].traceback
        assert state[retried].retried is not None and state[retried].retries == 1
        assert state[awaited].sent is not None and state[awaited].result == "7"
        [dead] = capture.of_type("task-failed", uuid=failed)
        assert (
            dead["reason"] == "task-failed" and dead["dead_letter_queue"] == f"{unique_name}.dead"
        )


def test_task_and_worker_events_have_the_fields_and_types_of_a_celery_workers(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    celery_queue = f"{unique_name}_celery"
    celery_app = make_celery_app(celery_queue, None)
    celery_app.conf.broker_url = broker_url
    ours = f"{unique_name}@{HOST}"
    with (
        CeleryEventCapture(broker_url) as capture,
        running_celery_worker(broker_url, celery_queue, tmp_path, events=True),
    ):
        celery_ids = [
            celery_app.send_task("interop.add", (1, 2)).id,
            celery_app.send_task("interop.fail", ("boom",)).id,
        ]
        with events_worker(broker_url, unique_name, tmp_path, "-E"):
            our_ids = [
                events_app.tasks["ev.add"].delay(1, 2).id,
                events_app.tasks["ev.fail"].delay("boom").id,
            ]
            capture.wait_for(
                lambda: (
                    all(
                        capture.of_type(kind, uuid=uuid)
                        for uuid in (*celery_ids, *our_ids)
                        for kind in ("task-received", "task-started")
                    )
                    and all(
                        capture.of_type(kind, uuid=ids[index])
                        for ids in (celery_ids, our_ids)
                        for index, kind in ((0, "task-succeeded"), (1, "task-failed"))
                    )
                    and capture.of_type("worker-heartbeat", hostname=ours)
                ),
                what="both workers' events",
            )
    [celery_node] = {e["hostname"] for e in capture.of_type("task-received", uuid=celery_ids[0])}
    compared = 0
    for kind in ("task-received", "task-started", "task-succeeded", "task-failed",
                 "worker-online", "worker-heartbeat"):  # fmt: skip
        theirs = [e for e in capture.of_type(kind) if e["hostname"] == celery_node]
        mine = [e for e in capture.of_type(kind) if e["hostname"] == ours]
        assert theirs and mine, f"{kind}: Celery's {len(theirs)}, rabbitq's {len(mine)}"
        theirs, mine = theirs[0], mine[0]
        missing = set(theirs) - set(mine)
        assert not missing, f"{kind}: rabbitq's event lacks {missing}"
        for key, value in theirs.items():
            if value is not None and mine[key] is not None:
                assert type(mine[key]) is type(value), f"{kind}.{key}: {mine[key]!r} vs {value!r}"
                compared += 1
    assert compared > 40


def test_each_process_of_a_supervised_worker_is_a_node_of_its_own(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    with (
        CeleryEventCapture(broker_url) as capture,
        running_worker(
            broker_url,
            unique_name,
            tmp_path,
            "-P",
            "2",
            "-n",
            f"{unique_name}@%h",
            app="integration.apps.events_app",
            env={"RABBITQ_TEST_QUEUE": unique_name},
        ) as worker,
    ):
        worker.wait_until_consuming(count=2)
        nodes = {f"{unique_name}-1@{HOST}", f"{unique_name}-2@{HOST}"}
        capture.wait_for(
            lambda: {e["hostname"] for e in capture.of_type("worker-heartbeat")} >= nodes,
            what=f"heartbeats from {nodes}",
        )
        pids = {e["pid"] for e in capture.of_type("worker-heartbeat") if e["hostname"] in nodes}
        assert len(pids) == 2


def rabbitq_cli(
    broker_url: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rabbitq", *args, "--broker", broker_url],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_tasks_whole_life_is_read_back_by_id_after_the_worker_and_monitor_restarted(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(HISTORY_YAML)
    node = f"{unique_name}@{HOST}"
    retry_once = events_app.tasks["ev.retry_once"]
    with (
        events_worker(broker_url, unique_name, tmp_path, "-E", "--routing", str(routing)),
        CeleryEventCapture(broker_url) as capture,  # the first monitor
    ):
        task_id = retry_once.delay(7).id
        capture.wait_for(
            lambda: (
                capture.state.tasks.get(task_id) is not None
                and capture.state.tasks[task_id].state == "SUCCESS"
            ),
            what="the task's success",
        )
    # Worker and monitor are gone; a new worker starts; a new reader asks for the story.
    with events_worker(broker_url, unique_name, tmp_path, "-E", "--routing", str(routing)):
        shown = rabbitq_cli(broker_url, "events", "--id", task_id)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert [line.split()[2] for line in lines] == [
        "task-sent", "task-received", "task-started", "task-retried",
        "task-received", "task-started", "task-succeeded",
    ]  # fmt: skip
    assert all(f"ev.retry_once[{task_id}]" in line for line in lines)
    assert all(node in line for line in lines[1:])  # the worker that ran each step
    assert "retries=1" in lines[4] and "result=7" in lines[6]
    as_json = rabbitq_cli(broker_url, "events", "--id", task_id, "--json")
    assert len(as_json.stdout.splitlines()) == 7


def test_a_script_that_sends_and_closes_at_once_still_sends_its_task_sent_event(
    broker_url: str, unique_name: str
) -> None:
    # The first event opens the publisher's event channel; close() right after must wait
    # for it rather than drop the event (a cron script, a management command).
    script = (
        "import sys; from integration.apps import events_app as m; "
        "m.app.broker_url = sys.argv[1]; m.app.default_queue = sys.argv[2]; "
        "print(m.add.delay(1, 2).id); m.app.close()"
    )
    with CeleryEventCapture(broker_url) as capture:
        sent = subprocess.run(
            [sys.executable, "-c", script, broker_url, unique_name],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        task_id = sent.stdout.strip()
        capture.wait_for(lambda: bool(capture.of_type("task-sent", uuid=task_id)), what="task-sent")


def test_an_asyncio_script_that_sends_and_closes_at_once_still_sends_its_task_sent_event(
    broker_url: str, unique_name: str
) -> None:
    script = (
        "import asyncio, sys; from integration.apps import events_app as m; "
        "m.app.broker_url = sys.argv[1]; m.app.default_queue = sys.argv[2]\n"
        "async def main():\n"
        "    print((await m.add.adelay(1, 2)).id); await m.app.aclose()\n"
        "asyncio.run(main())"
    )
    with CeleryEventCapture(broker_url) as capture:
        sent = subprocess.run(
            [sys.executable, "-c", script, broker_url, unique_name],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        task_id = sent.stdout.strip()
        capture.wait_for(lambda: bool(capture.of_type("task-sent", uuid=task_id)), what="task-sent")


def test_the_history_also_shows_workers_coming_and_going_and_filters_by_task_name(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(HISTORY_YAML)
    node = f"{unique_name}@{HOST}"
    with (
        events_worker(broker_url, unique_name, tmp_path, "-E", "--routing", str(routing)),
        CeleryEventCapture(broker_url) as capture,
    ):
        add_id = events_app.tasks["ev.add"].delay(2, 2).id
        fail_id = events_app.tasks["ev.fail"].delay("x").id
        capture.wait_for(
            lambda: (
                capture.of_type("task-succeeded", uuid=add_id)
                and capture.of_type("task-failed", uuid=fail_id)
            ),
            what="both ends",
        )
    everything = rabbitq_cli(broker_url, "events", "--since", "10m").stdout
    ours = [line for line in everything.splitlines() if node in line]
    assert "worker-online" in ours[0] and "worker-offline" in ours[-1]
    by_name = rabbitq_cli(broker_url, "events", "--since", "10m", "--task", "ev.f*").stdout
    assert fail_id in by_name and add_id not in by_name


def test_follow_prints_new_events_as_they_come(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(HISTORY_YAML)
    output = tmp_path / "follow.txt"
    with (
        events_worker(broker_url, unique_name, tmp_path, "-E", "--routing", str(routing)),
        open(output, "w") as sink,
    ):
        follower = subprocess.Popen(
                [sys.executable, "-m", "rabbitq", "events", "--follow", "--since", "1s",
                 "--task", "ev.add", "--broker", broker_url],
                cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            task_id = events_app.tasks["ev.add"].delay(5, 5).id
            wait_for(
                lambda: "task-succeeded" in output.read_text(),
                30,
                lambda: f"follow printed: {output.read_text()}",
            )
        finally:
            follower.terminate()
            follower.wait(10)
    assert task_id in output.read_text()


def test_a_changed_retention_is_a_conflict_for_apply_and_a_logged_error_for_a_worker(
    broker_url: str, events_app: rabbitq.App, unique_name: str, tmp_path: Path
) -> None:
    first = tmp_path / "routing.yaml"
    first.write_text(HISTORY_YAML)
    assert rabbitq_cli(broker_url, "topology", "apply", str(first)).returncode == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(HISTORY_YAML.replace("1h", "2h"))
    refused = rabbitq_cli(broker_url, "topology", "apply", str(changed))
    assert refused.returncode != 0
    assert "rabbitq.events" in refused.stderr and "x-max-age" in refused.stderr
    with events_worker(broker_url, unique_name, tmp_path, "--routing", str(changed)) as worker:
        events_app.tasks["ev.add"].delay(1, 1)
        wait_for(lambda: "succeeded" in worker.log(), 30, worker.log)
    assert "event history left as it is" in worker.log()


def test_the_cli_says_when_there_is_no_history(restartable_broker: Any) -> None:
    shown = rabbitq_cli(restartable_broker.url, "events")
    assert shown.returncode != 0
    assert "keeps no event history" in shown.stderr and "events.history" in shown.stderr


def test_follow_without_a_history_prints_live_events(
    restartable_broker: Any, tmp_path: Path, unique_name: str
) -> None:
    output = tmp_path / "live.txt"
    with open(output, "w") as sink:
        follower = subprocess.Popen(
            [sys.executable, "-m", "rabbitq", "events", "--follow", "--heartbeats",
             "--broker", restartable_broker.url],
            cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            with running_worker(
                restartable_broker.url,
                unique_name,
                tmp_path,
                "-n",
                f"{unique_name}@%h",
                app="integration.apps.events_app",
                env={"RABBITQ_TEST_QUEUE": unique_name},
            ):
                wait_for(
                    lambda: "worker-heartbeat" in output.read_text(),
                    30,
                    lambda: f"follow printed: {output.read_text()}",
                )
        finally:
            follower.terminate()
            follower.wait(10)
    assert f"{unique_name}@{HOST}" in output.read_text()


@pytest.mark.slow
def test_tasks_run_on_while_the_broker_blocks_their_events_which_follow_once_unblocked(
    restartable_broker: Any, tmp_path: Path, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from integration.apps import events_app as module

    app = module.app
    url = restartable_broker.url
    monkeypatch.setattr(app, "broker_url", url)
    monkeypatch.setattr(app, "default_queue", unique_name)
    app._declare_once.reset()
    count = 200
    ids = {app.tasks["ev.add"].delay(i, i).id for i in range(count)}
    app.close()
    app._publisher = None
    node = f"{unique_name}@{HOST}"
    with CeleryEventCapture(url) as capture:
        # A memory alarm: the broker stops reading from every connection that publishes.
        restartable_broker.rabbitmqctl("set_vm_memory_high_watermark", "0.000001")
        try:
            with events_worker(url, unique_name, tmp_path, "-E") as worker:
                wait_for(
                    lambda: worker.log().count(" succeeded in ") == count,
                    60,
                    lambda: worker.log()[-2000:],
                )
                # Every task ran and was acked while none of their events could leave.
                assert capture.of_type("task-succeeded", hostname=node) == []
                restartable_broker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
                capture.wait_for(
                    lambda: {e["uuid"] for e in capture.of_type("task-succeeded")} >= ids,
                    what="the held-back events",
                )
        finally:
            restartable_broker.rabbitmqctl("set_vm_memory_high_watermark", "0.4")
    assert "dropped" not in worker.log()  # 600 events fit the buffer: none lost
