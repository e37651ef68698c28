"""A broker restarted under load: no confirmed task is lost, publisher and worker recover alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import rabbitq
from integration.apps import core_app
from integration.support import WorkerProcess, ran_ids, wait_for
from rabbitq.testing import LocalBroker


@pytest.mark.slow
def test_broker_restart_loses_no_confirmed_task(
    restartable_broker: LocalBroker,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = restartable_broker.url
    app = rabbitq.App("restart", broker=url, publish_timeout=60)
    task = app.task(name="it.record")(core_app.record.fn)
    record = tmp_path / "ran.txt"
    worker = WorkerProcess(url, unique_name, record, tmp_path / "worker.log")
    task.apply_async(("warm-up",), queue=unique_name)  # declares the queue
    worker.wait_until_consuming()

    confirmed: list[str] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def publish_continuously() -> None:
        n = 0
        while not stop.is_set():
            try:
                confirmed.append(task.apply_async((n,), queue=unique_name).id)
            except rabbitq.PublishError as exc:  # allowed, but the task then counts as unsent
                failures.append(exc)
            n += 1
            time.sleep(0.005)

    publisher = threading.Thread(target=publish_continuously)
    publisher.start()
    wait_for(lambda: len(confirmed) >= 200, 30)
    before_restart = len(confirmed)
    restartable_broker.restart()
    wait_for(
        lambda: len(confirmed) >= before_restart + 200,
        90,
        lambda: f"publisher did not recover: {len(confirmed)} confirmed, {failures[-1:]}",
    )
    stop.set()
    publisher.join(90)
    app.close()

    wait_for(
        lambda: set(confirmed) <= set(ran_ids(record)),
        120,
        lambda: (
            f"{len(set(confirmed) - set(ran_ids(record)))} confirmed tasks never ran; "
            f"worker log tail:\n{worker.log()[-2000:]}"
        ),
    )
    assert worker.process.poll() is None, "the worker must survive the restart on its own"
    assert worker.stop() == 0
    print(
        f"\nbroker restarted under load: {len(confirmed)} confirmed, all ran; "
        f"{len(failures)} publish calls raised during the outage"
    )
