"""Beat against a real broker: failover without skipped ticks, cron on the wall clock,
unroutable ticks kept, status, and a broker restart."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika
from click.testing import CliRunner

import rabbitq
from rabbitq.amqp.beat_link import read_status
from rabbitq.beat.runner import Beat
from rabbitq.beat.schedules import PeriodicEntry
from rabbitq.cli.main import cli
from rabbitq.testing import LocalBroker

from .beat_support import (
    BeatProcess,
    ReceivedTick,
    TickRecorder,
    current_leader,
    every_second_schedule,
    run_failover_drill,
)
from .cuttable_proxy import CuttableProxy
from .support import drain_queue, wait_for

# A correctness bound, not a performance target: a tick sent this late was held somewhere.
# Failover measured here is about 1 s (see the issue note); the bound leaves room for a
# loaded CI machine.
FAILOVER_BOUND = 10.0


@contextmanager
def beat_in_thread(app: rabbitq.App, group: str, **options: object) -> Iterator[Beat]:
    beat = Beat(app, list(app.periodic), group=group, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=beat.run, name=f"beat-{group}", daemon=True)
    thread.start()
    try:
        yield beat
    finally:
        beat.stop()
        thread.join(15)


def fresh_app(broker_url: str) -> rabbitq.App:
    return rabbitq.App("beat-it", broker=broker_url)


def test_three_beats_with_the_leader_killed_twice_fire_every_second(
    broker_url: str, tmp_path: Path, unique_name: str
) -> None:
    drill = run_failover_drill(
        broker_url, tmp_path, queue=unique_name, group=unique_name, duration=20.0, kills=2
    )
    ticks = drill.ticks
    by_second: dict[dt.datetime, list[ReceivedTick]] = collections.defaultdict(list)
    for tick in ticks:
        by_second[tick.scheduled].append(tick)
    first, last = min(by_second), max(by_second)
    expected = [first + dt.timedelta(seconds=n) for n in range(int((last - first).seconds) + 1)]
    assert sorted(by_second) == expected, f"a second was skipped\n{drill.logs}"
    assert len(expected) >= 18
    assert len(drill.kills) == 2 and all(kill.successor for kill in drill.kills), drill.logs
    assert len({kill.successor for kill in drill.kills} | {drill.kills[0].victim}) == 3

    # Only the tick in flight at a kill may come twice: from the victim and its successor,
    # under one id.
    repeated = {second: copies for second, copies in by_second.items() if len(copies) > 1}
    assert len(repeated) <= len(drill.kills)
    for second, copies in repeated.items():
        assert len(copies) == 2
        assert len({copy.id for copy in copies}) == 1
        assert copies[0].id == f"every-second@{second.isoformat().replace('+00:00', 'Z')}"
        victim, successor = copies[0].beat, copies[1].beat
        assert any(k.victim == victim and k.successor == successor for k in drill.kills)

    for tick in ticks:
        lateness = tick.received - tick.scheduled.timestamp()
        assert -0.05 <= lateness <= FAILOVER_BOUND, tick
    for kill in drill.kills:
        print(f"failover after SIGKILL of {kill.victim}: {kill.failover_seconds:.2f} s")


def test_a_beat_restarted_after_an_outage_longer_than_grace_sends_one_catch_up_tick(
    broker_url: str, tmp_path: Path, unique_name: str
) -> None:
    grace = dt.timedelta(seconds=2)
    outage = 5.0  # every beat down this long: well past the grace
    rabbitq.App(broker=broker_url).ensure_queue(unique_name)
    schedule = every_second_schedule(tmp_path / "schedule.yaml", unique_name, grace="2s")
    recorder = TickRecorder(broker_url, unique_name)
    logs: list[BeatProcess] = []

    def sent_by(process: BeatProcess) -> list[ReceivedTick]:
        mine = [t for t in recorder.ticks if t.beat.rsplit(":", 1)[1] == str(process.pid)]
        return sorted(mine, key=lambda tick: tick.scheduled)

    def beat(name: str) -> BeatProcess:
        process = BeatProcess(
            broker_url, schedule, unique_name, tmp_path / f"{name}.log", "--loglevel", "INFO"
        )
        logs.append(process)
        return process

    try:
        before = beat("before")
        try:
            wait_for(lambda: len(sent_by(before)) >= 2, 60, lambda: before.log()[-2000:])
        finally:
            before.stop()
        time.sleep(outage)
        after = beat("after")
        try:
            wait_for(lambda: len(sent_by(after)) >= 4, 60, lambda: after.log()[-2000:])
            state = read_status(broker_url, unique_name).state
        finally:
            after.stop()
        time.sleep(0.5)  # the last confirmed ticks reach the recorder
    finally:
        recorder.stop()
    describe = "\n".join(process.log()[-2000:] for process in logs)
    assert state is not None and state.leader.endswith(f":{after.pid}"), describe
    assert state.leader_since is not None
    restarted = state.leader_since.replace(microsecond=0)
    last_before = sent_by(before)[-1].scheduled
    oldest_missed = last_before + dt.timedelta(seconds=1)
    assert state.leader_since - oldest_missed > grace, "not an outage: the test waited too little"

    # Nothing for the seconds of the outage: the one catch-up tick is the restart's own second
    # (or the next, if the restart straddled a second), and the grid resumes after it.
    seconds = [tick.scheduled for tick in sent_by(after)]
    assert seconds[0] >= restarted, (restarted, seconds, describe)
    assert all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(seconds)), seconds
    assert not [t for t in recorder.ticks if last_before < t.scheduled < seconds[0]]


def test_cron_entry_fires_on_its_wall_clock_seconds(broker_url: str, unique_name: str) -> None:
    app = fresh_app(broker_url)
    app.add_periodic(
        rabbitq.Signature("it.beat.tick", options={"queue": unique_name}, app=app),
        cron="*/2 * * * * *",  # seconds first: every even second
        timezone="Asia/Kolkata",  # +05:30, so local seconds line up with UTC seconds
        name="even-seconds",
    )
    app.ensure_queue(unique_name)
    recorder = TickRecorder(broker_url, unique_name)
    try:
        with beat_in_thread(app, unique_name):
            wait_for(lambda: len(recorder.ticks) >= 3, 20, lambda: "fewer than 3 ticks")
    finally:
        recorder.stop()
    for tick in recorder.ticks:
        assert tick.scheduled.second % 2 == 0 and tick.scheduled.microsecond == 0
        assert tick.received >= tick.scheduled.timestamp()  # never early
    seconds = sorted(tick.scheduled for tick in recorder.ticks)
    assert all(b - a == dt.timedelta(seconds=2) for a, b in itertools.pairwise(seconds))


def test_unroutable_tick_goes_to_the_beat_dead_queue_with_the_reason(
    broker_url: str, unique_name: str
) -> None:
    app = fresh_app(broker_url)
    app.add_periodic(
        rabbitq.Signature("it.beat.tick", options={"routing_key": f"{unique_name}.nowhere"}),
        every=1,
        name="lost",
    )
    dead_queue = f"rabbitq.beat.{unique_name}.dead"
    with beat_in_thread(app, unique_name):
        wait_for(lambda: _depth(broker_url, dead_queue) >= 1, 20, lambda: "nothing dead-lettered")
    properties, _body = drain_queue(broker_url, dead_queue)[0]
    assert properties.headers["rabbitq_reason"] == "unroutable"
    assert properties.headers["rabbitq_exception_type"] == "UnroutableError"
    assert properties.headers["id"].startswith("lost@")


def test_status_shows_the_leader_and_each_entry_next_tick(
    broker_url: str, unique_name: str
) -> None:
    app = fresh_app(broker_url)
    app.add_periodic(
        rabbitq.Signature("it.beat.tick", options={"queue": unique_name}),
        cron="0 3 * * *",
        timezone="Europe/Paris",
        name="nightly",
    )
    runner = CliRunner()
    idle = runner.invoke(cli, ["beat", "status", "--broker", broker_url, "--group", unique_name])
    assert idle.exit_code == 0 and "no beat leads" in idle.output
    with beat_in_thread(app, unique_name, identity="test-beat:1"):
        wait_for(lambda: _depth(broker_url, f"rabbitq.beat.{unique_name}.state") == 1, 20)
        shown = runner.invoke(
            cli, ["beat", "status", "--broker", broker_url, "--group", unique_name]
        )
    assert shown.exit_code == 0, shown.output
    assert "leader: test-beat:1" in shown.output
    nightly = next(line for line in shown.output.splitlines() if line.startswith("nightly"))
    assert "cron 0 3 * * * Europe/Paris" in nightly
    assert ":00:00Z" in nightly  # next tick, 03:00 Paris time written in UTC


def test_a_beat_carries_on_after_a_broker_restart_without_skipping(
    restartable_broker: LocalBroker, unique_name: str
) -> None:
    app = fresh_app(restartable_broker.url)
    app.add_periodic(
        rabbitq.Signature("it.beat.tick", options={"queue": unique_name}), every=1, name="tick"
    )
    app.ensure_queue(unique_name)
    with beat_in_thread(app, unique_name):
        wait_for(lambda: _depth(restartable_broker.url, unique_name) >= 2, 20)
        restartable_broker.restart()
        before = _depth(restartable_broker.url, unique_name)
        wait_for(lambda: _depth(restartable_broker.url, unique_name) >= before + 3, 60)
    scheduled = sorted(
        dt.datetime.fromisoformat(properties.headers["rabbitq_beat"]["scheduled"])
        for properties, _ in drain_queue(restartable_broker.url, unique_name)
    )
    gaps = [b - a for a, b in itertools.pairwise(scheduled)]
    assert set(gaps) <= {dt.timedelta(seconds=1), dt.timedelta(0)}, scheduled


def test_a_standby_takes_over_when_the_leader_is_cut_off_by_the_network(
    broker_url: str, unique_name: str
) -> None:
    host, port = urllib.parse.urlsplit(broker_url).hostname, urllib.parse.urlsplit(broker_url).port
    assert host is not None and port is not None
    proxy = CuttableProxy(host, port)
    behind_proxy = fresh_app(broker_url.replace(f":{port}/", f":{proxy.port}/"))
    direct = fresh_app(broker_url)
    for app in (behind_proxy, direct):
        app.add_periodic(
            rabbitq.Signature("it.beat.tick", options={"queue": unique_name}), every=1, name="t"
        )
    direct.ensure_queue(unique_name)
    try:
        with beat_in_thread(behind_proxy, unique_name, identity="cut-off:1"):
            wait_for(lambda: current_leader(broker_url, unique_name) == "cut-off:1", 20)
            with beat_in_thread(direct, unique_name, identity="direct:2"):
                wait_for(lambda: _depth(broker_url, unique_name) >= 2, 20)
                proxy.cut()
                cut_at = time.monotonic()
                wait_for(lambda: current_leader(broker_url, unique_name) == "direct:2", 30)
                print(f"failover after a network cut: {time.monotonic() - cut_at:.2f} s")
                taken = _depth(broker_url, unique_name)
                wait_for(lambda: _depth(broker_url, unique_name) >= taken + 2, 20)
            proxy.close()  # the cut-off beat's reconnect attempts now fail at once
    finally:
        proxy.close()
    scheduled = collections.Counter(
        properties.headers["rabbitq_beat"]["scheduled"]
        for properties, _ in drain_queue(broker_url, unique_name)
    )
    seconds = sorted(dt.datetime.fromisoformat(s) for s in scheduled)
    assert all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(seconds)), seconds
    assert max(scheduled.values()) <= 2


def test_entries_from_add_periodic_are_what_beat_runs(broker_url: str) -> None:
    app = fresh_app(broker_url)
    entry = app.add_periodic(rabbitq.Signature("it.beat.tick"), every="5m")
    assert list(app.periodic) == [entry]
    assert isinstance(entry, PeriodicEntry) and entry.name == "it.beat.tick"


def _depth(broker_url: str, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    except pika.exceptions.ChannelClosedByBroker:
        return 0
    finally:
        if connection.is_open:
            connection.close()


def test_a_new_leader_reads_the_state_a_status_reader_holds_for_a_moment(
    broker_url: str, unique_name: str
) -> None:
    """rabbitq status peeks at the beat's state (takes it, hands it back); a leader taking
    over in that moment must still start from it, or its failover would skip ticks."""
    from rabbitq.amqp.beat_link import BeatLink
    from rabbitq.beat.state import BeatState, encode_state, state_queue_name

    queue = state_queue_name(unique_name)
    holding = threading.Event()

    def hold_for_a_moment() -> None:  # a reader on its own connection, in its own thread
        reader = pika.BlockingConnection(pika.URLParameters(broker_url))
        channel = reader.channel()  # the queue is the link's, declared as the beat does
        # Confirmed, as the beat writes it: a quorum queue has the copy once it confirms.
        channel.confirm_delivery()
        channel.basic_publish("", queue, encode_state(BeatState(seq=7, leader="gone:1")))
        method, _properties, _body = channel.basic_get(queue, auto_ack=False)
        assert method is not None
        holding.set()
        reader.sleep(0.4)
        reader.close()  # the copy goes back to the queue

    link = BeatLink(broker_url, identity="new:2", group=unique_name)
    reader = threading.Thread(target=hold_for_a_moment)
    reader.start()
    try:
        assert holding.wait(10)
        assert link.try_to_lead()
        state = link.read_state()  # while the reader still holds the only copy
    finally:
        link.close()
        reader.join(10)
    assert state is not None and state.seq == 7
