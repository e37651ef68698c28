"""The dashboard's reads and actions on dead queues, over ``DeadQueue`` exactly as ``rabbitq
dead`` uses it (blocking; the pages call these in a worker thread).

One at a time, for the whole process: browsing takes messages and hands them back when its
channel closes, so a replay running beside a browse would not see the messages the browse
holds (they would stay dead, not be lost), and two browses would each show part of the queue.
A quorum dead queue that browsing could empty (``DeadQueue.browse_problem``) is never browsed:
its page says why, and replaying everything and purging, which do not browse, still work.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rabbitq.amqp.dead_queue import DeadQueue
from rabbitq.dead_letter_details import DeadLetterDetails, ReplaySelection
from rabbitq.dead_letters import DeadLetterSummary, dead_queue_name
from rabbitq.errors import BrokerError

LIST_LIMIT = 500  # dead letters listed on one page; the rest stay where they are


@dataclass(frozen=True)
class Listing:
    queue: str
    depth: int
    letters: tuple[DeadLetterSummary, ...]
    problem: str | None  # why the queue is not browsed, when it is not

    @property
    def truncated(self) -> bool:
        return len(self.letters) < self.depth and self.problem is None


@dataclass(frozen=True)
class Replayed:
    count: int
    problems: tuple[str, ...]  # one per dead letter left in the dead queue, saying why


class DeadQueues:
    def __init__(self, broker_url: str, opener: Callable[[str, str], DeadQueue] = DeadQueue):
        self.broker_url = broker_url
        self._open_queue = opener
        self._lock = threading.Lock()

    def list(self, queue: str, limit: int = LIST_LIMIT) -> Listing:
        with self._lock, self._open(queue, browse=False) as dead_queue:
            if dead_queue.browse_problem:
                return Listing(dead_queue.queue, dead_queue.depth, (), dead_queue.browse_problem)
            letters = tuple(letter.summary for letter in itertools.islice(dead_queue, limit))
            return Listing(dead_queue.queue, dead_queue.depth, letters, None)

    def find(self, queue: str, task_id: str) -> DeadLetterDetails | None:
        with self._lock, self._open(queue, browse=True) as dead_queue:
            for letter in dead_queue:
                if letter.summary.id == task_id:
                    return DeadLetterDetails.of(letter.envelope)
        return None

    def depth(self, queue: str) -> int:
        with self._lock, self._open(queue, browse=False) as dead_queue:
            return dead_queue.depth

    def replay(self, queue: str, selection: ReplaySelection) -> Replayed:
        """Confirmed publish before removal (``DeadQueue.replay``): nothing is lost."""
        with self._lock, self._open(queue, browse=not selection.everything) as dead_queue:
            count, problems = dead_queue.replay(lambda letter: selection.takes(letter.summary))
        return Replayed(count, tuple(problems))

    def purge(self, queue: str) -> int:
        with self._lock, self._open(queue, browse=False) as dead_queue:
            return dead_queue.purge()

    def _open(self, queue: str, *, browse: bool) -> DeadQueue:
        """Raises ``QueueNotFoundError``, ``BrokerConnectionError``, or ``BrokerError`` saying
        why browsing is refused."""
        dead_queue = self._open_queue(self.broker_url, dead_queue_name(queue))
        if browse and dead_queue.browse_problem:
            dead_queue.close()
            raise BrokerError(dead_queue.browse_problem)
        return dead_queue
