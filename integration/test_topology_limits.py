"""Delivery limits and dead-queue policies on a real broker (issue 12, items 14 and 15)."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from aio_pika.abc import AbstractConnection

from integration.support import queue_depth, wait_for
from integration.test_topology_cli import rabbitq_cli
from rabbitq.amqp.declare import (
    declare_chord_queues,
    declare_delay_levels,
    declare_task_exchange,
    with_connection,
)
from rabbitq.amqp.management import ManagementClient
from rabbitq.chords import CHORD_QUEUE
from rabbitq.delays import level_name
from rabbitq.topology import DEFAULT_DELIVERY_LIMIT, UNREACHABLE_DELIVERY_LIMIT, Policy, QueueType


def _routing(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return path


def _apply(routing: Path, broker_url: str, management_url: str) -> tuple[int, str, str]:
    result = rabbitq_cli(
        "topology", "apply", str(routing), "--broker", broker_url,
        "--management-url", management_url,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def _publish(broker_url: str, queue: str, count: int) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.confirm_delivery()
    for i in range(count):
        channel.basic_publish("", queue, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    connection.close()


def _arguments(management_url: str, vhost: str, queue: str) -> dict[str, object]:
    arguments: dict[str, object] = ManagementClient(management_url).queue(vhost, queue)["arguments"]
    return arguments


@pytest.fixture
def fresh_vhost(broker_url: str, management_url: str) -> Iterator[str]:
    """A vhost of its own, so rabbitq's fixed names (rabbitq.chords, the delay levels) are
    declared afresh here even though the shared broker has them already."""
    client = ManagementClient(management_url)
    vhost = "rabbitq-test-" + uuid.uuid4().hex[:8]
    user = urllib.parse.urlsplit(broker_url).username or "guest"
    client.call("PUT", f"/api/vhosts/{vhost}", {})
    client.call(
        "PUT", f"/api/permissions/{vhost}/{user}", {"configure": ".*", "write": ".*", "read": ".*"}
    )
    yield vhost
    client.call("DELETE", f"/api/vhosts/{vhost}")


def _in_vhost(broker_url: str, vhost: str) -> str:
    parts = urllib.parse.urlsplit(broker_url)
    return parts._replace(path="/" + urllib.parse.quote(vhost, safe="")).geturl()


# --- item 15: delivery limits -------------------------------------------------------------


def test_quorum_task_queue_is_declared_with_the_backstop_delivery_limit(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    routing = _routing(tmp_path, f"queues:\n  {unique_name}:\n    type: quorum\n")
    code, _out, err = _apply(routing, broker_url, management_url)
    assert code == 0, err
    assert _arguments(management_url, "/", unique_name)["x-delivery-limit"] == (
        DEFAULT_DELIVERY_LIMIT
    )


def test_quorum_dead_queue_is_declared_with_a_delivery_limit_no_look_can_reach(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    routing = _routing(tmp_path, f"queues:\n  {unique_name}:\n    type: quorum\n")
    assert _apply(routing, broker_url, management_url)[0] == 0
    arguments = _arguments(management_url, "/", unique_name + ".dead")
    assert arguments["x-delivery-limit"] == UNREACHABLE_DELIVERY_LIMIT


def test_quorum_queue_declared_without_a_delivery_limit_is_kept_as_it_is(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    # What rabbitq declared before it set delivery limits: a redeclare with the new arguments
    # would be refused (406), so `apply` must adopt the queue instead of failing.
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    channel.queue_declare(
        unique_name,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": unique_name + ".dead",
        },
    )
    channel.queue_declare(unique_name + ".dead", durable=True, arguments={"x-queue-type": "quorum"})
    connection.close()
    routing = _routing(tmp_path, f"queues:\n  {unique_name}:\n    type: quorum\n")
    code, out, err = _apply(routing, broker_url, management_url)
    assert code == 0, err
    assert f"queue {unique_name} kept as declared earlier" in out
    assert f"queue {unique_name}.dead kept as declared earlier" in out


def test_chord_queue_failovers_never_drop_or_dead_letter_a_part(
    broker_url: str, management_url: str, fresh_vhost: str
) -> None:
    url = _in_vhost(broker_url, fresh_vhost)
    asyncio.run(with_connection(url, declare_chord_queues))
    arguments = _arguments(management_url, fresh_vhost, CHORD_QUEUE)
    assert arguments["x-delivery-limit"] == UNREACHABLE_DELIVERY_LIMIT
    _publish(url, CHORD_QUEUE, 1)
    # A coordinator that dies hands its unacked parts back: 25 failovers, more than
    # RabbitMQ 4.x's default limit of 20; each one counts as a delivery.
    for _ in range(25):
        _take_part_and_die(url)
    assert _take_part_and_die(url) == 25
    assert queue_depth(url, CHORD_QUEUE + ".dead") == 0


def _take_part_and_die(url: str) -> int:
    """Consume one part as the active coordinator, then close without acking it; returns
    the part's x-delivery-count (``basic.get`` is refused on single-active-consumer queues)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    for _method, properties, _body in channel.consume(CHORD_QUEUE, inactivity_timeout=30):
        assert properties is not None, "the part vanished"
        connection.close()
        return int((properties.headers or {}).get("x-delivery-count", 0))
    raise AssertionError("unreachable")


def test_quorum_delay_levels_are_declared_with_a_delivery_limit_no_look_can_reach(
    broker_url: str, management_url: str, fresh_vhost: str
) -> None:
    url = _in_vhost(broker_url, fresh_vhost)

    async def declare(connection: AbstractConnection) -> QueueType:
        await declare_task_exchange(connection)  # the last level dead-letters into it
        return await declare_delay_levels(connection, "quorum")

    assert asyncio.run(with_connection(url, declare)) == "quorum"
    for level in (0, 35):
        arguments = _arguments(management_url, fresh_vhost, level_name(level))
        assert arguments["x-delivery-limit"] == UNREACHABLE_DELIVERY_LIMIT


# --- item 14: dead-letter bounds as policies ------------------------------------------------


def test_apply_bounds_an_existing_dead_queue_without_redeclaring_it(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    plain = _routing(tmp_path, f"queues:\n  {unique_name}:\n    type: quorum\n")
    assert _apply(plain, broker_url, management_url)[0] == 0
    _publish(broker_url, unique_name + ".dead", 3)
    bounded = _routing(
        tmp_path,
        f"queues:\n  {unique_name}:\n    type: quorum\n    dead_letters:\n      max_length: 2\n",
    )
    code, out, err = _apply(bounded, broker_url, management_url)
    assert code == 0, err
    assert f"applied policy rabbitq.dead.{unique_name}.dead" in out
    # The broker applies a policy to the queue's process shortly after storing it.
    wait_for(lambda: queue_depth(broker_url, unique_name + ".dead") == 2, 30)


def test_apply_gives_dead_letters_a_time_to_live_through_a_policy(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    routing = _routing(
        tmp_path, f"queues:\n  {unique_name}:\n    dead_letters:\n      message_ttl: 1\n"
    )
    code, _out, err = _apply(routing, broker_url, management_url)
    assert code == 0, err
    wait_for(
        lambda: (
            ManagementClient(management_url)
            .queue("/", unique_name + ".dead")
            .get("effective_policy_definition")
            == {"message-ttl": 1}
        ),
        30,
    )
    _publish(broker_url, unique_name + ".dead", 1)
    wait_for(lambda: queue_depth(broker_url, unique_name + ".dead") == 0, 30)


def test_dead_letters_are_kept_unless_the_file_bounds_them(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    routing = _routing(tmp_path, f"queues:\n  {unique_name}: {{}}\n")
    assert _apply(routing, broker_url, management_url)[0] == 0
    names = {p["name"] for p in ManagementClient(management_url).policies("/")}
    assert f"rabbitq.dead.{unique_name}.dead" not in names


def test_apply_removes_its_policy_when_the_file_no_longer_bounds_the_dead_queue(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    bounded = _routing(
        tmp_path, f"queues:\n  {unique_name}:\n    dead_letters:\n      max_length: 5\n"
    )
    assert _apply(bounded, broker_url, management_url)[0] == 0
    plain = _routing(tmp_path, f"queues:\n  {unique_name}: {{}}\n")
    code, out, err = _apply(plain, broker_url, management_url)
    assert code == 0, err
    assert f"policy rabbitq.dead.{unique_name}.dead removed" in out
    names = {p["name"] for p in ManagementClient(management_url).policies("/")}
    assert f"rabbitq.dead.{unique_name}.dead" not in names


def test_apply_with_bounds_and_no_management_api_fails_before_declaring(
    broker_url: str, unique_name: str, tmp_path: Path
) -> None:
    routing = _routing(
        tmp_path, f"queues:\n  {unique_name}:\n    dead_letters:\n      max_length: 5\n"
    )
    # Port 9 (discard) on loopback: nothing answers there.
    code, _out, err = _apply(routing, broker_url, "http://guest:guest@127.0.0.1:9/")
    assert code != 0
    assert "takes the management API" in err and "--management-url" in err
    assert "Traceback" not in err
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        connection.channel().queue_declare(unique_name, passive=True)
    connection.close()


def test_apply_warns_when_an_operator_policy_outranks_the_bounds(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    client = ManagementClient(management_url)
    operators = Policy(
        f"ops-{unique_name}", f"^{unique_name}\\.", {"max-length": 1000}, priority=500
    )
    client.put_policy("/", operators)
    try:
        routing = _routing(
            tmp_path, f"queues:\n  {unique_name}:\n    dead_letters:\n      max_length: 5\n"
        )
        code, _out, err = _apply(routing, broker_url, management_url)
    finally:
        client.delete_policy("/", operators.name)
    assert code == 0, err
    assert f"'{operators.name}' (priority 500) outranks" in err


def test_apply_leaves_alone_a_policy_of_the_same_name_that_is_not_rabbitqs(
    broker_url: str, management_url: str, unique_name: str, tmp_path: Path
) -> None:
    client = ManagementClient(management_url)
    theirs = Policy(f"rabbitq.dead.{unique_name}.dead", "^someone-elses$", {"max-length": 7})
    client.put_policy("/", theirs)
    try:
        routing = _routing(
            tmp_path, f"queues:\n  {unique_name}:\n    dead_letters:\n      max_length: 5\n"
        )
        code, _out, err = _apply(routing, broker_url, management_url)
        kept = {p["name"]: p for p in client.policies("/")}[theirs.name]
    finally:
        client.delete_policy("/", theirs.name)
    assert code != 0 and "is not rabbitq's" in err
    assert kept["pattern"] == "^someone-elses$"
