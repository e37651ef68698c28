"""Workflows against real workers: chains, groups, chords (with no result backend)."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pika

import rabbitq
from integration.apps import canvas_app
from integration.conftest import CanvasSetup
from integration.support import WorkerProcess, wait_for
from rabbitq.chords import CHORD_QUEUE, ChordPart, part_envelope
from rabbitq.serializers import serializer_named


def recorded(setup: CanvasSetup) -> list[str]:
    path = setup.record_file
    return path.read_text().splitlines() if path.exists() else []


def wait_recorded(setup: CanvasSetup, prefix: str, timeout: float = 60.0) -> list[str]:
    wait_for(
        lambda: any(line.startswith(prefix) for line in recorded(setup)),
        timeout,
        lambda: f"nothing recorded starting with {prefix!r}: {recorded(setup)[-5:]}",
    )
    return [line for line in recorded(setup) if line.startswith(prefix)]


# -- chains ---------------------------------------------------------------------------------


def test_a_chain_of_50_steps_feeds_each_result_to_the_next(rpc_canvas: CanvasSetup) -> None:
    workflow = rabbitq.chain(canvas_app.inc.s(0), *[canvas_app.inc.s() for _ in range(49)])
    with rpc_canvas.worker():
        assert workflow.apply_async().get(timeout=60) == 50


def test_pipe_syntax_and_immutable_steps(rpc_canvas: CanvasSetup) -> None:
    with rpc_canvas.worker():
        workflow = canvas_app.add.s(1, 2) | canvas_app.add.si(10, 10) | canvas_app.mul.s(3)
        assert workflow.delay().get(timeout=30) == 60


def test_a_failing_step_stops_the_chain_and_fires_link_error(canvas: CanvasSetup) -> None:
    workflow = (
        canvas_app.inc.s(1) | canvas_app.fail_if.s(2) | canvas_app.record_member.s("after-failure")
    )
    workflow.link_error(canvas_app.errback.s("errback"))
    with canvas.worker():
        workflow.apply_async()
        (line,) = wait_recorded(canvas, "errback")
        time.sleep(1.0)
    assert "KeyError" in line and "member 2 is bad" in line
    assert not [r for r in recorded(canvas) if r.startswith("after-failure")]


def test_a_chain_step_that_retries_continues_the_chain(rpc_canvas: CanvasSetup) -> None:
    with rpc_canvas.worker():
        workflow = canvas_app.inc.s(1) | canvas_app.flaky.s(2) | canvas_app.inc.s()
        assert workflow.apply_async().get(timeout=60) == 21


def test_link_callbacks_receive_the_result(canvas: CanvasSetup) -> None:
    with canvas.worker():
        canvas_app.add.apply_async((2, 2), link=canvas_app.record_member.s("linked"))
        assert wait_recorded(canvas, "linked") == ["linked 4"]


def test_signatures_survive_their_dict_form(rpc_canvas: CanvasSetup) -> None:
    original = canvas_app.add.s(2).set(countdown=0.1)
    rebuilt = rabbitq.signature(original.to_dict(), rpc_canvas.app)
    with rpc_canvas.worker():
        assert rebuilt.delay(40).get(timeout=30) == 42


# -- groups ---------------------------------------------------------------------------------


def test_a_group_of_1000_returns_every_result_in_order(rpc_canvas: CanvasSetup) -> None:
    with rpc_canvas.worker():
        result = rabbitq.group(canvas_app.add.s(i, i) for i in range(1000)).apply_async()
        assert result.get(timeout=120) == [i * 2 for i in range(1000)]
        assert result.ready() and result.completed_count() == 1000


def test_a_group_of_chains(rpc_canvas: CanvasSetup) -> None:
    workflow = rabbitq.group(canvas_app.add.s(i, i) | canvas_app.mul.s(10) for i in range(5))
    with rpc_canvas.worker():
        assert workflow.apply_async().get(timeout=30) == [0, 20, 40, 60, 80]


def test_map_starmap_and_chunks(rpc_canvas: CanvasSetup) -> None:
    with rpc_canvas.worker():
        assert canvas_app.inc.map([1, 2, 3]).delay().get(timeout=30) == [2, 3, 4]
        assert canvas_app.add.starmap([(1, 2), (3, 4)]).delay().get(timeout=30) == [3, 7]
        chunks = canvas_app.add.chunks([(i, i) for i in range(7)], 3).apply_async()
        assert chunks.get(timeout=30) == [[0, 2, 4], [6, 8, 10], [12]]


# -- chords ---------------------------------------------------------------------------------


def test_a_chord_of_1000_calls_its_body_once_with_every_result_in_order(
    canvas: CanvasSetup,
) -> None:
    header = [canvas_app.add.s(i, 0) for i in range(1000)]
    with canvas.worker():
        rabbitq.chord(header, canvas_app.collect.s("body")).apply_async()
        (line,) = wait_recorded(canvas, "body", timeout=120)
        time.sleep(1.0)
    _label, count, *values = line.split()
    assert count == "1000" and values == [str(i) for i in range(1000)]
    assert len([r for r in recorded(canvas) if r.startswith("body")]) == 1


def test_a_chord_returns_its_body_result_with_a_backend(rpc_canvas: CanvasSetup) -> None:
    with rpc_canvas.worker():
        chord = rabbitq.chord(canvas_app.add.s(i, i) for i in range(10))
        assert chord(canvas_app.tsum.s()).get(timeout=30) == 90


def test_a_chord_of_an_empty_group_calls_the_body_with_an_empty_list(
    canvas: CanvasSetup,
) -> None:
    with canvas.worker():
        rabbitq.chord([], canvas_app.collect.s("empty")).apply_async()
        assert wait_recorded(canvas, "empty") == ["empty 0 "]


def test_a_failing_member_fails_the_chord_and_names_it(canvas: CanvasSetup) -> None:
    body = canvas_app.collect.s("never")
    body.link_error(canvas_app.errback.s("chord-failed"))
    header = [canvas_app.fail_if.s(i, 3) for i in range(6)]
    with canvas.worker():
        rabbitq.chord(header, body).apply_async()
        (line,) = wait_recorded(canvas, "chord-failed")
        time.sleep(1.0)
    assert "ChordError" in line and "chord member 3" in line and "KeyError" in line
    assert not [r for r in recorded(canvas) if r.startswith("never")]


def test_a_revoked_member_fails_the_chord_and_its_body_never_runs(canvas: CanvasSetup) -> None:
    body = canvas_app.collect.s("never")
    body.link_error(canvas_app.errback.s("chord-revoked"))
    revoked_id = str(uuid.uuid4())
    header = [canvas_app.record_member.s(i, f"member-{i}") for i in range(3)]
    header[1] = header[1].set(task_id=revoked_id)
    rabbitq.chord(header, body).apply_async()
    canvas.app.control.revoke(revoked_id)  # before any worker runs: kept in the broker
    with canvas.worker():
        (line,) = wait_recorded(canvas, "chord-revoked")
        time.sleep(1.0)
    assert "TaskRevokedError" in line
    assert not [r for r in recorded(canvas) if r.startswith(("never", "member-1"))]


def test_a_chain_containing_a_group_becomes_a_chord(rpc_canvas: CanvasSetup) -> None:
    workflow = (
        canvas_app.inc.s(0)
        | rabbitq.group(canvas_app.add.s(i) for i in range(4))
        | canvas_app.tsum.s()
        | canvas_app.mul.s(2)
    )
    with rpc_canvas.worker():
        # inc(0) = 1; group: 1+0 .. 1+3 = [1, 2, 3, 4]; sum 10; times 2
        assert workflow.apply_async().get(timeout=30) == 20


def test_a_chord_of_chains_waits_for_the_end_of_each_chain(rpc_canvas: CanvasSetup) -> None:
    header = [canvas_app.add.s(i, i) | canvas_app.inc.s() for i in range(5)]
    with rpc_canvas.worker():
        assert rabbitq.chord(header, canvas_app.tsum.s()).apply_async().get(timeout=30) == 25


def test_duplicate_parts_neither_fire_the_body_early_nor_twice(canvas: CanvasSetup) -> None:
    """As if member 0 had been redelivered after a crash and reported three times."""
    body = canvas_app.collect.s("dup").to_dict()
    body["options"]["queue"] = canvas.queue
    serializer = serializer_named("msgpack")

    # A fresh id: finished chords are recorded in the broker, so an id used by an earlier run
    # would be taken for a finished chord.
    chord_id = f"chord-dup-{uuid.uuid4().hex}"

    def part(index: int) -> ChordPart:
        return ChordPart(chord_id, 3, body, [(index, index * 10)])

    connection = pika.BlockingConnection(pika.URLParameters(canvas.app.broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    from rabbitq.amqp.blocking import to_pika_properties

    def send(item: ChordPart) -> None:
        envelope = part_envelope(item, serializer)
        channel.basic_publish("", CHORD_QUEUE, envelope.body, to_pika_properties(envelope))

    with canvas.worker():
        for _ in range(3):
            send(part(0))
        send(part(1))
        time.sleep(1.5)
        assert not [r for r in recorded(canvas) if r.startswith("dup")]  # not early
        send(part(2))
        (line,) = wait_recorded(canvas, "dup")
        send(part(1))  # late duplicate of a finished chord
        time.sleep(1.5)
    connection.close()
    assert line == "dup 3 0 10 20"
    assert len([r for r in recorded(canvas) if r.startswith("dup")]) == 1


def test_a_chord_completes_when_its_coordinator_is_killed_midway(
    canvas: CanvasSetup, tmp_path: Path
) -> None:
    """Two workers; the one coordinating is SIGKILLed while parts are held."""
    header = [canvas_app.sleep_then.s(i, 0.01) for i in range(300)]
    env = {**canvas.env, "RABBITQ_TEST_RECORD": str(canvas.record_file)}
    first = WorkerProcess(
        canvas.app.broker_url,
        canvas.queue,
        canvas.record_file,
        tmp_path / "first.log",
        "--concurrency",
        "2",
        env=env,
        app="integration.apps.canvas_app",
    )
    first.wait_until_consuming()
    second = WorkerProcess(
        canvas.app.broker_url,
        canvas.queue,
        canvas.record_file,
        tmp_path / "second.log",
        "--concurrency",
        "2",
        env=env,
        app="integration.apps.canvas_app",
    )
    second.wait_until_consuming(count=2)
    try:
        rabbitq.chord(header, canvas_app.collect.s("survived")).apply_async()
        # The first consumer of rabbitq.chords is the active one: the first worker. Once 100
        # members have finished, it holds about 100 parts unacked.
        wait_for(
            lambda: _members_done(first, second) >= 100,
            60,
            lambda: "fewer than 100 members finished",
        )
        first.signal(signal.SIGKILL)
        first.process.wait(10)
        (line,) = wait_recorded(canvas, "survived", timeout=120)
        time.sleep(1.0)
    finally:
        first.stop()
        second.stop()
    _label, count, *values = line.split()
    assert count == "300" and values == [str(i) for i in range(300)]
    assert len([r for r in recorded(canvas) if r.startswith("survived")]) == 1
    # The second worker took over as coordinator and finished the chord.
    assert "complete: body cv.collect" in second.log()
    assert "complete: body cv.collect" not in first.log()


def test_a_chord_outliving_the_fold_period_still_completes(canvas: CanvasSetup) -> None:
    """Parts are folded into one message instead of being held past consumer_timeout."""
    header = [canvas_app.sleep_then.s(i, 0.0) for i in range(5)]
    header.append(canvas_app.sleep_then.s(5, 3.0))
    with canvas.worker(env={"RABBITQ_TEST_FOLD_AFTER": "0.5"}) as worker:
        rabbitq.chord(header, canvas_app.collect.s("folded")).apply_async()
        (line,) = wait_recorded(canvas, "folded", timeout=60)
    assert line == "folded 6 0 1 2 3 4 5"
    assert "folded" in worker.log() and "into one part" in worker.log()


def _members_done(*workers: WorkerProcess) -> int:
    return sum(w.log().count("cv.sleep_then[") for w in workers)
