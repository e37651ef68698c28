"""Signed messages on a real worker (issue 21): a signing worker runs what its App signed and
re-signs what it sends on (retries, chain steps, chord parts); anything else — unsigned
(a Celery producer, an App without the key), signed with another key, or changed after
signing — goes to ``<queue>.dead`` as ``bad-signature`` without running. A rotation accepts
both keys. The same worker dead-letters bodies too large or nested too deep, undecoded."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest

import rabbitq
from integration.apps import signed_app
from integration.support import (
    LoggedProcess,
    WorkerProcess,
    drain_queue,
    ran_labels,
    running_worker,
    wait_for,
)
from rabbitq.prepare import Context
from rabbitq.signing import signer_from_settings

pytestmark = pytest.mark.timeout(180)

KEY = "integration-signing-key-0123456789"
OLD_KEY = "the-previous-signing-key-9876543210"


@pytest.fixture
def producer(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[rabbitq.App]:
    """signed_app's App in this process, signing with KEY."""
    app = signed_app.app
    monkeypatch.setenv("RABBITQ_TEST_RECORD", str(tmp_path / "ran.txt"))
    monkeypatch.setattr(app, "broker_url", broker_url)
    monkeypatch.setattr(app, "signer", signer_from_settings(KEY, None))
    app._declare_once.reset()
    yield app
    app.close()
    app._publisher = None


@pytest.fixture
def queue() -> str:
    return f"signed{uuid.uuid4().hex[:8]}"


def signing_worker(
    broker_url: str, queue: str, tmp_path: Path, **env: str
) -> Any:  # a context manager of WorkerProcess
    return running_worker(
        broker_url, queue, tmp_path, env={"RABBITQ_TEST_SIGNING_KEY": KEY, **env},
        app="integration.apps.signed_app",
    )  # fmt: skip


def dead_reasons(broker_url: str, queue: str, expected: int, worker: WorkerProcess) -> list[str]:
    dead: list[tuple[Any, bytes]] = []

    def arrived() -> bool:
        dead.extend(drain_queue(broker_url, f"{queue}.dead"))
        return len(dead) >= expected

    wait_for(arrived, 60, worker.log)
    return [properties.headers["rabbitq_reason"] for properties, _ in dead]


def publish_raw(
    broker_url: str, queue: str, body: bytes, headers: dict[str, Any], **props: Any
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            "", queue, body,
            pika.BasicProperties(headers=headers, delivery_mode=2, **props),
            mandatory=True,
        )  # fmt: skip
    finally:
        connection.close()


def test_a_signed_task_runs_and_its_retry_is_re_signed_and_runs(
    producer: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    with signing_worker(broker_url, queue, tmp_path) as worker:
        signed_app.record.apply_async(("plain",), queue=queue)
        signed_app.retry_once.apply_async(("retried",), queue=queue)
        wait_for(
            lambda: "retried attempt 2" in " ".join(ran_labels(tmp_path / "ran.txt")),
            60,
            worker.log,
        )
        assert "plain" in ran_labels(tmp_path / "ran.txt")
        assert drain_queue(broker_url, f"{queue}.dead") == []


def test_unsigned_foreign_and_tampered_messages_are_dead_lettered_bad_signature_unrun(
    producer: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    unsigned = rabbitq.App("other", broker=broker_url)
    foreign = rabbitq.App("other", broker=broker_url, signing_key=OLD_KEY)
    try:
        with signing_worker(broker_url, queue, tmp_path) as worker:
            unsigned.send_task("signed.record", ("unsigned",), queue=queue)
            foreign.send_task("signed.record", ("foreign",), queue=queue)
            # A signed message whose arguments were changed on the way:
            task = signed_app.record.s("original").set(queue=queue)
            prepared = producer.prepare_signature(task, Context())
            envelope = producer.signer.sign(prepared.envelope)  # type: ignore[union-attr]
            tampered = envelope.body.replace(b"original", b"tampered")
            publish_raw(
                broker_url, queue, tampered, envelope.headers,
                content_type=envelope.content_type, content_encoding=envelope.content_encoding,
            )  # fmt: skip
            reasons = dead_reasons(broker_url, queue, 3, worker)
            assert reasons == ["bad-signature"] * 3
            signed_app.record.apply_async(("after",), queue=queue)  # the worker lives on
            wait_for(lambda: "after" in ran_labels(tmp_path / "ran.txt"), 30, worker.log)
        assert ran_labels(tmp_path / "ran.txt") == ["after"]
    finally:
        unsigned.close()
        foreign.close()


def test_during_a_rotation_the_worker_runs_messages_signed_with_either_key(
    producer: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    old_producer = rabbitq.App("other", broker=broker_url, signing_key=OLD_KEY)
    try:
        env = {"RABBITQ_TEST_OLD_SIGNING_KEY": OLD_KEY}
        with signing_worker(broker_url, queue, tmp_path, **env) as worker:
            old_producer.send_task("signed.record", ("old key",), queue=queue)
            signed_app.record.apply_async(("new key",), queue=queue)
            wait_for(lambda: len(ran_labels(tmp_path / "ran.txt")) == 2, 30, worker.log)
        assert sorted(ran_labels(tmp_path / "ran.txt")) == ["new key", "old key"]
    finally:
        old_producer.close()


def test_a_signed_chord_completes_through_re_signed_parts(
    producer: rabbitq.App, broker_url: str, queue: str, tmp_path: Path
) -> None:
    with signing_worker(broker_url, queue, tmp_path) as worker:
        header = [signed_app.add.s(i, i).set(queue=queue) for i in range(20)]
        rabbitq.chord(header, signed_app.total.s("chord").set(queue=queue)).apply_async()
        wait_for(lambda: "chord 380" in ran_labels(tmp_path / "ran.txt"), 60, worker.log)
        chain = signed_app.add.s(1, 2).set(queue=queue) | signed_app.record.s().set(queue=queue)
        chain.apply_async()
        wait_for(lambda: "3" in ran_labels(tmp_path / "ran.txt"), 60, worker.log)
    assert ran_labels(tmp_path / "ran.txt").count("chord 380") == 1


def test_a_body_too_large_or_too_deep_is_dead_lettered_before_decoding(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    env = {"RABBITQ_TEST_SIGNING_KEY": "", "RABBITQ_TEST_MAX_MESSAGE_SIZE": "10000"}
    headers = {"task": "signed.record", "id": str(uuid.uuid4())}
    with running_worker(
        broker_url, queue, tmp_path, env=env, app="integration.apps.signed_app"
    ) as worker:
        large = json.dumps([["x" * 20_000], {}, {}]).encode()
        deep = b'[["deep"], {"nested": ' + b"[" * 500 + b"]" * 500 + b"}, {}]"
        for body in (large, deep):
            publish_raw(broker_url, queue, body, headers, content_type="application/json")
        assert sorted(dead_reasons(broker_url, queue, 2, worker)) == ["too-deep", "too-large"]
        assert worker.process.poll() is None
    assert ran_labels(tmp_path / "ran.txt") == []


def test_a_chain_step_over_the_size_limit_is_dead_lettered_followup_failed_once(
    broker_url: str, queue: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(signed_app.app, "broker_url", broker_url)
    monkeypatch.setattr(signed_app.app, "signer", None)
    signed_app.app._declare_once.reset()
    env = {"RABBITQ_TEST_SIGNING_KEY": "", "RABBITQ_TEST_MAX_MESSAGE_SIZE": "10000"}
    try:
        with running_worker(
            broker_url, queue, tmp_path, env=env, app="integration.apps.signed_app"
        ) as worker:
            chain = signed_app.grow.s(50_000).set(queue=queue) | signed_app.record.s().set(
                queue=queue
            )
            chain.apply_async()
            assert dead_reasons(broker_url, queue, 1, worker) == ["followup-failed"]
            time.sleep(1)  # nothing more: the task is not run again
        assert ran_labels(tmp_path / "ran.txt") == ["grow 50000"]
    finally:
        signed_app.app.close()
        signed_app.app._publisher = None


def test_a_beat_of_a_signing_app_sends_ticks_the_worker_runs(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(
        "entries:\n  tick:\n    task: signed.record\n    every: 1\n"
        f"    args: [tick]\n    options: {{queue: {queue}}}\n"
    )
    command = [
        sys.executable, "-m", "rabbitq", "beat", "-A", "integration.apps.signed_app",
        "--schedule", str(schedule), "--group", queue,
    ]  # fmt: skip
    env = {"RABBITQ_BROKER_URL": broker_url, "RABBITQ_TEST_SIGNING_KEY": KEY}
    with signing_worker(broker_url, queue, tmp_path) as worker:
        beat = LoggedProcess(command, tmp_path / "beat.log", env)
        try:
            wait_for(lambda: ran_labels(tmp_path / "ran.txt").count("tick") >= 2, 60, beat.log)
        finally:
            beat.stop()
        assert drain_queue(broker_url, f"{queue}.dead") == [], worker.log()


def test_a_celery_producers_message_is_refused_by_a_signing_worker(
    broker_url: str, queue: str, tmp_path: Path
) -> None:
    import celery

    from rabbitq.compat import celery_queue, celery_route

    caller = celery.Celery("unsigned-celery", broker=broker_url, set_as_current=False)
    caller.conf.update(
        task_queues=[celery_queue(queue)], task_routes={"signed.*": celery_route(queue)}
    )
    try:
        with signing_worker(broker_url, queue, tmp_path) as worker:
            caller.send_task("signed.record", ("from celery",))
            assert dead_reasons(broker_url, queue, 1, worker) == ["bad-signature"]
        assert ran_labels(tmp_path / "ran.txt") == []
    finally:
        caller.close()
