"""Token arithmetic, pure: the per-process bucket of ``rate_limit`` and the refiller's credit.

Both read a monotonic clock passed in, so the specs step time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """Celery's ``rate_limit`` in one process: ``per_second`` tokens a second, holding at
    most ``capacity`` (1, as Celery's kombu bucket: no burst after a quiet spell)."""

    def __init__(self, per_second: float, capacity: int = 1, clock: Clock = time.monotonic):
        self.per_second = per_second
        self.capacity = float(capacity)
        self.clock = clock
        self._tokens = float(capacity)
        self._at = clock()

    def take(self) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be (a
        token is reserved for the caller either way: it must wait that long, then start)."""
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.per_second


class RefillCredit:
    """How many tokens the refiller owes the bucket: ``per_second`` a second, never more
    than ``burst`` at once (the bucket holds no more; the broker drops the rest)."""

    def __init__(self, per_second: float, burst: int, clock: Clock = time.monotonic):
        self.per_second = per_second
        self.burst = burst
        self.clock = clock
        self._credit = 0.0
        self._at = clock()

    def restart(self) -> None:
        """A new leader fills the bucket first (as a new bucket starts full); the bucket
        holds no more than ``burst``, whatever the last leader left in it."""
        self._credit = float(self.burst)
        self._at = self.clock()

    def owed(self) -> int:
        now = self.clock()
        self._credit = min(float(self.burst), self._credit + (now - self._at) * self.per_second)
        self._at = now
        whole = int(self._credit)
        self._credit -= whole
        return whole

    @property
    def tick(self) -> float:
        """Seconds between refills: one token's time (at least 20 ms), but never so long
        that more than ``burst`` come due at once (the bucket would drop the rest), and at
        most 1 s."""
        return min(1.0, self.burst / self.per_second, max(0.02, 1.0 / self.per_second))
