"""Reading events the way Flower and celery-exporter read them: Celery's own ``EventReceiver``
feeding Celery's ``State``, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from celery import Celery
from celery.events import EventReceiver
from celery.events.state import State


class _Receiver(EventReceiver):  # type: ignore[misc]
    ready: threading.Event

    def on_consume_ready(self, *args: Any, **kwargs: Any) -> None:
        self.ready.set()


class CeleryEventCapture:
    def __init__(self, broker_url: str) -> None:
        self.celery = Celery(broker=broker_url, set_as_current=False)
        self.state = State()
        self.events: list[dict[str, Any]] = []
        self._lock = threading.RLock()  # wait_for holds it while its condition reads
        self._ready = threading.Event()
        self._receiver: _Receiver | None = None
        self._thread = threading.Thread(target=self._capture, daemon=True)

    def __enter__(self) -> CeleryEventCapture:
        self._thread.start()
        if not self._ready.wait(30):
            raise AssertionError("Celery's event receiver did not start consuming")
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(10)

    def _capture(self) -> None:
        with self.celery.connection() as connection:
            receiver = _Receiver(
                connection.channel(), handlers={"*": self._on_event}, app=self.celery
            )
            receiver.ready = self._ready
            self._receiver = receiver
            receiver.capture(limit=None, timeout=None, wakeup=False)

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)
            self.state.event(event)

    def of_type(self, event_type: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e["type"] == event_type and all(e.get(k) == v for k, v in fields.items())
            ]

    def wait_for(
        self, condition: Callable[[], bool], timeout: float = 20.0, what: str = "events"
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if condition():
                    return
            time.sleep(0.05)
        with self._lock:
            seen = [(e["type"], e.get("uuid") or e.get("hostname")) for e in self.events]
        raise AssertionError(f"timed out waiting for {what}; events seen: {seen[-40:]}")
