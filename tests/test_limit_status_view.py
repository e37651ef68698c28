"""How ``rabbitq status`` reads a global limit: its queues by name (``limits/names.py``),
what it allows from the workers' heartbeats, and the lines it prints (``status/limits.py``,
``status/render.py``)."""

from __future__ import annotations

import pytest

from rabbitq.errors import ConfigurationError
from rabbitq.limits.names import (
    RETURNED_QUEUE,
    LimitQueue,
    bucket_queue,
    parse_queue,
    refiller_queue,
    scope_name,
    slot_queue,
    waiting_queue,
)
from rabbitq.limits.spec import Concurrency, Mutex, Rate, declaration
from rabbitq.status.classify import role_of
from rabbitq.status.limits import describe, limit_figures
from rabbitq.status.render import render_text
from rabbitq.status.snapshot import (
    DeclaredLimit,
    LimitFigures,
    QueueFigures,
    Snapshot,
    WorkerFigures,
)
from rabbitq.status.workers import WorkerTable


def queue(name: str, ready: int = 0, unacked: int = 0) -> QueueFigures:
    return QueueFigures(
        name=name, role="limit", type="classic", messages=ready + unacked, ready=ready,
        unacked=unacked, consumers=0, publish_rate=0.0, deliver_rate=0.0,
    )  # fmt: skip


def worker(*limits: DeclaredLimit, online: bool = True) -> WorkerFigures:
    return WorkerFigures(
        hostname="rabbitq@a", pid=1, concurrency=8, active=0, processed=0,
        loadavg=(0.0, 0.0, 0.0), software="py-rabbitq", last_seen=1.0, online=online,
        limits=limits,
    )  # fmt: skip


RATE = DeclaredLimit("mail", "rate", rate="20/s", burst=5)
CAP = DeclaredLimit("reports", "concurrency", n=3)
PER_USER = DeclaredLimit("sync", "mutex", n=1)


def test_each_limit_queue_name_reads_back_as_its_limit_key_and_part() -> None:
    concurrency, keyed = scope_name("reports"), scope_name("sync", "ada")
    assert parse_queue(slot_queue(concurrency, 2)) == LimitQueue("reports", None, "slot", 2)
    assert parse_queue(slot_queue(keyed, 0)) == LimitQueue("sync", "ada", "slot", 0)
    assert parse_queue(waiting_queue(keyed)) == LimitQueue("sync", "ada", "waiting")
    assert parse_queue(bucket_queue("mail", 5)) == LimitQueue("mail", None, "tokens", 5)
    assert parse_queue(refiller_queue("mail")) == LimitQueue("mail", None, "refiller")


def test_other_queues_and_the_returned_queue_are_not_limit_parts() -> None:
    for name in ("emails", "rabbitq.limit.", "rabbitq.limit.x.tokens", RETURNED_QUEUE):
        assert parse_queue(name) is None


def test_limit_queues_and_the_returned_queue_have_the_limit_role() -> None:
    names = frozenset({"emails", "emails.dead"})
    assert role_of(waiting_queue(scope_name("reports")), names) == "limit"
    assert role_of(RETURNED_QUEUE, names) == "limit"


def test_a_limit_name_that_would_read_as_a_mutex_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"'\.key\.'"):
        Concurrency("a.key.b", 1)


def test_a_worker_declares_what_each_limit_allows() -> None:
    assert declaration(Rate("mail", "20/s", burst=5)) == {
        "name": "mail", "kind": "rate", "rate": "20/s", "burst": 5
    }  # fmt: skip
    assert declaration(Mutex("sync", key="user")) == {"name": "sync", "kind": "mutex", "n": 1}


def test_a_heartbeat_s_limits_are_read_and_a_malformed_entry_is_skipped() -> None:
    table = WorkerTable()
    limits = [
        {"name": "mail", "kind": "rate", "rate": "20/s", "burst": 5},
        {"name": "x", "kind": "bogus"},
        "not a mapping",
        {"kind": "mutex"},
    ]
    table.take({"type": "worker-heartbeat", "hostname": "a@h", "rabbitq_limits": limits}, 1.0)
    [seen] = table.figures(1.0)
    assert seen.limits == (RATE,)


def test_a_concurrency_limit_counts_its_held_slots_and_its_waiting_tasks() -> None:
    scope = scope_name("reports")
    queues = [queue(slot_queue(scope, 0)), queue(slot_queue(scope, 2)),
              queue(waiting_queue(scope), ready=4, unacked=1)]  # fmt: skip
    [found] = limit_figures(queues, [worker(CAP)])
    assert found == LimitFigures(
        name="reports", kind="concurrency", declared=CAP, tokens=None, refilled=None,
        holders=2, keys=0, waiting=4, taken=1,
    )  # fmt: skip


def test_a_mutex_counts_keys_held_or_waiting_but_not_idle_ones() -> None:
    ada, bob, idle = (scope_name("sync", key) for key in ("ada", "bob", "cy"))
    queues = [queue(slot_queue(ada, 0)), queue(waiting_queue(ada), ready=2),
              queue(waiting_queue(bob), ready=1), queue(waiting_queue(idle))]  # fmt: skip
    [found] = limit_figures(queues, [worker(PER_USER)])
    assert (found.kind, found.keys, found.holders, found.waiting) == ("mutex", 2, 1, 3)


def test_a_rate_shows_the_tokens_of_its_current_bucket_and_its_refiller() -> None:
    queues = [
        queue(bucket_queue("mail", 5), ready=3),
        queue(bucket_queue("mail", 9), ready=9),  # a bucket of the burst it had before
        queue(refiller_queue("mail")),
        queue(waiting_queue(scope_name("mail")), ready=7),
    ]
    [found] = limit_figures(queues, [worker(RATE)])
    assert (found.tokens, found.refilled, found.waiting) == (3, True, 7)


def test_a_limit_no_worker_online_declares_is_still_shown_by_its_queues() -> None:
    queues = [queue(bucket_queue("mail", 5), ready=0), queue(slot_queue(scope_name("s", "k"), 0))]
    rate, mutex = limit_figures(queues, [worker(RATE, online=False)])
    assert (rate.name, rate.kind, rate.declared, rate.refilled) == ("mail", "rate", None, False)
    assert (mutex.name, mutex.kind, mutex.keys) == ("s", "mutex", 1)


def test_an_undeclared_limit_s_kind_is_told_by_its_queues() -> None:
    queues = [queue(waiting_queue(scope_name("cap"))), queue(refiller_queue("fresh")),
              queue(waiting_queue(scope_name("sync", "idle")))]  # fmt: skip
    kinds = {found.name: found.kind for found in limit_figures(queues, [])}
    assert kinds == {"cap": "concurrency", "fresh": "rate", "sync": "mutex"}


def test_a_declared_limit_with_no_queues_yet_is_shown_idle() -> None:
    [found] = limit_figures([], [worker(CAP)])
    assert (found.holders, found.waiting) == (0, 0)


def test_what_a_limit_allows_reads_as_a_phrase() -> None:
    assert describe(RATE) == "20/s burst 5"
    assert describe(CAP) == "3 at once"
    assert describe(PER_USER) == "1 per key"
    assert describe(None) == "no worker"


def snapshot(*limits: LimitFigures, returned: int = 0) -> Snapshot:
    return Snapshot(
        taken_at="2026-12-06T00:00:00+00:00", broker="amqp://h/", broker_version="4.0.5",
        queues=(), workers=(), dead_queues=(), limits=limits, limits_returned=returned,
    )  # fmt: skip


def line_of(text: str, name: str) -> list[str]:
    [line] = [line for line in text.splitlines() if line.strip().startswith(name + " ")]
    return line.split()


def test_the_status_screen_shows_each_limit_s_allowance_and_state() -> None:
    [rate, cap] = limit_figures(
        [queue(bucket_queue("mail", 5), ready=2), queue(refiller_queue("mail")),
         queue(slot_queue(scope_name("reports"), 0))],
        [worker(RATE, CAP)],
    )  # fmt: skip
    text = render_text(snapshot(rate, cap), now=0.0)
    assert "Limits" in text.splitlines()
    assert line_of(text, "mail") == ["mail", "rate", "20/s", "burst", "5", "2/5", "0", "0"]
    assert line_of(text, "reports") == ["reports", "concurrency", "3", "at", "once", "1/3",
                                        "0", "0"]  # fmt: skip


def test_a_rate_with_tasks_waiting_and_no_refiller_is_flagged() -> None:
    [rate] = limit_figures(
        [queue(bucket_queue("mail", 5)), queue(waiting_queue(scope_name("mail")), ready=3)], []
    )
    text = render_text(snapshot(rate), now=0.0)
    assert "no refiller" in " ".join(line_of(text, "mail"))


def test_copies_back_from_a_long_wait_are_counted() -> None:
    text = render_text(snapshot(returned=4), now=0.0)
    assert "4 waiting task(s) back from a long wait" in text


def test_limits_left_behind_idle_are_shown_only_with_all() -> None:
    [idle] = limit_figures([queue(waiting_queue(scope_name("old")))], [])
    assert "Limits" not in render_text(snapshot(idle), now=0.0).splitlines()
    shown = render_text(snapshot(idle), now=0.0, show_all=True)
    assert line_of(shown, "old") == ["old", "concurrency", "no", "worker", "0", "0", "0"]


def test_without_limits_the_status_screen_has_no_limits_section() -> None:
    assert "Limits" not in render_text(snapshot(), now=0.0).splitlines()
