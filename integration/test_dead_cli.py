"""`rabbitq dead list|show|replay|purge` against a real broker."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pika

import rabbitq
from integration.apps import core_app
from integration.support import (
    REPO_ROOT,
    drain_queue,
    queue_depth,
    ran_ids,
    running_worker,
    wait_for,
)
from integration.test_topology_cli import rabbitq_cli
from rabbitq.amqp.dead_queue import DeadQueue
from rabbitq.message import TaskMessage, encode_task
from rabbitq.serializers import MSGPACK
from rabbitq.topology import DeadLetterQueueSpec


def _fail_some(broker_url: str, queue: str, tmp_path: Path, count: int) -> list[str]:
    missing = str(tmp_path / "fixed")
    with running_worker(broker_url, queue, tmp_path):
        ids = [core_app.needs_file.apply_async((i, missing), queue=queue).id for i in range(count)]
        wait_for(lambda: queue_depth(broker_url, queue + ".dead") == count, 30)
    return ids


def test_list_shows_id_task_reason_when_and_attempts(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    ids = _fail_some(broker_url, unique_name, tmp_path, 3)
    result = rabbitq_cli("dead", "list", unique_name, "--json", "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {row["id"] for row in rows} == set(ids)
    assert {row["reason"] for row in rows} == {"task-failed"}
    assert all(row["task"] == "it.needs_file" and row["attempts"] == 1 for row in rows)
    assert all(row["dead_at"] and row["exception"].startswith("FileNotFoundError") for row in rows)
    assert queue_depth(broker_url, unique_name + ".dead") == 3  # listing removes nothing
    table = rabbitq_cli("dead", "list", unique_name, "--broker", broker_url)
    assert "3 dead letter(s)" in table.stdout and ids[0] in table.stdout


def test_show_prints_arguments_and_traceback(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    [task_id] = _fail_some(broker_url, unique_name, tmp_path, 1)
    result = rabbitq_cli("dead", "show", unique_name, task_id, "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    assert "rabbitq_reason: task-failed" in result.stdout
    assert "args: [0," in result.stdout
    assert "raise FileNotFoundError(path)" in result.stdout


def test_replay_puts_tasks_back_and_they_run(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    ids = _fail_some(broker_url, unique_name, tmp_path, 5)
    (tmp_path / "fixed").touch()  # the operator fixes the cause
    result = rabbitq_cli("dead", "replay", unique_name, "--all", "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    assert "replayed 5" in result.stdout
    assert queue_depth(broker_url, unique_name + ".dead") == 0
    with running_worker(broker_url, unique_name, tmp_path):
        wait_for(lambda: set(ids) <= set(ran_ids(tmp_path / "ran.txt")), 30)


def test_replay_by_id_leaves_the_others(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    ids = _fail_some(broker_url, unique_name, tmp_path, 3)
    result = rabbitq_cli("dead", "replay", unique_name, "--id", ids[1], "--broker", broker_url)
    assert result.returncode == 0, result.stderr
    assert [p.headers["id"] for p, _ in drain_queue(broker_url, unique_name)] == [ids[1]]
    left = {p.headers["id"] for p, _ in drain_queue(broker_url, unique_name + ".dead")}
    assert left == {ids[0], ids[2]}


def test_replay_interrupted_halfway_loses_nothing(broker_url: str, unique_name: str) -> None:
    count = 3_000
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(unique_name, durable=True)
    channel.queue_declare(unique_name + ".dead", durable=True)
    channel.confirm_delivery()
    ids = []
    for i in range(count):
        envelope = encode_task(TaskMessage(task="it.record", args=[i]), MSGPACK)
        envelope.headers.update(
            {"rabbitq_reason": "task-failed", "rabbitq_original_queue": unique_name}
        )
        ids.append(envelope.message_id)
        channel.basic_publish(
            "",
            unique_name + ".dead",
            envelope.body,
            pika.BasicProperties(
                headers=envelope.headers,
                content_type=envelope.content_type,
                message_id=envelope.message_id,
                delivery_mode=2,
            ),
        )
    connection.close()
    replay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rabbitq",
            "dead",
            "replay",
            unique_name,
            "--all",
            "--broker",
            broker_url,
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: queue_depth(broker_url, unique_name) > 0, 30)
    time.sleep(0.05)
    replay.send_signal(signal.SIGKILL)
    replay.wait(10)
    time.sleep(0.5)  # the broker notices the closed connection and requeues
    back = queue_depth(broker_url, unique_name)
    assert 0 < back < count, "interrupt earlier: the replay had already finished"
    placed = {p.headers["id"] for p, _ in drain_queue(broker_url, unique_name)}
    still_dead = {p.headers["id"] for p, _ in drain_queue(broker_url, unique_name + ".dead")}
    print(
        f"\nreplay SIGKILLed after {back} of {count}; "
        f"{len(placed & still_dead)} in both places, 0 lost"
    )
    assert placed | still_dead == set(ids)


def test_purge_asks_unless_yes(
    app: rabbitq.App, broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    _fail_some(broker_url, unique_name, tmp_path, 2)
    refused = subprocess.run(
        [sys.executable, "-m", "rabbitq", "dead", "purge", unique_name, "--broker", broker_url],
        cwd=REPO_ROOT,
        input="n\n",
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode != 0 and queue_depth(broker_url, unique_name + ".dead") == 2
    result = rabbitq_cli("dead", "purge", unique_name, "--yes", "--broker", broker_url)
    assert "purged 2" in result.stdout
    assert queue_depth(broker_url, unique_name + ".dead") == 0


def _put_dead_letter(broker_url: str, dead_queue: str, arguments: dict[str, object]) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(dead_queue, durable=True, arguments=arguments)
    channel.confirm_delivery()
    envelope = encode_task(TaskMessage(task="it.record", args=[1]), MSGPACK)
    envelope.headers.update({"rabbitq_reason": "task-failed"})
    channel.basic_publish(
        "",
        dead_queue,
        envelope.body,
        pika.BasicProperties(
            headers=envelope.headers,
            content_type=envelope.content_type,
            message_id=envelope.message_id,
            delivery_mode=2,
        ),
    )
    connection.close()


def _delivery_count(broker_url: str, queue: str) -> int:
    """The head message's x-delivery-count; the look itself is handed back uncounted-for."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    method, properties, _body = connection.channel().basic_get(queue)
    connection.close()
    assert method is not None, f"{queue} is empty"
    return int((properties.headers or {}).get("x-delivery-count", 0))


def test_looking_at_a_quorum_dead_letter_more_often_than_any_default_limit_keeps_it(
    broker_url: str, unique_name: str
) -> None:
    dead = unique_name + ".dead"
    _put_dead_letter(broker_url, dead, DeadLetterQueueSpec(dead, "quorum").arguments())
    # 25 looks: more than RabbitMQ 4.x's default delivery limit of 20. In-process rather
    # than 25 CLI runs; `dead list` is this iteration and a close.
    for _ in range(25):
        with DeadQueue(broker_url, dead) as dead_queue:
            assert dead_queue.browse_problem is None
            assert len(list(dead_queue)) == 1
    # Every look counted as a delivery, and the dead letter is still there.
    assert _delivery_count(broker_url, dead) == 25
    assert queue_depth(broker_url, dead) == 1


def test_dead_list_refuses_a_quorum_dead_queue_whose_limit_a_look_could_reach(
    broker_url: str, unique_name: str
) -> None:
    dead = unique_name + ".dead"
    # A low limit, as RabbitMQ 4.x's default of 20 would be: three looks would drop it.
    _put_dead_letter(broker_url, dead, {"x-queue-type": "quorum", "x-delivery-limit": 2})
    for _ in range(4):
        result = rabbitq_cli("dead", "list", unique_name, "--broker", broker_url)
        assert result.returncode != 0 and "does not look" in result.stderr
    assert queue_depth(broker_url, dead) == 1
    assert _delivery_count(broker_url, dead) == 0  # never handed out
