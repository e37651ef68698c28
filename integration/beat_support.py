"""Beat processes, a recorder of the ticks they send, and the failover drill that
``test_beat.py`` asserts on and ``benchmarks/bench_beat_failover.py`` reports."""

from __future__ import annotations

import datetime as dt
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rabbitq
from rabbitq.amqp.beat_link import read_status
from rabbitq.amqp.connection_parameters import open_blocking

from .support import LoggedProcess, wait_for


def every_second_schedule(path: Path, queue: str, *, grace: str | None = None) -> Path:
    defaults = f"grace: {grace}\n" if grace is not None else ""
    path.write_text(
        defaults + "entries:\n"
        "  every-second:\n"
        "    task: it.beat.tick\n"
        "    every: 1\n"
        f"    options: {{queue: {queue}}}\n"
    )
    return path


class BeatProcess(LoggedProcess):
    """``rabbitq beat`` in a subprocess, logging to a file."""

    def __init__(
        self, broker_url: str, schedule: Path, group: str, log_file: Path, *extra: str
    ) -> None:
        command = [
            sys.executable, "-m", "rabbitq", "beat", "-A", "integration.apps.core_app",
            "--schedule", str(schedule), "--group", group, *extra,
        ]  # fmt: skip
        super().__init__(command, log_file, {"RABBITQ_BROKER_URL": broker_url})


@dataclass(frozen=True)
class ReceivedTick:
    received: float  # time.time() when the recorder got it
    id: str
    entry: str
    scheduled: dt.datetime
    beat: str  # "host:pid" of the beat that sent it


class TickRecorder:
    """Consumes a queue in a thread and keeps every tick that arrives."""

    def __init__(self, broker_url: str, queue: str) -> None:
        self.ticks: list[ReceivedTick] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(broker_url, queue), name="tick-recorder", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("the tick recorder did not start consuming")

    def _run(self, broker_url: str, queue: str) -> None:
        connection = open_blocking(broker_url)
        channel = connection.channel()

        def on_message(_ch: Any, _method: Any, properties: Any, _body: bytes) -> None:
            headers = properties.headers or {}
            beat = headers["rabbitq_beat"]
            self.ticks.append(
                ReceivedTick(
                    received=time.time(),
                    id=str(headers["id"]),
                    entry=str(beat["entry"]),
                    scheduled=dt.datetime.fromisoformat(str(beat["scheduled"])),
                    beat=str(beat["beat"]),
                )
            )

        channel.basic_consume(queue, on_message, auto_ack=True)
        self._ready.set()
        while not self._stop.is_set():
            connection.process_data_events(time_limit=0.1)
        connection.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def current_leader(broker_url: str, group: str) -> str | None:
    status = read_status(broker_url, group)
    if not status.led or status.state is None:
        return None
    return status.state.leader


@dataclass
class Kill:
    at: float  # time.time() of the SIGKILL
    victim: str  # its identity
    successor: str = ""
    led_at: float | None = None  # when the successor took the lease (its leader_since)
    first_tick_at: float | None = None  # when the successor's first tick arrived

    @property
    def takeover_seconds(self) -> float | None:
        return None if self.led_at is None else self.led_at - self.at

    @property
    def failover_seconds(self) -> float | None:
        return None if self.first_tick_at is None else self.first_tick_at - self.at


@dataclass
class FailoverDrill:
    ticks: list[ReceivedTick]
    kills: list[Kill] = field(default_factory=list)
    logs: str = ""


def run_failover_drill(
    broker_url: str,
    work_dir: Path,
    *,
    queue: str,
    group: str,
    beats: int = 3,
    duration: float = 20.0,
    kills: int = 2,
    respawn: bool = False,
) -> FailoverDrill:
    """``beats`` beat processes share an every-second entry for ``duration`` seconds; the
    leader is SIGKILLed ``kills`` times, evenly spaced (``respawn``: a new beat process
    replaces each victim, as a process supervisor would). Returns what the queue received."""
    rabbitq.App(broker=broker_url).ensure_queue(queue)
    schedule = every_second_schedule(work_dir / "schedule.yaml", queue)
    recorder = TickRecorder(broker_url, queue)
    processes: dict[int, BeatProcess] = {}

    def spawn() -> None:
        log_file = work_dir / f"beat{len(processes)}.log"
        process = BeatProcess(broker_url, schedule, group, log_file, "--loglevel", "INFO")
        processes[process.pid] = process

    for _ in range(beats):
        spawn()
    drill = FailoverDrill(ticks=recorder.ticks)
    try:
        wait_for(lambda: current_leader(broker_url, group) is not None, 60, lambda: "no leader")
        wait_for(lambda: bool(recorder.ticks), 10, lambda: "no tick arrived")
        started = time.monotonic()
        for number in range(1, kills + 1):
            # A random phase, so kills do not always land at the same point of a second.
            _sleep_until(started + duration * number / (kills + 1) + random.random())
            victim = current_leader(broker_url, group)
            assert victim is not None
            kill = Kill(at=time.time(), victim=victim)
            processes[int(victim.rsplit(":", 1)[1])].kill()
            drill.kills.append(kill)
            if respawn:
                spawn()
            wait_for(  # the lambda runs within this iteration: B023 does not apply
                lambda: current_leader(broker_url, group) not in (None, victim),  # noqa: B023
                30,
                lambda: "no beat took over",
            )
            state = read_status(broker_url, group).state
            if state is not None and state.leader_since is not None:
                kill.led_at = state.leader_since.timestamp()
        _sleep_until(started + duration)
    finally:
        for process in processes.values():
            process.stop()
        time.sleep(0.5)  # the last confirmed ticks reach the recorder
        recorder.stop()
        drill.logs = "\n".join(p.log()[-2000:] for p in processes.values())
    for kill in drill.kills:
        after = [t for t in drill.ticks if t.received >= kill.at and t.beat != kill.victim]
        if after:
            kill.successor = after[0].beat
            kill.first_tick_at = after[0].received
    return drill


def _sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))
