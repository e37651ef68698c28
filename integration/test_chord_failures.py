"""Where a chord part ends when settling its chord fails, and across coordinator failovers.

Each test runs in a virtual host of its own: ``rabbitq.chords`` has one active consumer per
vhost, and on a shared broker another test's worker would otherwise be the coordinator.
Parts are published by hand (as a member's worker would) so that each test controls exactly
which chords are in flight. "Where it ends" is read from the broker once the workers have
stopped: held parts return to ``rabbitq.chords`` then, so a part that is not there was acked.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika
import pika
import pytest

from integration.apps import canvas_app
from integration.conftest import CanvasSetup, _canvas_setup
from integration.support import (
    REPO_ROOT,
    WorkerProcess,
    consumer_count,
    drain_queue,
    queue_depth,
    wait_for,
)
from rabbitq.amqp.aio import AsyncPublisher
from rabbitq.amqp.blocking import to_pika_properties
from rabbitq.amqp.management import ManagementClient
from rabbitq.chords import (
    CHORD_DEAD_QUEUE,
    CHORD_QUEUE,
    REASON_UNPUBLISHABLE,
    ChordLedger,
    ChordPart,
    decode_part,
    decode_record,
    part_envelope,
)
from rabbitq.errors import MessageDecodeError
from rabbitq.message import Envelope
from rabbitq.serializers import serializer_named
from rabbitq.testing import LocalRedis
from rabbitq.topology import TASK_EXCHANGE
from rabbitq.worker.coordinator import ChordCoordinator
from rabbitq.worker.followups import Followups


class Chords:
    """One test's vhost: its canvas app, a management client, and the broker as seen there."""

    def __init__(self, setup: CanvasSetup, api: ManagementClient, vhost: str) -> None:
        self.setup = setup
        self.api = api
        self.vhost = vhost
        self.url = setup.app.broker_url
        self._connection = pika.BlockingConnection(pika.URLParameters(self.url))
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()

    def worker(self, name: str, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(
            self.url,
            self.setup.queue,
            self.setup.record_file,
            self.setup.tmp_path / f"{name}.log",
            env={**self.setup.env, **(env or {})},
            app="integration.apps.canvas_app",
        )
        worker.wait_until_consuming()
        return worker

    def body(self, label: str, **options: Any) -> dict[str, Any]:
        body = canvas_app.collect.s(label).to_dict()
        body["options"] = {"queue": self.setup.queue, **options}
        return body

    def send(self, part: ChordPart) -> None:
        self.send_envelope(part_envelope(part, serializer_named("msgpack")))

    def send_envelope(self, envelope: Envelope) -> None:
        self._channel.basic_publish(
            "", CHORD_QUEUE, envelope.body, to_pika_properties(envelope), mandatory=True
        )

    def chord(self, label: str, size: int = 1, **options: Any) -> str:
        """Send every part of a chord whose body records ``label``; returns its id."""
        chord_id = f"{label}-{uuid.uuid4().hex[:6]}"
        for index in range(size):
            self.send(ChordPart(chord_id, size, self.body(label, **options), [(index, index)]))
        return chord_id

    def recorded(self, label: str) -> list[str]:
        path = self.setup.record_file
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if line.split(" ", 1)[0] == label]

    def wait_recorded(self, label: str) -> list[str]:
        wait_for(lambda: bool(self.recorded(label)), 60, lambda: f"{label} never ran")
        return self.recorded(label)

    def policy(self, name: str, pattern: str, definition: dict[str, Any]) -> None:
        document = {"pattern": pattern, "definition": definition, "apply-to": "queues"}
        self.api.call("PUT", f"/api/policies/{self._vhost_path}/{name}", document)

    def drop_policy(self, name: str) -> None:
        self.api.call("DELETE", f"/api/policies/{self._vhost_path}/{name}")

    def delete_queue(self, name: str) -> None:
        self.api.call("DELETE", f"/api/queues/{self._vhost_path}/{name}")

    def put(self, queue: str, body: bytes) -> None:
        self._channel.basic_publish("", queue, body, mandatory=True)

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self._channel.queue_bind(queue, exchange, routing_key)

    def declare(self, name: str, arguments: dict[str, Any] | None = None) -> None:
        self._channel.queue_declare(name, durable=True, arguments=arguments)

    def left_in_chord_queue(self) -> list[ChordPart | ChordLedger | Envelope]:
        """Everything in rabbitq.chords once no coordinator holds it (call with no worker);
        a record that does not decode as it is."""
        # Its consumers gone, what they held is back in the queue.
        wait_for(lambda: consumer_count(self.url, CHORD_QUEUE) == 0, 30)
        count = queue_depth(self.url, CHORD_QUEUE)
        taken: list[ChordPart | ChordLedger | Envelope] = []
        if count == 0:
            return taken
        # basic.get is refused on a quorum queue with a single active consumer: consume.
        for _method, properties, body in self._channel.consume(CHORD_QUEUE, auto_ack=True):
            envelope = _envelope(properties, body)
            try:
                taken.append(decode_record(envelope))
            except MessageDecodeError:
                taken.append(envelope)
            if len(taken) == count:
                break
        self._channel.cancel()
        return taken

    def dead(self) -> list[tuple[dict[str, Any], bytes, Any]]:
        return [(p.headers or {}, b, p) for p, b in drain_queue(self.url, CHORD_DEAD_QUEUE)]

    def close_connections_of(self, pid: int) -> int:
        """Have the broker close every connection of process ``pid``; how many it closed."""
        connections = self.api.call("GET", f"/api/vhosts/{self._vhost_path}/connections")
        closed = 0
        for connection in connections:
            name = str(connection.get("client_properties", {}).get("connection_name", ""))
            if name.startswith("rabbitq-") and str(pid) in name:
                quoted = urllib.parse.quote(connection["name"], safe="")
                self.api.call("DELETE", f"/api/connections/{quoted}")
                closed += 1
        return closed

    def unacked_in_chord_queue(self) -> int:
        queue = self.api.call("GET", f"/api/queues/{self._vhost_path}/{CHORD_QUEUE}")
        return int(queue.get("messages_unacknowledged", 0))

    @property
    def _vhost_path(self) -> str:
        return urllib.parse.quote(self.vhost, safe="")

    def close(self) -> None:
        self._connection.close()


def _envelope(properties: Any, body: bytes) -> Envelope:
    return Envelope(
        body=body, headers=dict(properties.headers or {}), content_type=properties.content_type
    )


def parts_of(chord_id: str, records: list[ChordPart | ChordLedger]) -> list[ChordPart]:
    return [r for r in records if isinstance(r, ChordPart) and r.chord_id == chord_id]


def stop_alive(worker: WorkerProcess) -> None:
    """Stop ``worker``, asserting that it was still running: no failure killed it."""
    assert worker.process.poll() is None, worker.log()[-3000:]
    worker.stop()


@pytest.fixture
def chords(
    broker_url: str,
    management_url: str,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Chords]:
    api = ManagementClient(management_url)
    vhost = f"rabbitq-{unique_name}"
    api.call("PUT", f"/api/vhosts/{vhost}", {})
    user = urllib.parse.urlsplit(broker_url).username or "guest"
    everything = {"configure": ".*", "write": ".*", "read": ".*"}
    api.call("PUT", f"/api/permissions/{vhost}/{user}", everything)
    url = urllib.parse.urlsplit(broker_url)._replace(path=f"/{vhost}").geturl()
    setups = _canvas_setup(url, None, unique_name, tmp_path, monkeypatch)
    chords = Chords(next(setups), api, vhost)
    yield chords
    chords.close()
    next(setups, None)
    api.call("DELETE", f"/api/vhosts/{vhost}")


# -- undecodable parts --------------------------------------------------------------------


def test_an_undecodable_part_is_dead_lettered_with_its_reason(chords: Chords) -> None:
    worker = chords.worker("coordinator")
    chords.send_envelope(Envelope(b"\xc1 not msgpack", {}, content_type="application/x-msgpack"))
    chords.chord("after")  # handled after the bad part: once it ran, the bad part was taken
    chords.wait_recorded("after")
    stop_alive(worker)
    ((headers, body, _),) = chords.dead()
    assert headers["rabbitq_reason"] == "undecodable" and body == b"\xc1 not msgpack"
    assert not [r for r in chords.left_in_chord_queue() if not isinstance(r, ChordLedger)]


def test_an_undecodable_part_is_held_until_its_dead_letter_is_stored(chords: Chords) -> None:
    worker = chords.worker("coordinator")
    # With rabbitq.chords.dead gone, the dead letter is unroutable: the part must not be
    # acked (it would vanish), nor nacked (a quorum queue counts each return).
    chords.delete_queue(CHORD_DEAD_QUEUE)
    chords.send_envelope(Envelope(b"\xc1 not msgpack", {}, content_type="application/x-msgpack"))
    chords.chord("meanwhile")  # other chords go on
    chords.wait_recorded("meanwhile")
    chords.declare(CHORD_DEAD_QUEUE)
    wait_for(lambda: queue_depth(chords.url, CHORD_DEAD_QUEUE) == 1, 60)
    stop_alive(worker)
    ((headers, _body, _),) = chords.dead()
    assert headers["rabbitq_reason"] == "undecodable"
    assert not [r for r in chords.left_in_chord_queue() if not isinstance(r, ChordLedger)]


class LateConfirms(AsyncPublisher):
    """A real publisher whose confirms reach the caller a while after the broker stored the
    message, as under heavy disk load: the window in which a coordinator may be stopped."""

    def __init__(self, url: str, lateness: float) -> None:
        super().__init__(url)
        self.lateness = lateness
        self.stored = asyncio.Event()

    async def publish(
        self,
        routing_key: str,
        envelope: Envelope,
        *,
        exchange: str = TASK_EXCHANGE,
        timeout: float | None = None,
    ) -> None:
        await super().publish(routing_key, envelope, exchange=exchange, timeout=timeout)
        self.stored.set()
        await asyncio.sleep(self.lateness)


def test_a_coordinator_stopped_while_a_dead_letter_awaits_its_confirm_acks_the_part(
    chords: Chords,
) -> None:
    # Stopping must let the ticker finish what it published: cancelled between the broker
    # storing the dead letter and the confirm, it left the part to be dead-lettered again.
    app = chords.setup.app

    async def stop_while_the_confirm_is_late() -> None:
        connection = await aio_pika.connect_robust(chords.url)
        publisher = LateConfirms(chords.url, lateness=2.0)
        await publisher.connect()
        coordinator = ChordCoordinator(app, connection, publisher, Followups(app, publisher))
        try:
            await coordinator.start()  # declares rabbitq.chords.dead
            chords.delete_queue(CHORD_DEAD_QUEUE)
            chords.send_envelope(Envelope(b"\xc1 bad", {}, content_type="application/x-msgpack"))
            await asyncio.sleep(0.5)  # taken and held: its dead letter is unroutable
            chords.declare(CHORD_DEAD_QUEUE)
            await asyncio.wait_for(publisher.stored.wait(), 30)  # the ticker's next look
            await coordinator.stop()
        finally:
            await publisher.close()
            await connection.close()

    asyncio.run(stop_while_the_confirm_is_late())
    ((headers, _body, _),) = chords.dead()
    assert headers["rabbitq_reason"] == "undecodable"
    assert not [r for r in chords.left_in_chord_queue() if not isinstance(r, ChordLedger)]


# -- a body that cannot be published ----------------------------------------------------------


@pytest.mark.parametrize(
    ("cause", "body", "exception_type"),
    [
        ("unroutable", {"routing_key": "nothing.binds.this"}, "UnroutableError"),
        ("malformed", None, "ConfigurationError"),
    ],
)
def test_a_body_that_cannot_be_published_dead_letters_only_its_chord(
    chords: Chords, cause: str, body: dict[str, Any] | None, exception_type: str
) -> None:
    worker = chords.worker("coordinator")
    doomed = f"doomed-{cause}"
    signature = chords.body("never", **body) if body is not None else {"task": 5}
    chords.send(ChordPart(doomed, 2, signature, [(0, "a")]))
    chords.send(ChordPart(doomed, 2, signature, [(1, "b")]))
    chords.chord("other")
    chords.wait_recorded("other")
    stop_alive(worker)
    ((headers, body_bytes, properties),) = chords.dead()
    assert headers["rabbitq_reason"] == REASON_UNPUBLISHABLE
    assert headers["rabbitq_exception_type"] == exception_type
    # One part carrying every result: replayed to rabbitq.chords, it completes the chord.
    dead_part = decode_part(_envelope(properties, body_bytes))
    assert dead_part.chord_id == doomed and dead_part.results == [(0, "a"), (1, "b")]
    assert dead_part.fold is None
    # Its parts were acked once the dead letter was confirmed; other chords completed.
    assert not parts_of(doomed, chords.left_in_chord_queue())
    assert not chords.recorded("never") and chords.recorded("other") == ["other 1 0"]


def test_replaying_a_dead_lettered_chord_completes_it(chords: Chords) -> None:
    worker = chords.worker("coordinator")
    later = f"later-{chords.setup.queue}"  # matches none of the worker queue's patterns
    signature = chords.body("revived", routing_key=later)  # no queue binds it yet
    chords.send(ChordPart("revived", 2, signature, [(0, "a")]))
    chords.send(ChordPart("revived", 2, signature, [(1, "b")]))
    wait_for(lambda: queue_depth(chords.url, CHORD_DEAD_QUEUE) == 1, 60)
    chords.declare(later)  # the cause fixed: a queue now binds the body's routing key
    chords.bind(later, TASK_EXCHANGE, later)
    replay = [sys.executable, "-m", "rabbitq", "dead", "replay", CHORD_DEAD_QUEUE, "--all"]
    subprocess.run([*replay, "--broker", chords.url], check=True, cwd=REPO_ROOT)
    wait_for(lambda: queue_depth(chords.url, later) == 1, 60)
    stop_alive(worker)
    ((properties, body),) = drain_queue(chords.url, later)
    args, _kwargs, _embed = serializer_named("msgpack").loads(body)
    assert properties.headers["task"] == "cv.collect" and args == [["a", "b"], "revived"]
    assert not parts_of("revived", chords.left_in_chord_queue())


def test_a_chord_whose_dead_letter_cannot_be_stored_keeps_its_parts_held(
    chords: Chords,
) -> None:
    worker = chords.worker("coordinator")
    chords.delete_queue(CHORD_DEAD_QUEUE)
    doomed = "doomed"
    signature = chords.body("never", routing_key="nothing.binds.this")
    chords.send(ChordPart(doomed, 1, signature, [(0, "a")]))
    chords.chord("other")
    chords.wait_recorded("other")
    chords.declare(CHORD_DEAD_QUEUE)
    # The coordinator tries again with backoff; the parts were held meanwhile.
    wait_for(lambda: queue_depth(chords.url, CHORD_DEAD_QUEUE) == 1, 60)
    stop_alive(worker)
    ((headers, _body, _),) = chords.dead()
    assert headers["rabbitq_reason"] == REASON_UNPUBLISHABLE
    assert not parts_of(doomed, chords.left_in_chord_queue())


def test_a_refused_body_publish_retries_that_chord_alone_until_accepted(
    chords: Chords,
) -> None:
    # A full queue that refuses new messages (reject-publish) is a failure that passes.
    held = f"{chords.setup.queue}.held"
    chords.declare(held, {"x-max-length": 1, "x-overflow": "reject-publish"})
    chords.put(held, b"filler")
    worker = chords.worker("coordinator")
    waiting = chords.chord("waiting", size=2, queue=held)
    chords.chord("other")
    chords.wait_recorded("other")  # the refused chord stalls nothing else
    assert worker.process.poll() is None
    drain_queue(chords.url, held)  # room again: the next attempt is accepted
    wait_for(lambda: queue_depth(chords.url, held) == 1, 60)
    stop_alive(worker)
    ((properties, _body),) = drain_queue(chords.url, held)
    assert properties.headers["task"] == "cv.collect"
    assert not parts_of(waiting, chords.left_in_chord_queue())
    assert not chords.dead()


def test_a_failed_chord_waits_for_redis_and_reports_once_it_is_back(chords: Chords) -> None:
    """Redis down is a failure that passes: the failed chord's result cannot be stored yet."""
    redis = LocalRedis().start()
    worker = chords.worker("coordinator", env={"RABBITQ_RESULT_BACKEND": redis.url})
    redis.stop()
    body = chords.body("never")
    errback = canvas_app.errback.s("reported").to_dict()
    errback["options"] = {"queue": chords.setup.queue, "ignore_result": True}
    body["options"]["link_error"] = [errback]
    error = {"index": 1, "task_id": "m1", "exc_type": "KeyError", "exc_message": "bad"}
    chords.send(ChordPart("failing", 2, body, [], error))
    # A chord that needs no Redis completes meanwhile (its body keeps no result).
    chords.chord("other", ignore_result=True)
    chords.wait_recorded("other")
    assert not chords.recorded("reported")  # it waits: its FAILURE result comes first
    revived = LocalRedis(port=redis.port).start()
    try:
        (line,) = chords.wait_recorded("reported")
        stop_alive(worker)
    finally:
        revived.stop()
    assert "ChordError" in line and "chord member 1 (m1) failed: KeyError: bad" in line
    assert not parts_of("failing", chords.left_in_chord_queue())


def test_a_coordinator_whose_connection_is_closed_takes_its_parts_again(
    chords: Chords,
) -> None:
    worker = chords.worker("coordinator")
    body = chords.body("reborn")
    chords.send(ChordPart("reborn", 2, body, [(0, "held")]))
    chords.chord("first")  # taken after part 0: once it ran, part 0 is held
    chords.wait_recorded("first")
    # What the coordinator held returns to the queue; it must forget it (acking the returned
    # copy as a duplicate of what it held would lose it) and take it again on reconnecting.
    # The management API lists a connection only once its first statistics are in.
    wait_for(lambda: chords.close_connections_of(worker.pid) >= 1, 60)
    chords.send(ChordPart("reborn", 2, body, [(1, "later")]))
    assert chords.wait_recorded("reborn") == ["reborn 2 held later"]
    stop_alive(worker)
    assert not parts_of("reborn", chords.left_in_chord_queue())


# -- coordinator failover ---------------------------------------------------------------------


def test_a_late_duplicate_after_a_failover_is_dropped_not_held(chords: Chords) -> None:
    first = chords.worker("first")
    finished = chords.chord("finished", size=2)
    chords.wait_recorded("finished")
    # Stopped, not killed: the successor still has no memory of "finished", only the ledger.
    # A kill just after the body ran could land in the window docs/canvas.md states as
    # at-least-once (the body's task or the completion record not yet settled).
    stop_alive(first)
    second = chords.worker("second")
    # A member redelivered after a crash reports again, long after its chord finished.
    chords.send(ChordPart(finished, 2, chords.body("finished"), [(0, 0)]))
    chords.chord("after")  # taken after the duplicate
    chords.wait_recorded("after")
    stop_alive(second)
    assert not parts_of(finished, chords.left_in_chord_queue())
    assert chords.recorded("finished") == ["finished 2 0 1"]


def test_failovers_do_not_bring_held_parts_to_the_delivery_limit(chords: Chords) -> None:
    # RabbitMQ 4.x gives quorum queues a delivery-limit (20) and counts every return; 3.10
    # applies one set by policy. Limit 1: a part returned twice would be dead-lettered.
    chords.policy("limit", f"^{CHORD_QUEUE}$", {"delivery-limit": 1})
    body = chords.body("survivor")
    first = chords.worker("w0")
    chords.send(ChordPart("survivor", 2, body, [(0, "kept")]))
    wait_for(lambda: chords.unacked_in_chord_queue() == 1, 60)  # held by the coordinator
    first.signal(signal.SIGKILL)
    first.process.wait(10)
    for n in range(1, 4):
        # Each successor receives the part back (counted) and folds it into a fresh message.
        worker = chords.worker(f"w{n}")
        wait_for(partial(_folded, worker, "survivor"), 60, worker.log)
        worker.signal(signal.SIGKILL)
        worker.process.wait(10)
    last = chords.worker("last")
    chords.send(ChordPart("survivor", 2, body, [(1, "late")]))
    assert chords.wait_recorded("survivor") == ["survivor 2 kept late"]
    stop_alive(last)
    assert not chords.dead()


def _folded(worker: WorkerProcess, chord_id: str) -> bool:
    return f"chord {chord_id}: folded" in worker.log()


def test_completion_records_survive_failovers_under_the_delivery_limit(chords: Chords) -> None:
    # Limit 2: a record returned three times would be dead-lettered, and three failovers come.
    # (Not 1: the last worker's own shutdown returns the record it has just received.)
    chords.policy("limit", f"^{CHORD_QUEUE}$", {"delivery-limit": 2})
    first = chords.worker("w0")
    finished = chords.chord("finished")
    chords.wait_recorded("finished")
    stop_alive(first)  # settled first (see the test above); its record returns to the queue
    for n in range(1, 4):
        # Each successor receives the record back (counted) and compacts it into a fresh one.
        worker = chords.worker(f"w{n}")
        wait_for(partial(_compacted, worker), 60, worker.log)
        worker.signal(signal.SIGKILL)
        worker.process.wait(10)
    last = chords.worker("last")
    chords.send(ChordPart(finished, 1, chords.body("finished"), [(0, 0)]))  # a late duplicate
    chords.chord("after")
    chords.wait_recorded("after")
    stop_alive(last)
    assert not parts_of(finished, chords.left_in_chord_queue())
    assert chords.recorded("finished") == ["finished 1 0"] and not chords.dead()


def _compacted(worker: WorkerProcess) -> bool:
    return "finished chords compacted into one record" in worker.log()
