"""The bounded buffer in front of a publisher's event channel (``send_event``).

Events are sent without confirms and never waited for; what the broker cannot take yet waits
here, up to ``limit`` messages, and past that is refused (the caller counts it as dropped),
so a blocked broker costs memory bounded by the limit and never a task's time.
"""

from __future__ import annotations

import collections
import threading

from rabbitq.message import Envelope

EVENT_BUFFER_LIMIT = 10_000  # messages (a task.multi message holds up to 200 events)

EventItem = tuple[str, Envelope]  # (routing key, envelope)


class EventBuffer:
    """Thread-safe: synchronous callers fill it from any thread, the I/O side empties it."""

    def __init__(self, limit: int = EVENT_BUFFER_LIMIT) -> None:
        self.limit = limit
        self.lost = 0  # taken out, then lost with a connection before the broker had them
        self._items: collections.deque[EventItem] = collections.deque()
        self._lock = threading.Lock()

    def offer(self, routing_key: str, envelope: Envelope) -> bool:
        with self._lock:
            if len(self._items) >= self.limit:
                return False
            self._items.append((routing_key, envelope))
            return True

    def take(self) -> list[EventItem]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
            return items

    def __len__(self) -> int:
        return len(self._items)
