"""Who runs the publisher's pika I/O loop: its own thread, or the caller waiting for a confirm.

pika's loop must be run by one thread at a time. Normally the publisher's I/O thread runs it
and a caller hands it each message and sleeps until the confirm. That costs two thread
wake-ups per publish (caller -> I/O thread with the message, I/O thread -> caller with the
confirm), as much as a third of a confirmed publish when one thread publishes in a loop.

So a caller that finds the loop free runs it itself ("takes the baton"): it publishes and
polls on its own thread until its confirm is in, as ``pika.BlockingConnection`` does, then
gives the baton back. The I/O thread hands it over only when asked and idle (nothing in
flight, see ``BlockingPublisher``), and then lingers for ``LINGER`` seconds before it runs
the loop again, so the next publish of the same caller finds it free. Everything the loop
does (confirms, returns, reconnects, other threads' messages handed over with
``add_callback_threadsafe``) happens in whichever thread holds the baton, one at a time.

Pure threading: no pika here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# How long the I/O thread leaves the loop to the caller who last ran it. Long enough to
# cover a caller's work between two publishes; short, because while nobody polls, what the
# broker sends (a heartbeat, connection.blocked) waits, and so do events handed over.
LINGER = 0.05


class LoopBaton:
    """One holder at a time of the right to run the I/O loop (``IO``, ``CALLER`` or none)."""

    IO = "io"
    CALLER = "caller"

    def __init__(self, linger: float = LINGER) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._holder: str | None = None
        self._linger = linger
        self._asked = False  # a caller asked the I/O thread for the loop
        self._caller_left_at = float("-inf")  # monotonic; -inf: no lingering

    @property
    def holder(self) -> str | None:
        return self._holder

    # -- callers -------------------------------------------------------------------------------

    def try_take(self) -> bool:
        """Take the loop if nobody runs it; never waits. When the I/O thread runs it, ask for
        it instead: the I/O thread hands it over once idle (``end_turn``)."""
        with self._changed:
            if self._holder is None:
                self._holder = self.CALLER
                return True
            if self._holder == self.IO:
                self._asked = True
            return False

    def give_back(self, *, idle: Callable[[], bool]) -> None:
        """The caller is done with the loop. Unless ``idle()`` (something else waits on it:
        other threads' confirms, events, a reconnect), the I/O thread takes it back at once.

        ``idle`` is judged under this lock: a thread that queued work and then found the
        loop taken (``try_take``) is seen here, or it finds the loop free and runs it."""
        with self._changed:
            self._holder = None
            if idle():
                self._caller_left_at = time.monotonic()
            else:
                self._caller_left_at = float("-inf")
                self._changed.notify_all()

    # -- the I/O thread ------------------------------------------------------------------------

    def take_turn(self, *, urgent: bool) -> None:
        """Wait until the I/O thread may run the loop, and take it. ``urgent`` (the loop is
        stopping): no lingering, only wait for a caller running it to give it back."""
        with self._changed:
            while True:
                if self._holder is None:
                    left_for = time.monotonic() - self._caller_left_at
                    if urgent or left_for >= self._linger:
                        self._holder = self.IO
                        return
                    self._changed.wait(self._linger - left_for)
                else:
                    # Woken by give_back(work_left=True); otherwise look again after a while.
                    self._changed.wait(self._linger)

    def end_turn(self, *, idle: Callable[[], bool]) -> None:
        """The I/O thread ran one turn. If ``idle()`` (nothing in flight, nothing buffered;
        judged under this lock, as in ``give_back``), a caller who asked for the loop gets it,
        and the I/O thread lingers."""
        with self._changed:
            self._holder = None
            if self._asked and idle():
                self._asked = False
                self._caller_left_at = time.monotonic()

    def wake(self) -> None:
        """Make a waiting ``take_turn`` look again (the loop was told to stop)."""
        with self._changed:
            self._caller_left_at = float("-inf")
            self._changed.notify_all()
