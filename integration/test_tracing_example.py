"""examples/tracing.py does what it says: the caller's trace id is on the task's log lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples import tracing
from integration.support import running_worker, wait_for

# A tracing example's log lines, not the broker's version: once, in the first pass.
pytestmark = pytest.mark.first_pass_only


def test_the_callers_trace_id_reaches_the_log_lines_of_thread_and_async_tasks(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing.app, "broker_url", broker_url)
    tracing.app._declare_once.reset()
    tracing.app.ensure_queue("tracing")
    with running_worker(broker_url, "tracing", tmp_path, app="examples.tracing") as worker:
        token = tracing.trace_id.set("trace-from-the-web-request")
        try:
            charged = tracing.charge.delay(7)
            notified = tracing.notify.delay(7)
        finally:
            tracing.trace_id.reset(token)
        wait_for(
            lambda: worker.log().count("trace=trace-from-the-web-request") >= 2, 30, worker.log
        )
        log = worker.log()
    assert f"trace=trace-from-the-web-request task={charged.id} charging order 7" in log
    assert f"trace=trace-from-the-web-request task={notified.id} notifying about order 7" in log
    tracing.app.close()
