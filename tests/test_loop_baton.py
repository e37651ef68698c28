"""Who runs the publisher's I/O loop (``amqp/loop_baton.py``): the I/O thread, or a caller
waiting for its own confirm, one at a time. The lingering is an hour here, so a test that
expects the I/O thread to wait can never see it move on by the clock."""

from __future__ import annotations

import threading

from rabbitq.amqp.loop_baton import LoopBaton

HOUR = 3600.0


def io_thread_turn(baton: LoopBaton) -> threading.Thread:
    """The I/O thread asking for its next turn, in a thread of its own."""
    thread = threading.Thread(target=baton.take_turn, kwargs={"urgent": False}, daemon=True)
    thread.start()
    return thread


def test_a_caller_takes_the_loop_when_nobody_runs_it() -> None:
    baton = LoopBaton(HOUR)
    assert baton.try_take()
    assert baton.holder == LoopBaton.CALLER


def test_a_caller_never_takes_the_loop_from_the_io_thread() -> None:
    baton = LoopBaton(HOUR)
    baton.take_turn(urgent=False)
    assert not baton.try_take()
    assert baton.holder == LoopBaton.IO


def test_a_caller_never_takes_the_loop_from_another_caller() -> None:
    baton = LoopBaton(HOUR)
    assert baton.try_take()
    assert not baton.try_take()


def test_the_io_thread_hands_the_loop_over_when_asked_and_idle() -> None:
    baton = LoopBaton(HOUR)
    baton.take_turn(urgent=False)
    assert not baton.try_take()  # asks
    baton.end_turn(idle=lambda: True)
    waiting = io_thread_turn(baton)
    assert baton.try_take()
    waiting.join(0.2)
    assert waiting.is_alive() and baton.holder == LoopBaton.CALLER


def test_the_io_thread_keeps_the_loop_while_something_is_in_flight() -> None:
    baton = LoopBaton(HOUR)
    baton.take_turn(urgent=False)
    assert not baton.try_take()  # asks
    baton.end_turn(idle=lambda: False)
    baton.take_turn(urgent=False)  # at once: no lingering
    assert baton.holder == LoopBaton.IO


def test_a_caller_leaving_work_behind_gives_the_loop_back_to_the_io_thread_at_once() -> None:
    baton = LoopBaton(HOUR)
    assert baton.try_take()
    waiting = io_thread_turn(baton)
    baton.give_back(idle=lambda: False)
    waiting.join(10)
    assert not waiting.is_alive() and baton.holder == LoopBaton.IO


def test_after_an_idle_caller_the_io_thread_lingers_until_woken() -> None:
    baton = LoopBaton(HOUR)
    assert baton.try_take()
    baton.give_back(idle=lambda: True)
    waiting = io_thread_turn(baton)
    waiting.join(0.2)
    assert waiting.is_alive()
    baton.wake()
    waiting.join(10)
    assert not waiting.is_alive() and baton.holder == LoopBaton.IO


def test_a_stopping_loop_goes_back_to_the_io_thread_without_lingering() -> None:
    baton = LoopBaton(HOUR)
    assert baton.try_take()
    baton.give_back(idle=lambda: True)
    baton.take_turn(urgent=True)
    assert baton.holder == LoopBaton.IO
