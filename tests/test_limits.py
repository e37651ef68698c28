"""Limits, the pure part: how they are spelled, combined, keyed and counted."""

from __future__ import annotations

import inspect

import pytest

import rabbitq
from rabbitq.errors import ConfigurationError, RoutingConfigError
from rabbitq.limits.bucket import RefillCredit, TokenBucket
from rabbitq.limits.names import holds_copies, scope_name, waiting_queue
from rabbitq.limits.resolve import task_limits
from rabbitq.limits.spec import Concurrency, LocalRate, Mutex, Rate, combine, key_of, per_second
from rabbitq.routing import parse_routing


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("text", "expected"), [("20/s", 20.0), ("120/m", 2.0), ("36/h", 0.01), ("0.5/s", 0.5)]
)
def test_a_rate_is_starts_per_second_minute_or_hour(text: str, expected: float) -> None:
    assert per_second(text, "here") == pytest.approx(expected)


@pytest.mark.parametrize("text", ["20", "20/d", "0/s", "-1/s", "fast"])
def test_a_rate_that_is_not_a_positive_number_per_period_is_refused(text: str) -> None:
    with pytest.raises(ConfigurationError, match="not a positive number of starts"):
        Rate("mail", text)


def test_a_limit_name_must_fit_in_a_queue_name() -> None:
    with pytest.raises(ConfigurationError, match="limit name"):
        Concurrency("has space", 1)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_counts_are_whole_numbers_of_at_least_one(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="at least 1"):
        Concurrency("reports", bad)  # type: ignore[arg-type]


def test_one_task_gets_one_rate_and_one_slot_limit_at_most() -> None:
    with pytest.raises(ConfigurationError, match="two rate limits"):
        combine("t", [Rate("a", "1/s"), Rate("b", "1/s")], None)
    with pytest.raises(ConfigurationError, match="two slot limits"):
        combine("t", [Concurrency("a", 1), Mutex("b", key="user")], None)
    both = combine("t", [Rate("a", "1/s"), Concurrency("b", 2)], LocalRate("5/s"))
    assert both.rate is not None and both.slot is not None and both.local is not None


def test_a_limit_name_shared_by_tasks_must_mean_the_same_limit() -> None:
    app = rabbitq.App("shop")

    @app.task(limits=Concurrency("reports", 2))
    def daily() -> None: ...

    with pytest.raises(ConfigurationError, match="declared twice, differently"):

        @app.task(limits=Concurrency("reports", 3))
        def weekly() -> None: ...


def test_a_mutex_key_the_task_does_not_have_is_refused_at_registration() -> None:
    app = rabbitq.App("shop")
    with pytest.raises(ConfigurationError, match="not one of its arguments"):

        @app.task(limits=Mutex("per-user", key="user_id"))
        def sync(account: int) -> None: ...


def test_a_mutex_key_is_read_by_name_positionally_by_keyword_or_by_default() -> None:
    def sync(user_id: int, full: bool = False, region: str = "eu") -> None: ...

    parameters = inspect.signature(sync)
    mutex = Mutex("per-user", key="user_id")
    assert key_of(mutex, parameters, (7,), {}) == "7"
    assert key_of(mutex, parameters, (), {"user_id": 8}) == "8"
    assert key_of(Mutex("r", key="region"), parameters, (7,), {}) == "eu"


def test_a_mutex_key_function_gets_the_task_s_arguments() -> None:
    mutex = Mutex("per-tenant", key=lambda user, **_: user.split("@")[1])
    assert key_of(mutex, inspect.signature(lambda user: None), ("ada@example.com",), {}) == (
        "example.com"
    )


def test_a_bound_task_s_key_skips_the_task_parameter() -> None:
    app = rabbitq.App("shop")

    @app.task(bind=True, limits=Mutex("per-user", key="user"))
    def sync(self: rabbitq.Task[..., None], user: str) -> None: ...

    found = task_limits(app.tasks, ())
    assert found[sync.name].slot == Mutex("per-user", key="user")


def test_rate_limit_is_celery_s_spelling_and_refused_when_wrong() -> None:
    app = rabbitq.App("shop")

    @app.task(rate_limit="10/m")
    def notify() -> None: ...

    assert notify.rate_limit == LocalRate("10/m")
    with pytest.raises(ConfigurationError, match="rate_limit"):

        @app.task(rate_limit="often")
        def spam() -> None: ...


def test_the_routing_file_s_limits_apply_to_the_tasks_they_name() -> None:
    topology = parse_routing(
        "limits:\n"
        "  mail: {rate: 20/s, burst: 5, tasks: [shop.send]}\n"
        "  reports: {concurrency: 3, tasks: ['shop.reports.*']}\n"
        "  per-user: {mutex: 2, key: user, tasks: [shop.sync]}\n"
    )
    app = rabbitq.App("shop", routing=topology)

    @app.task(name="shop.send")
    def send() -> None: ...

    @app.task(name="shop.reports.daily")
    def daily() -> None: ...

    @app.task(name="shop.sync")
    def sync(user: str) -> None: ...

    @app.task(name="shop.other")
    def other() -> None: ...

    found = task_limits(app.tasks, topology.limits)
    assert found["shop.send"].rate == Rate("mail", "20/s", burst=5)
    assert found["shop.reports.daily"].slot == Concurrency("reports", 3)
    assert found["shop.sync"].slot == Mutex("per-user", key="user", n=2)
    assert "shop.other" not in found


def test_a_routing_file_limit_that_clashes_with_the_code_s_is_refused() -> None:
    topology = parse_routing("limits:\n  reports: {concurrency: 3, tasks: [x]}\n")
    app = rabbitq.App("shop", routing=topology)

    @app.task(limits=Concurrency("reports", 1))
    def daily() -> None: ...

    with pytest.raises(ConfigurationError, match="declared twice"):
        task_limits(app.tasks, topology.limits)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("  m: {rate: 20/x, tasks: [a]}\n", "not a positive number"),
        ("  m: {mutex: 1, tasks: [a]}\n", "mutex needs key"),
        ("  m: {rate: 2/s, concurrency: 1, tasks: [a]}\n", "exactly one of"),
        ("  m: {concurrency: 2}\n", "needs tasks"),
        ("  m: {concurrency: 2, key: user, tasks: [a]}\n", "key goes with mutex only"),
        ("  m: {concurrency: 2, tasks: []}\n", "list of task names"),
        ("  m: {concurrency: 2, tasks: [a], color: red}\n", "color"),
    ],
)
def test_a_bad_limit_in_the_routing_file_names_its_line(text: str, problem: str) -> None:
    with pytest.raises(RoutingConfigError, match=f"routing.yaml:2: .*{problem}"):
        parse_routing("limits:\n" + text, "routing.yaml")


def test_the_per_process_bucket_lets_one_through_then_says_how_long_to_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(per_second=2.0, clock=clock)
    assert bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take() == pytest.approx(1.0)  # each waiter reserves its own token
    clock.now += 10
    assert bucket.take() == 0.0  # no more than its capacity saved up


def test_the_refiller_owes_its_rate_never_more_than_the_burst() -> None:
    clock = Clock()
    credit = RefillCredit(per_second=4.0, burst=5, clock=clock)
    assert credit.owed() == 0
    clock.now += 0.5
    assert credit.owed() == 2
    clock.now += 60
    assert credit.owed() == 5
    credit.restart()
    assert credit.owed() == 5  # a new leader fills the bucket first


def test_the_refiller_ticks_once_a_token_within_bounds() -> None:
    assert RefillCredit(1000.0, 100).tick == 0.02
    assert RefillCredit(10.0, 1).tick == 0.1
    assert RefillCredit(1 / 3600, 1).tick == 1.0


def test_the_refiller_never_owes_more_at_a_tick_than_the_bucket_holds() -> None:
    assert RefillCredit(200.0, 1).tick == pytest.approx(0.005)


def test_a_plain_key_names_its_scope_and_any_other_is_digested() -> None:
    assert scope_name("per-user", "42") == "rabbitq.limit.per-user.key.42"
    odd = scope_name("per-user", "ada.lovelace@example.com/x" * 10)
    assert odd.startswith("rabbitq.limit.per-user.key.h") and len(odd) < 100
    assert scope_name("per-user", "a.b") != scope_name("per-user", "a.c")


def test_waiting_and_returned_queues_hold_copies_and_task_queues_do_not() -> None:
    assert holds_copies(waiting_queue(scope_name("mail")))
    assert holds_copies("rabbitq.limits.returned")
    assert not holds_copies("emails")
    assert not holds_copies("rabbitq.limit.mail.tokens.b1")
