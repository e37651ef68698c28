"""What a node answers to each remote-control command (``control/commands.py``), read off a
node whose state the test sets."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import rabbitq
from rabbitq.control import commands
from rabbitq.errors import PublishTimeoutError
from rabbitq.middleware.middleware import TaskContext
from rabbitq.revocations import Revocation

app = rabbitq.App("commands", broker="amqp://guest:secret@broker.example:5672/shop")


@app.task(name="shop.send_email", max_retries=3)
def send_email(to: str) -> None: ...


@dataclass
class Node:
    nodename: str = "rabbitq-1@web1"
    app: Any = app
    concurrency: int = 8
    prefetch: int = 32
    started_at: float = 0.0
    queues: tuple[str, ...] = ("emails",)
    clock: int = 5
    revocations: list[Revocation] = field(default_factory=list)
    logged: list[bool] = field(default_factory=list)
    events_on: bool | None = None
    stopped: bool = False
    log_refuses: bool = False

    def running(self) -> list[TaskContext]:
        return []

    def waiting(self) -> list[TaskContext]:
        return []

    def totals(self) -> dict[str, int]:
        return {"shop.send_email": 2}

    def revoked_ids(self) -> list[str]:
        return sorted(i for r in self.revocations for i in r.ids)

    async def revoke(self, revocation: Revocation, *, log_it: bool) -> list[str]:
        self.revocations.append(revocation)
        if log_it and self.log_refuses:
            raise PublishTimeoutError("no publisher confirm within 5s")
        self.logged.append(log_it)
        return []

    async def add_consumer(self, queue: str) -> None:
        self.queues = (*self.queues, queue)

    async def cancel_consumer(self, queue: str) -> bool:
        return queue in self.queues

    def shutdown(self) -> None:
        self.stopped = True

    def task_events(self, enabled: bool | None) -> bool | None:
        before = self.events_on
        if enabled is not None and before is not None:
            self.events_on = enabled
        return before

    def heartbeat(self) -> None: ...


def ask(node: Node, method: str, **arguments: Any) -> Any:
    return asyncio.run(commands.dispatch(node, method, arguments))


def test_ping_answers_pong() -> None:
    assert ask(Node(), "ping") == {"ok": "pong"}


def test_an_unknown_command_is_answered_with_an_error_naming_it() -> None:
    assert ask(Node(), "nosuch") == {"error": "unknown control command 'nosuch'"}


def test_arguments_a_command_does_not_take_are_answered_with_an_error() -> None:
    assert "active_queues" in ask(Node(), "active_queues", bogus=1)["error"]


def test_registered_leaves_out_builtin_tasks_and_can_append_attributes() -> None:
    assert ask(Node(), "registered") == ["shop.send_email"]
    assert ask(Node(), "registered", taskinfoitems=["max_retries"]) == [
        "shop.send_email [max_retries=3]"
    ]


def test_stats_has_what_flower_reads_and_no_password() -> None:
    stats = ask(Node(), "stats")
    assert stats["total"] == {"shop.send_email": 2} and stats["clock"] == "5"
    assert stats["broker"]["virtual_host"] == "shop" and stats["broker"]["userid"] == "guest"
    assert "secret" not in repr(stats)
    assert {"pool", "pid", "prefetch_count", "rusage", "uptime"} <= set(stats)


def test_conf_masks_the_broker_password() -> None:
    assert "secret" not in ask(Node(), "conf")["broker_url"]


def test_a_celery_revoke_is_applied_and_written_to_the_log() -> None:
    node = Node()
    reply = ask(node, "revoke", task_id="a")
    assert reply == {"ok": "tasks {'a'} flagged as revoked"}
    assert node.revoked_ids() == ["a"] and node.logged == [True]


def test_a_revoke_rabbitq_s_client_logged_already_is_not_written_again() -> None:
    node = Node()
    ask(node, "revoke", task_id=["a", "b"], rabbitq_logged=True)
    assert node.logged == [False]


def test_a_revoke_keeps_its_ids_for_the_app_s_revocations_kept_for() -> None:
    node = Node()
    ask(node, "revoke", task_id="a")
    (revocation,) = node.revocations
    assert revocation.keep_until - revocation.revoked_at == app.revocations_kept_for


def test_terminate_of_a_task_not_running_here_says_so() -> None:
    assert ask(Node(), "terminate", signal="KILL", task_id=["a"]) == {
        "ok": "terminate: tasks unknown"
    }


def test_a_revoke_without_ids_is_refused() -> None:
    assert "needs task_id" in ask(Node(), "revoke")["error"]


def test_shutdown_answers_then_stops_the_worker() -> None:
    node = Node()
    assert ask(node, "shutdown") == {"ok": "shutting down"} and node.stopped


def test_time_limit_sets_the_task_s_limits_or_names_an_unknown_task() -> None:
    assert ask(Node(), "time_limit", task_name="nope", soft=1, hard=2) == {"error": "unknown task"}
    assert ask(Node(), "time_limit", task_name="shop.send_email", soft=1, hard=2) == {
        "ok": "time limits set successfully"
    }
    assert (send_email.soft_time_limit, send_email.time_limit) == (1.0, 2.0)


def test_enable_events_in_a_worker_without_task_events_says_to_start_it_with_e() -> None:
    assert "start it with -E" in ask(Node(events_on=None), "enable_events")["error"]


def test_enable_and_disable_events_toggle_task_events() -> None:
    node = Node(events_on=False)
    assert ask(node, "enable_events") == {"ok": "task events enabled"} and node.events_on
    assert ask(node, "enable_events") == {"ok": "task events already enabled"}
    assert ask(node, "disable_events") == {"ok": "task events disabled"}


def test_rate_limit_is_refused_with_the_reason() -> None:
    reply = ask(Node(), "rate_limit", task_name="shop.send_email", rate_limit="5/s")
    assert reply == {
        "error": "rate limits are not supported by rabbitq workers yet: the task runs unthrottled"
    }


def test_scheduled_is_empty_eta_tasks_wait_in_the_broker() -> None:
    assert ask(Node(), "scheduled") == []


def test_add_consumer_and_cancel_consumer_answer_as_celery_does() -> None:
    node = Node()
    assert ask(node, "add_consumer", queue="reports") == {"ok": "add consumer reports"}
    assert ask(node, "cancel_consumer", queue="reports") == {
        "ok": "no longer consuming from reports"
    }
    assert ask(node, "cancel_consumer", queue="other") == {"error": "not consuming from 'other'"}


def test_a_revoke_the_log_does_not_take_says_it_holds_on_this_node_only() -> None:
    node = Node(log_refuses=True)
    reply = ask(node, "revoke", task_id="a")
    assert "on this node only" in reply["error"] and "no publisher confirm" in reply["error"]
    assert node.revoked_ids() == ["a"]
